"""TensorFlow SavedModel: the Keras twin through ``model.export(format="tf_saved_model")`` (a
folder), run through ``tf.saved_model.load`` and its ``serve`` endpoint. The metadata goes to
``assets.extra/unet_spec.json`` (the SavedModel place for extra files)."""

from __future__ import annotations

import json
from pathlib import Path

from unet_bridge.artefacts.common import Artefact, Export, Runner, loading, nhwc_runner, writer
from unet_bridge.formats import Format

EXTRA = Path("assets.extra") / "unet_spec.json"


def export(job: Export, path: Path) -> None:
    """Export the Keras twin as a SavedModel folder at ``path``."""
    job.keras_model().export(str(path), format="tf_saved_model", verbose=False)
    (path / EXTRA).parent.mkdir(exist_ok=True)
    (path / EXTRA).write_text(job.metadata_json())


#: The registry's writer: ``write(weights, spec, path, input_size, *, dynamic, opset, precision)``.
write = writer(export)


def read_metadata(path: Path) -> dict[str, str]:
    extra = Path(path) / EXTRA
    return json.loads(extra.read_text()) if extra.is_file() else {}


def load(path: Path) -> Runner:
    """A SavedModel folder loaded once."""
    from unet_bridge.frameworks import import_frameworks

    import_frameworks()
    import tensorflow as tf

    with loading(path, "TensorFlow"):
        loaded = tf.saved_model.load(str(path))
    return nhwc_runner(lambda nhwc: loaded.serve(tf.constant(nhwc)))


ENTRY = Artefact(
    Format(".savedmodel", "TensorFlow SavedModel folder", "keras", None, write, folder=True),
    "TensorFlow", ("fp32",), load, read_metadata,
)  # fmt: skip
