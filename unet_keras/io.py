"""Saving and loading ``.keras`` files that remember their spec.

A ``.keras`` file is a zip archive; next to Keras' own members we store ``unet_spec.json`` (Keras
ignores unknown members), so a model file alone rebuilds its spec. Writes are atomic: the archive is
written to a temporary file in the target folder and renamed into place.
"""

from __future__ import annotations

import os
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path

import keras
import numpy as np

from unet_keras.adapters import from_canonical
from unet_keras.builder import build_unet
from unet_runtime import atomic_path
from unet_spec import UNetSpec

SPEC_MEMBER = "unet_spec.json"


def save_keras(
    model: keras.Model, path: str | os.PathLike[str], spec: UNetSpec | None = None
) -> Path:
    """Save ``model`` as a ``.keras`` file (with ``spec`` stored inside when given), atomically."""
    path = Path(path)
    if path.suffix != ".keras":
        raise ValueError(f"{path}: a Keras model file must end in .keras")
    with atomic_path(path) as tmp:
        model.save(tmp)
        if spec is not None:
            with zipfile.ZipFile(tmp, "a") as zf:
                zf.writestr(SPEC_MEMBER, spec.to_json())
    return path


def read_keras_spec(path: str | os.PathLike[str]) -> UNetSpec | None:
    """The spec stored in a ``.keras`` file, or ``None`` for a file saved elsewhere."""
    try:
        with zipfile.ZipFile(path) as zf:
            if SPEC_MEMBER not in zf.namelist():
                return None
            text = zf.read(SPEC_MEMBER).decode("utf-8")
    except (zipfile.BadZipFile, OSError) as err:
        raise ValueError(f"{path}: not a readable .keras file ({err})") from None
    try:
        return UNetSpec.from_json(text)
    except ValueError as err:
        raise ValueError(f"{path}: stored spec is invalid: {err}") from None


def load_keras(path: str | os.PathLike[str]) -> tuple[keras.Model, UNetSpec | None]:
    """Load a ``.keras`` file in safe mode; returns the model and its stored spec (or ``None``)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such Keras model file")
    spec = read_keras_spec(path)
    try:
        model = keras.saving.load_model(path, compile=False, safe_mode=True)
    except Exception as err:  # Keras raises many types for a damaged archive
        raise ValueError(f"{path}: cannot load Keras model ({type(err).__name__}: {err})") from None
    return model, spec


def export_keras(
    weights: Mapping[str, np.ndarray],
    spec: UNetSpec,
    path: str | os.PathLike[str],
    input_size: int | Sequence[int] | None,
    head_activation: bool = False,
) -> keras.Model:
    """Build the Keras twin of ``spec``, load canonical ``weights`` and save it to ``path``."""
    model = from_canonical(
        build_unet(spec, input_size, head_activation=head_activation), weights, spec
    )
    save_keras(model, path, spec)
    return model
