"""Weights between canonical form and a loaded Keras model built elsewhere: by plan name, by
its layer graph (:mod:`unet_keras.graph`), or by order, kind and shape
(:func:`~unet_keras.foreign.matching.match_layers`)."""

from __future__ import annotations

from collections.abc import Mapping

import keras
import numpy as np

from unet_keras.adapters import from_canonical, to_canonical
from unet_keras.builder import build_unet
from unet_keras.foreign.matching import match_layers, weighted_layers
from unet_keras.graph import GraphMismatchError, GraphSpec, read_unet_graph
from unet_spec import UNetSpec, build_plan
from unet_spec.sizes import build_size


def canonical_from_model(
    model: keras.Model, spec: UNetSpec, source: str | None = None
) -> dict[str, np.ndarray]:
    """Canonical weights of any Keras model of ``spec``: by plan name when the project built it,
    by its layer graph when the graph reads as ``spec`` (:func:`~unet_keras.graph.read_unet_graph`),
    by order, kind and shape (:func:`match_layers`) otherwise.

    Raises:
        ValueError: The graph reads as another spec (every differing field named), or the layers
            do not fit ``spec``.
    """
    source = source or f"Keras model {model.name!r}"
    names = {layer.name for layer in model.layers}
    if all(b.keras_name in names for b in build_plan(spec).blocks if b.weight_shapes):
        return to_canonical(model, spec)
    try:
        graph = read_unet_graph(model, source)
    except GraphMismatchError:
        return match_layers(weighted_layers(model), spec, source)
    if graph.spec != spec:
        fields = ", ".join(
            f"{k}: model {a!r} vs given {b!r}" for k, (a, b) in graph.spec.diff(spec).items()
        )
        raise ValueError(f"{source}: the model's layer graph is another U-Net ({fields})")
    return canonical_from_graph(graph)


def canonical_from_graph(graph: GraphSpec) -> dict[str, np.ndarray]:
    """Canonical weights of a model read by :func:`~unet_keras.graph.read_unet_graph`: each
    weighted layer's arrays go into the twin's layer of the same plan block (same class, same
    Keras layout), and the adapter turns the twin into canonical weights."""
    spec = graph.spec
    twin = build_unet(spec, graph.input_size or build_size(spec), name="twin",
                      kernel_initializer="zeros")  # fmt: skip
    for block in build_plan(spec).blocks:
        if block.weight_shapes:
            twin.get_layer(block.keras_name).set_weights(graph.layers[block.name].get_weights())
    return to_canonical(twin, spec)


def load_into_model(
    model: keras.Model, weights: Mapping[str, np.ndarray], spec: UNetSpec, source: str | None = None
) -> keras.Model:
    """Set canonical ``weights`` into a Keras model built elsewhere (keras-unet's
    ``custom_unet(...)``, for one) whose layer graph reads as ``spec``; the reverse of
    :func:`canonical_from_graph`.

    Raises:
        GraphMismatchError: The graph is not a U-Net the spec can express.
        ValueError: It reads as another spec (every differing field named).
    """
    source = source or f"Keras model {model.name!r}"
    graph = read_unet_graph(model, source)
    if graph.spec != spec:
        fields = ", ".join(
            f"{k}: model {a!r} vs weights {b!r}" for k, (a, b) in graph.spec.diff(spec).items()
        )
        raise ValueError(f"{source}: the model's layer graph is another U-Net ({fields})")
    size = graph.input_size or build_size(spec)
    twin = from_canonical(build_unet(spec, size, kernel_initializer="zeros"), weights, spec)
    for block in build_plan(spec).blocks:
        if block.weight_shapes:
            graph.layers[block.name].set_weights(twin.get_layer(block.keras_name).get_weights())
    return model
