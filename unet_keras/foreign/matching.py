"""Weighted layers of a Keras model or file paired with the plan's blocks by order, per kind,
checking every weight shape and the settings the source records; every layer that does not fit
is named."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import keras
import numpy as np

from unet_keras.adapters import to_canonical
from unet_keras.builder import build_unet
from unet_spec import UNetSpec, build_plan
from unet_spec.sizes import build_size

# Layer settings that change the function without changing any weight shape.
_CONFIG_KEYS = ("padding", "strides", "dilation_rate", "data_format", "groups")


@dataclass(frozen=True)
class KerasLayerWeights:
    """The weights of one Keras layer, in Keras layouts and in Keras' variable order.

    Attributes:
        name: The layer's name (or its ``.weights.h5`` group).
        class_name: ``Conv2D``, ``Conv2DTranspose``, ``BatchNormalization``, ...
        arrays: ``layer.get_weights()``.
        config: The settings in ``_CONFIG_KEYS`` that the source records (empty for
            ``.weights.h5``).
    """

    name: str
    class_name: str
    arrays: tuple[np.ndarray, ...]
    config: Mapping[str, Any] = field(default_factory=dict)


def weighted_layers(model: keras.Model) -> list[KerasLayerWeights]:
    """The layers of ``model`` that own weights, in the model's layer order.

    Raises:
        ValueError: The model nests another model (its layer order is not the plan's).
    """
    out = []
    for layer in model.layers:
        if not layer.weights:
            continue
        if isinstance(layer, keras.Model):
            raise ValueError(
                f"Keras model {model.name!r}: layer {layer.name!r} is a nested model; "
                "flatten it before porting"
            )
        config = layer.get_config()
        settings = {k: _plain(config[k]) for k in _CONFIG_KEYS if k in config}
        arrays = tuple(np.asarray(w, dtype=np.float32) for w in layer.get_weights())
        out.append(KerasLayerWeights(layer.name, type(layer).__name__, arrays, settings))
    return out


def _plain(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value


def match_layers(
    layers: Sequence[KerasLayerWeights], spec: UNetSpec, source: str = "Keras model"
) -> dict[str, np.ndarray]:
    """Pair ``layers`` with the plan's weighted blocks in order, per kind, and return canonical
    weights.

    Raises:
        ValueError: Listing every layer that does not fit (named, with the plan block and the
            expected versus found weight shapes or settings), every missing and extra layer, and
            every weighted layer of a class the plan has none of, in one line.
    """
    twin = build_unet(spec, build_size(spec), name="twin", kernel_initializer="zeros")
    blocks = [b for b in build_plan(spec).blocks if b.weight_shapes]
    twin_layers = {b.name: twin.get_layer(b.keras_name) for b in blocks}
    plan_classes = {type(layer).__name__ for layer in twin_layers.values()}
    problems: list[str] = []
    queues: dict[str, list[KerasLayerWeights]] = {}
    for layer in layers:
        if layer.class_name not in plan_classes:
            problems.append(
                f"layer {layer.name} ({layer.class_name}) has weights, but this U-Net has no "
                f"{layer.class_name} layers"
            )
            continue
        queues.setdefault(layer.class_name, []).append(layer)
    counts = {cls: len(q) for cls, q in queues.items()}
    matched: list[tuple[keras.Layer, KerasLayerWeights]] = []
    for block in blocks:
        target = twin_layers[block.name]
        cls = type(target).__name__
        expected = [tuple(w.shape) for w in target.weights]
        queue = queues.get(cls, [])
        if not queue:
            problems.append(
                f"no layer left for plan block {block.name}: expected {cls} with weights "
                f"{_shapes(expected)}, but the model's {counts.get(cls, 0)} {cls} layers are used up"
            )
            continue
        layer = queue.pop(0)
        found = [tuple(a.shape) for a in layer.arrays]
        if found != expected:
            problems.append(
                f"layer {layer.name} ({cls}) does not fit plan block {block.name}: "
                f"expected weights {_shapes(expected)}, found {_shapes(found)}"
            )
            continue
        wanted = target.get_config()
        settings = [
            f"expected {key}={_plain(wanted[key])!r}, found {key}={value!r}"
            for key, value in layer.config.items()
            if key in wanted
            and _plain(wanted[key]) != value
            and not _same_upconv_padding(cls, key, wanted)
        ]
        if settings:
            problems.append(
                f"layer {layer.name} ({cls}) does not fit plan block {block.name}: "
                + ", ".join(settings)
            )
            continue
        matched.append((target, layer))
    for cls, queue in queues.items():
        for extra in queue:
            problems.append(
                f"layer {extra.name} ({cls}, weights {_shapes([a.shape for a in extra.arrays])}) "
                f"is extra: the plan has {counts[cls] - len(queue)} {cls} layers and the model "
                f"{counts[cls]}"
            )
    if problems:
        count = f"{len(problems)} mismatch" + ("es" if len(problems) != 1 else "")
        raise ValueError(
            f"{source}: the layers do not fit the spec ({count}): " + "; ".join(problems)
        )
    for target, layer in matched:
        target.set_weights(list(layer.arrays))
    return to_canonical(twin, spec)


def _same_upconv_padding(cls: str, key: str, wanted: Mapping[str, Any]) -> bool:
    """A 2×2, stride-2 transposed conv computes the same with 'same' and 'valid' padding (the
    kernel tiles the output exactly), so keras-unet's ``padding="same"`` fits the plan's."""
    return (
        cls == "Conv2DTranspose"
        and key == "padding"
        and _plain(wanted["kernel_size"]) == _plain(wanted["strides"])
    )


def _shapes(shapes: Sequence[Sequence[int]]) -> str:
    return " + ".join(str(tuple(int(n) for n in s)) for s in shapes)
