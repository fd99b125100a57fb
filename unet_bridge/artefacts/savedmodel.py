"""TensorFlow SavedModel: the Keras twin through ``model.export(format="tf_saved_model")`` (a
folder), run through ``tf.saved_model.load`` and its ``serve`` endpoint. The metadata goes to
``assets.extra/unet_spec.json`` (the SavedModel place for extra files)."""

from __future__ import annotations

import json
from pathlib import Path

from unet_bridge.artefacts.common import (
    Artefact,
    LoadError,
    Runner,
    as_int,
    export_size,
    first_line,
    keras_model,
    metadata_json,
    nchw_to_nhwc,
    nhwc_to_nchw,
)
from unet_bridge.formats import Format, Size, Weights
from unet_spec import UNetSpec

EXTRA = Path("assets.extra") / "unet_spec.json"


def write(
    weights: Weights,
    spec: UNetSpec,
    path: Path,
    input_size: Size = None,
    *,
    dynamic: bool | None = None,
    opset: int | None = None,
    precision: str = "fp32",
) -> Path:
    """Export the Keras twin as a SavedModel folder at ``path``."""
    _, fixed = export_size(spec, as_int(input_size), dynamic)
    model = keras_model(spec, weights, fixed)
    model.export(str(path), format="tf_saved_model", verbose=False)
    (Path(path) / EXTRA).parent.mkdir(exist_ok=True)
    (Path(path) / EXTRA).write_text(metadata_json(spec, fixed, precision))
    return path


def read_metadata(path: Path) -> dict[str, str]:
    extra = Path(path) / EXTRA
    return json.loads(extra.read_text()) if extra.is_file() else {}


def load(path: Path) -> Runner:
    """A SavedModel folder loaded once."""
    from unet_bridge.frameworks import import_frameworks

    import_frameworks()
    import tensorflow as tf

    try:
        loaded = tf.saved_model.load(str(path))
    except Exception as err:
        raise LoadError(f"{path}: TensorFlow cannot load it ({first_line(err)})") from None
    return lambda x: nhwc_to_nchw(loaded.serve(tf.constant(nchw_to_nhwc(x))))


ENTRY = Artefact(
    Format(".savedmodel", "TensorFlow SavedModel folder", "keras", None, write, folder=True),
    "TensorFlow", ("fp32",), load, read_metadata,
)  # fmt: skip
