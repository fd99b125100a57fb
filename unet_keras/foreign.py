"""Weights from Keras models this project did not build, and ``.weights.h5`` files.

A Keras model built elsewhere (zhixuhao/unet, keras-unet's ``vanilla_unet`` and ``custom_unet``,
the starting model's own code) has auto-named layers (``conv2d_17``), so its weights cannot be
found by plan name. A model file (``.keras``, or a legacy full-model ``.h5``/``.hdf5`` such as
zhixuhao's ``ModelCheckpoint`` writes) has its layer graph, and the spec is read from it
(:mod:`unet_keras.graph`): no flags needed, and each weighted layer is known as a plan block.

A file without a graph needs the spec. A ``.weights.h5`` file names its groups after the layer
*class* and the layer's position among layers of that class (``conv2d``, ``conv2d_1``, …), never
after the layer's own name; a legacy weights-only ``.h5`` lists its layers in order. Their layers
are matched by order, per class, with the plan's blocks of the same kind, checking every weight
shape (and padding, strides, dilation where the file says); every layer that does not fit is
named, with the plan block and what was expected versus found. The project's own ``.weights.h5``
files carry their spec as the root attribute ``unet_spec``.

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
from unet_keras.graph import GraphMismatchError, GraphSpec, read_unet_graph
from unet_keras.io import load_keras, read_keras_spec
from unet_runtime import atomic_path
from unet_spec import UNetSpec, build_plan, resolve_spec
from unet_spec.sizes import build_size

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
        ValueError: Listing every layer that does not fit (named, with the plan block and the
            expected versus found weight shapes or settings), every missing and extra layer, and
            every weighted layer of a class the plan has none of, in one line.
    """
    twin = build_unet(spec, build_size(spec), name="twin")
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
    twin = build_unet(spec, graph.input_size or build_size(spec), name="twin")
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
    twin = from_canonical(build_unet(spec, graph.input_size or build_size(spec)), weights, spec)
    for block in build_plan(spec).blocks:
        if block.weight_shapes:
            graph.layers[block.name].set_weights(twin.get_layer(block.keras_name).get_weights())
    return model


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
    import h5py

    path = Path(path)
    if path.suffix not in LEGACY_SUFFIXES:
        raise ValueError(f"{path}: a legacy Keras HDF5 file ends in .h5 or .hdf5")
    size = input_size if input_size is not None else build_size(spec)
    model = from_canonical(build_unet(spec, size, head_activation=True), weights, spec)
    with atomic_path(path) as tmp:
        model.save(tmp, overwrite=True)
        with h5py.File(tmp, "a") as f:
            f.attrs[H5_SPEC_ATTR] = spec.to_json()
    return path
