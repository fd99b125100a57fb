"""Keras U-Nets built by their own code: karolzak's keras-unet and zhixuhao/unet.

Both save Keras models of auto-named layers: ``.keras``, or a legacy full-model HDF5 file
(zhixuhao's ``ModelCheckpoint`` writes ``unet_membrane.hdf5``). The spec is read from the layer
graph (:mod:`unet_keras.graph`), so no flags are needed, and the loaded model is the reference a
port is proven against. A ``.weights.h5`` file has no graph: it needs ``--preset``/``--spec`` and
is proven twin against twin only.

The layouts, as their code builds them:

- keras-unet ``vanilla_unet``: valid 3×3 convs with ReLU fused into ``Conv2D``, ``Dropout`` after
  the last pooling (``dropout_at=("bottom",)``), 2×2 transposed convs (valid), the skip
  center-cropped, ``[up, skip]``, a 1×1 head with ``output_activation``.
- keras-unet ``custom_unet``: same padding; ``Conv2D(activation=relu, use_bias=not use_batch_norm)``
  then ``BatchNormalization`` (the ReLU before the norm, Keras' epsilon 1e-3 and momentum 0.99);
  dropout between a level's two convs (the twins drop after them: inference is the same, training
  differs); 2×2 transposed convs with 'same' padding (the same function as 'valid' for a 2×2,
  stride-2 kernel) or, with ``upsample_mode="simple"``, nearest ×2 and no conv; ``[up, skip]``.
- zhixuhao/unet ``unet()``: the ``zhixuhao`` preset with the input's channels (64 filters, depth
  4, nearest ×2 then a 2×2 'same' conv with ReLU, ``[skip, up]``, dropout after level 4 and the
  bottleneck, a 3×3 conv to 2 channels before the 1×1 sigmoid head).

Both are read from any Keras model file by the registry's ``.keras``/``.h5``/``.hdf5`` formats
(a model's own fixed input size is where it is run), so detection here leaves them to the formats
and ``--from`` forces these readers. The reverse (``--to``) writes the twin's file, whose layers of
each class come in the source's order with the same shapes: keras-unet's
``custom_unet(...).load_weights(path)`` and zhixuhao's ``unet(pretrained_weights=path)`` load it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from unet_bridge.reads import Reference, SourceRead
from unet_bridge.sources import Source, SourceFile, register
from unet_spec import UNetSpec, get_preset

KERAS_UNET = "keras-unet"
ZHIXUHAO = "zhixuhao"
SUFFIXES = (".keras", ".h5", ".hdf5", ".weights.h5")


def _head_output(head: str) -> str:
    return "logits" if head == "none" else head


def _refuse(layout: str, field: str, value: Any, why: str) -> None:
    raise ValueError(f"the spec cannot be written for {layout}: {field}={value!r} ({why})")


def keras_unet_call(spec: UNetSpec) -> tuple[str, dict[str, Any]]:
    """The keras-unet builder and its keyword arguments (less ``input_shape``) that build ``spec``.

    Raises:
        ValueError: One line naming the first field keras-unet cannot express.
    """
    name = "vanilla_unet" if spec.padding == "valid" else "custom_unet"
    doubling = tuple(spec.base_filters * 2**i for i in range(spec.depth + 1))
    fixed = {
        "skip_source": ("pre_pool", "its skips leave a level before pooling"),
        "concat_order": ("up_skip", "it concatenates [up, skip]"),
        "activation": ("relu", "its convs use ReLU"),
        "up_activation": (False, "its up step has no activation"),
        "up_norm": (False, "its up step has no norm"),
        "head_convs": ((), "its head is one 1x1 conv"),
        "decoder_widths": ((), "its decoder mirrors the encoder's widths"),
        "decoder_mid_widths": ((), "its decoder mirrors the encoder's widths"),
        "up_widths": ((), "its up steps keep the decoder's widths"),
    }
    for field, (value, why) in fixed.items():
        if getattr(spec, field) != value:
            _refuse(KERAS_UNET, field, getattr(spec, field), why)
    if spec.widths and spec.widths != doubling:
        _refuse(KERAS_UNET, "widths", spec.widths, "it doubles the filters per level")
    output = {"none": "linear"}.get(spec.head, spec.head)
    common = {"num_classes": spec.num_classes, "filters": spec.base_filters,
              "num_layers": spec.depth, "output_activation": output}  # fmt: skip
    sites = set(spec.dropout_at) if spec.dropout > 0 else set()
    if name == "vanilla_unet":
        for field, value, why in (
            ("skip_merge", "crop", "vanilla_unet center-crops the skip"),
            ("upsample", "transpose", "vanilla_unet upsamples with 2x2 transposed convs"),
            ("norm", "none", "vanilla_unet has no norm"),
            ("conv_bias", True, "vanilla_unet's convs have biases"),
        ):
            if getattr(spec, field) != value:
                _refuse(KERAS_UNET, field, getattr(spec, field), why)
        if sites - {"bottom"}:
            _refuse(KERAS_UNET, "dropout_at", spec.dropout_at, "vanilla_unet drops before the "
                    "bottleneck only")  # fmt: skip
        return name, {**common, "dropout": spec.dropout if sites else 0.0}
    if spec.skip_merge != "none":
        _refuse(KERAS_UNET, "skip_merge", spec.skip_merge, "custom_unet concatenates as is")
    if spec.upsample == "transpose":
        mode = "deconv"
    elif spec.upsample == "nearest" and spec.up_conv_kernel == 0:
        mode = "simple"
    else:
        _refuse(KERAS_UNET, "upsample", spec.upsample, "custom_unet upsamples with 2x2 transposed "
                "convs, or nearest x2 with no conv (up_conv_kernel=0)")  # fmt: skip
    if spec.norm == "instance":
        _refuse(KERAS_UNET, "norm", spec.norm, "custom_unet has batch norm or none")
    bn = spec.norm == "batch"
    if spec.conv_bias == bn:
        _refuse(KERAS_UNET, "conv_bias", spec.conv_bias, "custom_unet's convs have a bias exactly "
                "when there is no batch norm")  # fmt: skip
    if bn:
        for field, value, why in (
            ("act_before_norm", True, "custom_unet applies the ReLU before batch norm"),
            ("bn_epsilon", 1e-3, "custom_unet keeps Keras' BatchNormalization epsilon"),
            ("bn_momentum", 0.01, "custom_unet keeps Keras' momentum 0.99"),
        ):
            if getattr(spec, field) != value:
                _refuse(KERAS_UNET, field, getattr(spec, field), why)
    encoder = {f"enc{k}" for k in range(1, spec.depth + 1)} | {"mid"}
    decoder = {f"dec{k}" for k in range(1, spec.depth + 1)}
    if sites and sites not in (encoder, encoder | decoder):
        _refuse(KERAS_UNET, "dropout_at", spec.dropout_at, "custom_unet drops in every encoder "
                "level and the bottleneck, and optionally every decoder level")  # fmt: skip
    return name, {
        **common, "use_batch_norm": bn, "upsample_mode": mode,
        "dropout": spec.dropout if sites else 0.0, "dropout_type": "standard",
        "use_dropout_on_upsampling": bool(sites & decoder),
    }  # fmt: skip


def check_keras_unet(spec: UNetSpec) -> None:
    keras_unet_call(spec)


def check_zhixuhao(spec: UNetSpec) -> None:
    """zhixuhao's ``unet(input_size=...)`` fixes everything but the input's channels."""
    own = get_preset("zhixuhao").replace(in_channels=spec.in_channels)
    diff = spec.diff(own)
    if diff:
        raise ValueError(
            f"the spec cannot be written for {ZHIXUHAO}: "
            + ", ".join(f"{k}={a!r} (its unet() fixes {b!r})" for k, (a, b) in diff.items())
        )


def _model_reference(model: Any, head: str, description: str) -> Reference:
    from unet_keras import to_nchw, to_nhwc

    def run(x):
        return to_nchw(model(to_nhwc(x), training=False).numpy())

    return Reference(run, _head_output(head), description)


def _peer_reference(spec: UNetSpec, path: Path) -> Reference | None:
    """keras-unet's own model for ``spec``, built at the input's size, with ``path`` loaded by its
    ``load_weights``; ``None`` when keras-unet is not installed."""
    try:
        from keras_unet import models
    except ImportError:
        return None
    name, kwargs = keras_unet_call(spec)
    built: dict[tuple[int, int], Any] = {}

    def run(x):
        from unet_keras import to_nchw, to_nhwc

        hw = tuple(x.shape[-2:])
        if hw not in built:
            model = getattr(models, name)(input_shape=(*hw, spec.in_channels), **kwargs)
            model.load_weights(path)
            built[hw] = model
        return to_nchw(built[hw](to_nhwc(x), training=False).numpy())

    return Reference(run, _head_output(spec.head), f"keras-unet {name} with load_weights")


def _read(layout: str, path: Path, spec: UNetSpec | None) -> SourceRead:
    from unet_keras.foreign import load_keras_weights, stored_keras_spec
    from unet_keras.graph import read_unet_graph

    stored = stored_keras_spec(path)
    weights, spec, model = load_keras_weights(path, spec)
    if stored is not None:  # a file this project wrote (``--to``): run it in the source's code
        reference = _peer_reference(spec, path) if layout == KERAS_UNET else None
        return SourceRead(weights, spec, reference, f"{layout} file written by this project")
    if model is None:
        note = (
            f"{layout} weights without a graph: the spec was given, and the port is proven twin "
            "against twin only (not against the source's function)"
        )
        return SourceRead(weights, spec, None, note)
    graph = read_unet_graph(model, str(path))
    note = f"{layout} model, spec read from its layer graph"
    if graph.notes:
        note += "; training dropout differs (inference is the same): " + "; ".join(graph.notes)
    reference = _model_reference(model, spec.head, f"the loaded {layout} model")
    return SourceRead(weights, spec, reference, note)


def read_keras_unet(file: SourceFile, spec: UNetSpec | None = None) -> SourceRead:
    return _read(KERAS_UNET, file.path, spec)


def read_zhixuhao(file: SourceFile, spec: UNetSpec | None = None) -> SourceRead:
    return _read(ZHIXUHAO, file.path, spec)


def _write(weights: Any, spec: UNetSpec, path: Path) -> Path:
    """The twin's file by suffix: its layers of each class come in the source's order, with the
    source's shapes, which is how Keras' ``load_weights`` pairs them."""
    from unet_keras.foreign import LEGACY_SUFFIXES, save_legacy_h5, save_weights_h5
    from unet_keras.io import export_keras
    from unet_spec.sizes import build_size

    path = Path(path)
    size = build_size(spec)
    if path.name.endswith(".weights.h5"):
        return save_weights_h5(weights, spec, path, size)
    if path.suffix in LEGACY_SUFFIXES:
        return save_legacy_h5(weights, spec, path, size)
    export_keras(weights, spec, path, size, head_activation=True)
    return path


def write_keras_unet(weights: Any, spec: UNetSpec, path: Path) -> Path:
    check_keras_unet(spec)
    return _write(weights, spec, path)


def write_zhixuhao(weights: Any, spec: UNetSpec, path: Path) -> Path:
    check_zhixuhao(spec)
    return _write(weights, spec, path)


def recognise(file: SourceFile) -> bool:
    """Never by detection: the registry's Keras formats read these files (from the layer graph)
    and prove them against the loaded model at its own input size."""
    return False


def _register(name: str, description: str, read: Any, write: Any, check: Any, home: str) -> Source:
    return register(
        Source(
            name=name, description=description, framework="keras", suffixes=SUFFIXES,
            recognise=recognise, read=read, write=write, check_spec=check, homepage=home,
        )
    )  # fmt: skip


_register(
    KERAS_UNET, "karolzak/keras-unet vanilla_unet and custom_unet (Keras; spec read from the layer "
    "graph)", read_keras_unet, write_keras_unet, check_keras_unet,
    "https://github.com/karolzak/keras-unet",
)  # fmt: skip
_register(
    ZHIXUHAO, "zhixuhao/unet (Keras; spec read from the layer graph)", read_zhixuhao,
    write_zhixuhao, check_zhixuhao, "https://github.com/zhixuhao/unet",
)  # fmt: skip
