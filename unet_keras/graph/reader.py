"""Reading a U-Net spec from a Keras model's layer graph: the layers become ops
(:mod:`unet_keras.graph.ops`), and the framework-free reader (:mod:`unet_graph`) does the rest."""

from __future__ import annotations

from typing import Any

from unet_graph import GraphSpec
from unet_graph import read_unet_graph as read_ops
from unet_keras.graph.ops import keras_graph


def read_unet_graph(model: Any, source: str | None = None) -> GraphSpec:
    """Infer the spec of a Keras functional ``model`` from its layer graph.

    Args:
        model: A loaded Keras functional model (a ``.keras`` file, a legacy ``.h5`` model, or one
            built in memory).
        source: How messages name the model (default: its name).

    Returns:
        The spec, the Keras layer of each plan block (:attr:`~unet_graph.GraphSpec.layers`), the
        fixed input size, the head activation and what is only approximate.

    Raises:
        GraphMismatchError: The graph is not a U-Net the spec can express; every mismatch is
            listed, each naming the layer and the feature.
    """
    return read_ops(keras_graph(model, source or f"Keras model {model.name!r}"))
