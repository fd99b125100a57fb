"""Reading Keras HDF5 files: Keras 3 ``.weights.h5`` groups, legacy full-model and
weights-only ``.h5``/``.hdf5`` files, and the spec this project stores in them."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import keras
import numpy as np

from unet_keras.foreign.matching import KerasLayerWeights
from unet_spec import UNetSpec

H5_SPEC_ATTR = "unet_spec"
#: Suffixes of legacy HDF5 files: full models (``model.save``, ``ModelCheckpoint``) or Keras 2
#: weights (``save_weights("x.h5")``).
LEGACY_SUFFIXES = (".h5", ".hdf5")

# Keras' snake-case class names, as ``.weights.h5`` files spell them.
_H5_CLASSES = {
    "conv2d": "Conv2D",
    "conv2d_transpose": "Conv2DTranspose",
    "batch_normalization": "BatchNormalization",
}


def weighted_layers_h5(
    path: str | os.PathLike[str],
) -> tuple[list[KerasLayerWeights], UNetSpec | None]:
    """The weighted layer groups of a Keras 3 ``.weights.h5`` file and its stored spec.

    Groups are ordered per class by the index Keras appended (``conv2d`` < ``conv2d_1`` <
    ``conv2d_2`` < … < ``conv2d_10``), which is the layers' order in the saved model.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: Not an HDF5 file, not Keras 3's layout, or a stored spec that is invalid.
    """
    import h5py

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    try:
        with h5py.File(path, "r") as f:
            spec = None
            if H5_SPEC_ATTR in f.attrs:
                text = f.attrs[H5_SPEC_ATTR]
                text = text.decode("utf-8") if isinstance(text, bytes) else str(text)
                try:
                    spec = UNetSpec.from_json(text)
                except ValueError as err:
                    raise ValueError(f"{path}: the stored spec is invalid: {err}") from None
            if "layers" not in f:
                raise ValueError(f"{path}: not a Keras 3 weights file (no 'layers' group)")
            keyed = []
            for group_name, group in f["layers"].items():
                if "layers" in group:
                    raise ValueError(
                        f"{path}: layer group {group_name!r} is a nested model; flatten it first"
                    )
                vars_ = group.get("vars")
                if vars_ is None or len(vars_) == 0:
                    continue
                base, index = _split_h5_name(group_name)
                arrays = tuple(
                    np.asarray(vars_[k][()], dtype=np.float32) for k in sorted(vars_, key=int)
                )
                class_name = _H5_CLASSES.get(base, base)
                keyed.append(((base, index), KerasLayerWeights(group_name, class_name, arrays)))
    except OSError as err:
        raise ValueError(f"{path}: not a readable HDF5 weights file ({err})") from None
    keyed.sort(key=lambda t: t[0])
    return [layer for _, layer in keyed], spec


def _split_h5_name(name: str) -> tuple[str, int]:
    match = re.fullmatch(r"(.*?)(?:_(\d+))?", name)
    assert match is not None  # the pattern matches every string
    return match.group(1), int(match.group(2) or 0)


def load_legacy_h5(path: str | os.PathLike[str]) -> keras.Model | list[KerasLayerWeights]:
    """A legacy HDF5 file (``model.save("x.h5")``, Keras 2's ``ModelCheckpoint``): the model when
    the file holds one, else (``save_weights("x.h5")`` in Keras 2) its weighted layers in order.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: Not an HDF5 file, or a model Keras cannot rebuild.
    """
    import h5py

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    try:
        with h5py.File(path, "r") as f:
            has_model = "model_config" in f.attrs
            layers = [] if has_model else _legacy_weight_layers(f, path)
    except OSError as err:
        raise ValueError(f"{path}: not a readable HDF5 file ({err})") from None
    if not has_model:
        return layers
    try:
        # Legacy files hold no safe-mode flag; the project's own layers are registered.
        return keras.saving.load_model(path, compile=False)
    except Exception as err:  # Keras raises many types for a model it cannot rebuild
        first = (str(err).strip().splitlines() or [""])[0]
        raise ValueError(
            f"{path}: cannot load the Keras model ({type(err).__name__}: {first})"
        ) from None


def _legacy_weight_layers(f: Any, path: Path) -> list[KerasLayerWeights]:
    """Weighted layers of a legacy weights-only HDF5 file, in the saved model's layer order (the
    root attribute ``layer_names``; each layer group lists its ``weight_names`` in order)."""
    if "layer_names" not in f.attrs:
        raise ValueError(f"{path}: neither a Keras model nor a Keras weights file (no layer_names)")
    out = []
    for raw in f.attrs["layer_names"]:
        name = raw.decode("utf-8") if isinstance(raw, bytes) else str(raw)
        group = f[name]
        weight_names = [
            w.decode("utf-8") if isinstance(w, bytes) else str(w)
            for w in group.attrs.get("weight_names", [])
        ]
        if not weight_names:
            continue
        arrays = tuple(np.asarray(group[w][()], dtype=np.float32) for w in weight_names)
        base, _ = _split_h5_name(name)
        out.append(KerasLayerWeights(name, _H5_CLASSES.get(base, base), arrays))
    return out


def stored_h5_spec(path: str | os.PathLike[str]) -> UNetSpec | None:
    """The spec an HDF5 file written by this project stores (root attribute ``unet_spec``)."""
    import h5py

    try:
        with h5py.File(path, "r") as f:
            text = f.attrs.get(H5_SPEC_ATTR)
    except OSError as err:
        raise ValueError(f"{path}: not a readable HDF5 file ({err})") from None
    if text is None:
        return None
    text = text.decode("utf-8") if isinstance(text, bytes) else str(text)
    try:
        return UNetSpec.from_json(text)
    except ValueError as err:
        raise ValueError(f"{path}: the stored spec is invalid: {err}") from None
