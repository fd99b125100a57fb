"""Canonical weights from any Keras file, this project's or not: the file's kind by its suffix,
the spec stored, given or read from the layer graph."""

from __future__ import annotations

import os
from pathlib import Path

import keras
import numpy as np

from unet_keras.foreign.h5_read import (
    LEGACY_SUFFIXES,
    load_legacy_h5,
    stored_h5_spec,
    weighted_layers_h5,
)
from unet_keras.foreign.matching import KerasLayerWeights, match_layers
from unet_keras.foreign.transfer import canonical_from_graph, canonical_from_model
from unet_keras.graph import read_unet_graph
from unet_keras.io import load_keras, read_keras_spec
from unet_spec import UNetSpec, resolve_spec


def stored_keras_spec(path: str | os.PathLike[str]) -> UNetSpec | None:
    """The spec a Keras file of any kind stores, ``None`` for a file written elsewhere."""
    path = Path(path)
    if path.suffix == ".keras":
        return read_keras_spec(path)
    return stored_h5_spec(path)


def read_keras_model(
    path: str | os.PathLike[str],
) -> tuple[keras.Model | None, UNetSpec | None, list[KerasLayerWeights] | None]:
    """A Keras file's model (``.keras``, legacy ``.h5``/``.hdf5``) and its stored spec, or, for a
    file without a graph (``.weights.h5``, a legacy weights-only ``.h5``), its weighted layers."""
    path = Path(path)
    if path.name.endswith(".weights.h5"):
        layers, stored = weighted_layers_h5(path)
        return None, stored, layers
    if path.suffix == ".keras":
        model, stored = load_keras(path)
        return model, stored, None
    if path.suffix in LEGACY_SUFFIXES:
        loaded = load_legacy_h5(path)
        stored = stored_h5_spec(path)
        if isinstance(loaded, list):
            return None, stored, loaded
        return loaded, stored, None
    raise ValueError(
        f"{path}: unknown extension; Keras files end in .keras, .weights.h5, .h5 or .hdf5"
    )


def load_keras_weights(
    path: str | os.PathLike[str], spec: UNetSpec | None = None
) -> tuple[dict[str, np.ndarray], UNetSpec, keras.Model | None]:
    """Canonical weights from a ``.keras``, ``.weights.h5`` or legacy ``.h5``/``.hdf5`` file, this
    project's or not.

    A model file this project did not write needs no spec: it is read from the layer graph
    (:func:`~unet_keras.graph.read_unet_graph`). A file without a graph (``.weights.h5``, a legacy
    weights-only ``.h5``) needs ``spec`` unless it stores one.

    Args:
        path: The file.
        spec: The expected spec; required for a foreign file without a graph.

    Returns:
        The weights, the spec, and for model files the loaded model itself (the reference a port
        is verified against), ``None`` for weights files.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: A damaged file, no spec, a stored or read spec that differs from ``spec``, a
            graph the spec cannot express (:class:`~unet_keras.graph.GraphMismatchError`, every
            mismatch listed), or layers that do not fit the plan (see :func:`match_layers`).
    """
    path = Path(path)
    model, stored, layers = read_keras_model(path)
    if model is None:
        spec = resolve_spec(stored, spec, path)
        return match_layers(layers or [], spec, source=str(path)), spec, None
    if stored is None and spec is None:
        graph = read_unet_graph(model, str(path))
        return canonical_from_graph(graph), graph.spec, model
    spec = resolve_spec(stored, spec, path)
    return canonical_from_model(model, spec, source=str(path)), spec, model
