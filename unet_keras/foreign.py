"""Weights from Keras models this project did not build, and ``.weights.h5`` files.

A Keras model built elsewhere (the starting model's own code, for one) has auto-named layers
(``conv2d_17``), so its weights cannot be found by plan name. They are matched instead: the layers
that own weights are taken in order, per layer class, and paired with the plan's blocks of the same
kind, checking every weight shape (and padding, strides, dilation where the model says). The first
layer that does not fit stops the match with a message naming it, the plan block, and what was
expected versus found.

A ``.weights.h5`` file holds no architecture, and Keras names its groups after the layer *class*
and the layer's position among layers of that class (``conv2d``, ``conv2d_1``, …), never after the
layer's own name. So the same matcher reads every ``.weights.h5``, the project's included; the
project's files also carry their spec as the root attribute ``unet_spec``.

Keras layouts stay in :mod:`unet_keras.adapters`: matched arrays are set into the project's own
model of the spec (its twin), and the adapter turns that model into canonical weights.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import keras
import numpy as np

from unet_keras.adapters import from_canonical, to_canonical
from unet_keras.builder import build_unet
from unet_keras.io import load_keras
from unet_runtime import atomic_path
from unet_spec import UNetSpec, build_plan, resolve_spec
from unet_spec.sizes import build_size

H5_SPEC_ATTR = "unet_spec"

# Keras' snake-case class names, as ``.weights.h5`` files spell them.
_H5_CLASSES = {
    "conv2d": "Conv2D",
    "conv2d_transpose": "Conv2DTranspose",
    "batch_normalization": "BatchNormalization",
}
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


def _plain(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value


def match_layers(
    layers: Sequence[KerasLayerWeights], spec: UNetSpec, source: str = "Keras model"
) -> dict[str, np.ndarray]:
    """Pair ``layers`` with the plan's weighted blocks in order, per kind, and return canonical
    weights.

    Raises:
        ValueError: At the first layer that does not fit (named, with the plan block and the
            expected versus found weight shapes or settings), a missing layer, an extra layer, or
            a weighted layer of a class the plan has none of.
    """
    twin = build_unet(spec, build_size(spec), name="twin")
    blocks = [b for b in build_plan(spec).blocks if b.weight_shapes]
    twin_layers = {b.name: twin.get_layer(b.keras_name) for b in blocks}
    plan_classes = {type(layer).__name__ for layer in twin_layers.values()}
    queues: dict[str, list[KerasLayerWeights]] = {}
    for layer in layers:
        if layer.class_name not in plan_classes:
            raise ValueError(
                f"{source}: layer {layer.name} ({layer.class_name}) has weights, but this U-Net "
                f"has no {layer.class_name} layers"
            )
        queues.setdefault(layer.class_name, []).append(layer)
    counts = {cls: len(q) for cls, q in queues.items()}
    for block in blocks:
        target = twin_layers[block.name]
        cls = type(target).__name__
        expected = [tuple(w.shape) for w in target.weights]
        queue = queues.get(cls, [])
        if not queue:
            raise ValueError(
                f"{source}: no layer left for plan block {block.name}: expected {cls} with weights "
                f"{_shapes(expected)}, but the model's {counts.get(cls, 0)} {cls} layers are used up"
            )
        layer = queue.pop(0)
        found = [tuple(a.shape) for a in layer.arrays]
        if found != expected:
            raise ValueError(
                f"{source}: layer {layer.name} ({cls}) does not fit plan block {block.name}: "
                f"expected weights {_shapes(expected)}, found {_shapes(found)}"
            )
        wanted = target.get_config()
        for key, value in layer.config.items():
            if key in wanted and _plain(wanted[key]) != value:
                raise ValueError(
                    f"{source}: layer {layer.name} ({cls}) does not fit plan block {block.name}: "
                    f"expected {key}={_plain(wanted[key])!r}, found {key}={value!r}"
                )
        target.set_weights(list(layer.arrays))
    for cls, queue in queues.items():
        if queue:
            used = counts[cls] - len(queue)
            raise ValueError(
                f"{source}: layer {queue[0].name} ({cls}, weights "
                f"{_shapes([a.shape for a in queue[0].arrays])}) is extra: the plan has "
                f"{used} {cls} layers and the model {counts[cls]}"
            )
    return to_canonical(twin, spec)


def _shapes(shapes: Sequence[Sequence[int]]) -> str:
    return " + ".join(str(tuple(int(n) for n in s)) for s in shapes)


def canonical_from_model(
    model: keras.Model, spec: UNetSpec, source: str | None = None
) -> dict[str, np.ndarray]:
    """Canonical weights of any Keras model of ``spec``: by plan name when the project built it,
    by order, kind and shape (:func:`match_layers`) otherwise."""
    names = {layer.name for layer in model.layers}
    if all(b.keras_name in names for b in build_plan(spec).blocks if b.weight_shapes):
        return to_canonical(model, spec)
    return match_layers(weighted_layers(model), spec, source or f"Keras model {model.name!r}")


def load_keras_weights(
    path: str | os.PathLike[str], spec: UNetSpec | None = None
) -> tuple[dict[str, np.ndarray], UNetSpec, keras.Model | None]:
    """Canonical weights from a ``.keras`` or ``.weights.h5`` file, this project's or not.

    Args:
        path: The file.
        spec: The expected spec; required when the file carries none (foreign files).

    Returns:
        The weights, the spec, and for ``.keras`` files the loaded model itself (the reference a
        port is verified against), ``None`` for ``.weights.h5``.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: A damaged file, no spec, a stored spec that differs from ``spec``, or layers
            that do not fit the plan (see :func:`match_layers`).
    """
    path = Path(path)
    if path.name.endswith(".weights.h5"):
        layers, stored = weighted_layers_h5(path)
        spec = resolve_spec(stored, spec, path)
        return match_layers(layers, spec, source=str(path)), spec, None
    if path.suffix == ".keras":
        model, stored = load_keras(path)
        spec = resolve_spec(stored, spec, path)
        return canonical_from_model(model, spec, source=str(path)), spec, model
    raise ValueError(f"{path}: unknown extension; Keras files end in .keras or .weights.h5")


def save_weights_h5(
    weights: Mapping[str, np.ndarray],
    spec: UNetSpec,
    path: str | os.PathLike[str],
    input_size: int | Sequence[int] | None = None,
) -> Path:
    """Write ``weights`` as a Keras ``.weights.h5`` file (with the spec as a root attribute),
    atomically. ``model.load_weights(path)`` loads it into ``build_unet(spec, ...)``."""
    import h5py

    path = Path(path)
    if not path.name.endswith(".weights.h5"):
        raise ValueError(f"{path}: a Keras weights file must end in .weights.h5")
    size = input_size if input_size is not None else build_size(spec)
    model = from_canonical(build_unet(spec, size), weights, spec)
    with atomic_path(path) as tmp:
        model.save_weights(tmp, overwrite=True)
        with h5py.File(tmp, "a") as f:
            f.attrs[H5_SPEC_ATTR] = spec.to_json()
    return path
