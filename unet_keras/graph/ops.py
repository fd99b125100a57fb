"""Layers in plan terms: each Keras layer becomes one or more :class:`unet_graph.Op` (step 1 of
:mod:`unet_graph`), with the settings of it that no plan block has."""

from __future__ import annotations

from typing import Any

import keras

from unet_graph import Graph, GraphMismatchError, Op

# Keras' ``leaky_relu`` activation function's default slope.
_KERAS_LEAKY_SLOPE = 0.2
#: How messages name the Keras classes of some op kinds.
KERAS_WORDS = {
    "upconv": "Conv2DTranspose",
    "upsample": "UpSampling2D",
    "maxpool": "MaxPooling2D",
    "concat": "Concatenate",
    "dropout": "Dropout",
    "spatial_dropout": "SpatialDropout2D",
}


# -- layers → ops -------------------------------------------------------------------------------
def _pair(value: Any) -> tuple[int, int]:
    if isinstance(value, int):
        return value, value
    return int(value[0]), int(value[1])


def _activation_op(name: Any) -> tuple[str, dict[str, Any]] | None:
    """The op of an activation function given by name (``None`` for ``linear``)."""
    if isinstance(name, dict):  # a serialised function
        name = name.get("config", {}).get("name", name.get("class_name"))
    name = str(name)
    if name == "linear":
        return None
    if name == "relu":
        return "relu", {}
    if name == "leaky_relu":
        return "leakyrelu", {"slope": _KERAS_LEAKY_SLOPE}
    if name in ("sigmoid", "softmax"):
        return name, {}
    return "activation", {"function": name}


def _layer_ops(layer: Any) -> tuple[list[tuple[str, dict[str, Any]]], list[str]]:
    """The ops one layer computes, in order, and the settings of it that no block has."""
    cls = type(layer).__name__
    cfg = layer.get_config()
    problems: list[str] = []
    if cfg.get("data_format", "channels_last") != "channels_last":
        problems.append(f"data_format {cfg['data_format']!r} (channels_last only)")
    if cls in ("Conv2D", "Conv2DTranspose"):
        kh, kw = _pair(cfg["kernel_size"])
        strides, dilation = _pair(cfg["strides"]), _pair(cfg.get("dilation_rate", 1))
        if kh != kw:
            problems.append(f"a {kh}x{kw} kernel (square kernels only)")
        if dilation != (1, 1):
            problems.append(f"dilation {dilation} (none in the spec)")
        if cfg.get("groups", 1) != 1:
            problems.append(f"groups={cfg['groups']} (the spec's convs are dense)")
        kind = "conv" if cls == "Conv2D" else "upconv"
        if kind == "conv" and strides != (1, 1):
            problems.append(f"strides {strides} (the spec's convs have stride 1)")
        if kind == "upconv" and cfg.get("output_padding") is not None:
            problems.append(f"output_padding {cfg['output_padding']} (none in the spec)")
        attrs = {"kernel": kh, "stride": strides[0], "strides": strides, "padding": cfg["padding"],
                 "bias": bool(cfg["use_bias"])}  # fmt: skip
        ops = [(kind, attrs)]
        act = _activation_op(cfg.get("activation", "linear"))
        return ops + ([act] if act else []), problems
    if cls == "Activation":
        act = _activation_op(cfg["activation"])
        return ([act] if act else []), problems
    if cls == "ReLU":
        slope = float(cfg.get("negative_slope", 0.0))
        if cfg.get("max_value") is not None or float(cfg.get("threshold", 0.0)) != 0.0:
            problems.append("a capped or thresholded ReLU (plain ReLU only)")
        return [("leakyrelu", {"slope": slope}) if slope else ("relu", {})], problems
    if cls == "LeakyReLU":
        slope = cfg.get("negative_slope", cfg.get("alpha", 0.3))
        return [("leakyrelu", {"slope": float(slope)})], problems
    if cls == "Softmax":
        return [("softmax", {"over_channels": cfg.get("axis", -1) in (-1, 3)})], problems
    if cls == "InstanceNormalization":  # this project's own (unet_keras.layers)
        return [("instancenorm", {"epsilon": float(cfg["epsilon"])})], problems
    if cls in ("BatchNormalization", "GroupNormalization"):
        if not (cfg.get("center", True) and cfg.get("scale", True)):
            problems.append("a norm without its scale or offset (the spec's norms have both)")
        attrs = {"epsilon": float(cfg["epsilon"])}
        if cls == "BatchNormalization":
            if cfg.get("axis") not in (-1, 3, [-1], [3]):
                problems.append(f"axis {cfg.get('axis')} (the channel axis only)")
            # Keras' momentum weighs the running value, PyTorch's (the spec's) the new batch.
            momentum = float(f"{1.0 - float(cfg['momentum']):.12g}")
            return [("batchnorm", {**attrs, "momentum": momentum})], problems
        channels = int(layer.input.shape[-1])
        if cfg["groups"] not in (-1, channels):
            problems.append(
                f"{cfg['groups']} groups over {channels} channels (the spec's instance norm has "
                "one group per channel)"
            )
        return [("instancenorm", attrs)], problems
    if cls == "MaxPooling2D":
        pool, strides = _pair(cfg["pool_size"]), _pair(cfg["strides"] or cfg["pool_size"])
        if pool != (2, 2) or strides != (2, 2) or cfg["padding"] != "valid":
            problems.append(
                f"pool {pool}, strides {strides}, padding {cfg['padding']!r} (the spec pools 2x2, "
                "stride 2, valid)"
            )
        return [("maxpool", {})], problems
    if cls in ("Dropout", "SpatialDropout2D"):
        return [("dropout", {"rate": float(cfg["rate"]), "spatial": cls != "Dropout"})], problems
    if cls == "UpSampling2D":
        size = _pair(cfg["size"])
        if size != (2, 2):
            problems.append(f"size {size} (the spec upsamples x2)")
        mode = cfg.get("interpolation", "nearest")
        if mode not in ("nearest", "bilinear"):
            problems.append(f"interpolation {mode!r} (nearest or bilinear only)")
        return [("upsample", {"mode": mode, "align_corners": False})], problems
    if cls == "AlignedBilinearUpsampling":  # this project's layer (unet_keras.layers)
        if int(cfg.get("factor", 2)) != 2:
            problems.append(f"factor {cfg.get('factor')} (the spec upsamples x2)")
        return [("upsample", {"mode": "bilinear", "align_corners": True})], problems
    if cls == "PadTo":  # this project's layer
        return [("pad", {"mode": cfg["mode"], "align": cfg["align"]})], problems
    if cls == "ZeroPadding2D":
        (t, b), (lf, r) = cfg["padding"]
        return [("pad", {"mode": "zeros", "amounts": (t, b, lf, r)})], problems
    if cls == "Cropping2D":
        (t, b), (lf, r) = cfg["cropping"]
        return [("crop", {"amounts": (t, b, lf, r)})], problems
    if cls == "Resizing":
        if cfg.get("interpolation") != "bilinear" or cfg.get("crop_to_aspect_ratio"):
            problems.append(
                f"interpolation {cfg.get('interpolation')!r} (the spec resizes bilinearly, "
                "without cropping to the aspect ratio)"
            )
        return [("resize", {"size": (cfg["height"], cfg["width"])})], problems
    if cls == "Concatenate":
        if cfg.get("axis", -1) not in (-1, 3):
            problems.append(f"axis {cfg['axis']} (the channel axis only)")
        return [("concat", {})], problems
    return [("unknown", {})], problems


def as_list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, (list, tuple)) else [value]


def _op(index: int, kind: str, layer: Any, inputs: tuple[int, ...], attrs: dict[str, Any] | None = None,
        problems: list[str] | None = None) -> Op:  # fmt: skip
    cls = type(layer).__name__
    return Op(index, kind, inputs, f"layer {layer.name} ({cls})", layer.name, cls,
              int(layer.output.shape[-1]), layer, attrs or {}, problems or [])  # fmt: skip


def graph_ops(model: Any, source: str) -> tuple[list[Op], int]:
    """The ops of ``model`` in layer order, and the index of the op that produces the output.

    Raises:
        GraphMismatchError: Several inputs or outputs, or a nested model.
    """
    if len(as_list(model.inputs)) != 1 or len(as_list(model.outputs)) != 1:
        raise GraphMismatchError(
            source,
            [f"{len(as_list(model.inputs))} inputs and {len(as_list(model.outputs))} outputs "
             "(a U-Net has one of each)"],
        )  # fmt: skip
    ops: list[Op] = []
    producer: dict[int, int] = {}
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            raise GraphMismatchError(
                source, [f"layer {layer.name} is a nested model; flatten it before porting"]
            )
        if type(layer).__name__ == "InputLayer":
            op = _op(len(ops), "input", layer, ())
            ops.append(op)
            producer[id(layer.output)] = op.index
            continue
        reads = tuple(producer[id(t)] for t in as_list(layer.input))
        steps, problems = _layer_ops(layer)
        if not steps:  # a linear activation: the layer passes its input on
            producer[id(layer.output)] = reads[0]
            continue
        for i, (kind, attrs) in enumerate(steps):
            op = _op(len(ops), kind, layer, reads if i == 0 else (len(ops) - 1,), attrs,
                     problems if i == 0 else [])  # fmt: skip
            ops.append(op)
        producer[id(layer.output)] = len(ops) - 1
    return ops, producer[id(as_list(model.outputs)[0])]


def keras_graph(model: Any, source: str) -> Graph:
    """The :class:`unet_graph.Graph` of a Keras functional ``model``.

    Raises:
        GraphMismatchError: Several inputs or outputs, or a nested model.
    """
    ops, output = graph_ops(model, source)
    shape = as_list(model.inputs)[0].shape
    h, w = shape[1], shape[2]
    size = (int(h), int(w)) if h is not None and w is not None else None
    return Graph(ops, output, source, int(shape[-1]), size, words=KERAS_WORDS)
