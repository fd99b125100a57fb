"""Writing the twin as Keras HDF5 files: a ``.weights.h5`` file or a legacy full-model
``.h5``/``.hdf5`` file, each with the spec as a root attribute, atomically."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np

from unet_keras.adapters import from_canonical
from unet_keras.builder import build_unet
from unet_keras.foreign.h5_read import H5_SPEC_ATTR, LEGACY_SUFFIXES
from unet_runtime import atomic_path
from unet_spec import UNetSpec
from unet_spec.sizes import build_size


def save_weights_h5(
    weights: Mapping[str, np.ndarray],
    spec: UNetSpec,
    path: str | os.PathLike[str],
    input_size: int | Sequence[int] | None = None,
) -> Path:
    """Write ``weights`` as a Keras ``.weights.h5`` file (with the spec as a root attribute),
    atomically. ``model.load_weights(path)`` loads it into ``build_unet(spec, ...)``."""
    path = Path(path)
    if not path.name.endswith(".weights.h5"):
        raise ValueError(f"{path}: a Keras weights file must end in .weights.h5")
    model = _twin(weights, spec, input_size, head_activation=False)
    return _write_with_spec(path, spec, lambda tmp: model.save_weights(tmp, overwrite=True))


def save_legacy_h5(
    weights: Mapping[str, np.ndarray],
    spec: UNetSpec,
    path: str | os.PathLike[str],
    input_size: int | Sequence[int] | None = None,
) -> Path:
    """Write the twin as a legacy full-model HDF5 file (``.h5``/``.hdf5``, with the spec as a root
    attribute and the head's activation folded in, as Keras code of that era saves it),
    atomically. ``model.load_weights(path)`` pairs its weighted layers in order, so a model of the
    same layout built by other code (zhixuhao's ``unet(pretrained_weights=path)``) loads it."""
    path = Path(path)
    if path.suffix not in LEGACY_SUFFIXES:
        raise ValueError(f"{path}: a legacy Keras HDF5 file ends in .h5 or .hdf5")
    model = _twin(weights, spec, input_size, head_activation=True)
    return _write_with_spec(path, spec, lambda tmp: model.save(tmp, overwrite=True))


def _twin(weights: Mapping[str, np.ndarray], spec: UNetSpec, input_size, head_activation: bool):
    size = input_size if input_size is not None else build_size(spec)
    return from_canonical(build_unet(spec, size, head_activation=head_activation), weights, spec)


def _write_with_spec(path: Path, spec: UNetSpec, save: Callable[[Path], object]) -> Path:
    """``save`` to a temporary path, add the spec as a root attribute, then move into place."""
    import h5py

    with atomic_path(path) as tmp:
        save(tmp)
        with h5py.File(tmp, "a") as f:
            f.attrs[H5_SPEC_ATTR] = spec.to_json()
    return path
