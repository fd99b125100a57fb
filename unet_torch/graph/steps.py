"""Calls in plan terms: each :class:`~unet_torch.graph.calls.Call` (a module, a function, a tensor
method or an ATen op) becomes one :class:`Step`, an op kind with the settings a plan block has, the
settings no block has, and the state-dict keys of the tensors it reads.

Modules are read from their attributes, functions and ops from their arguments; both end in the
same few helpers (:func:`conv`, :func:`pad`, ...), so ``nn.Conv2d``, ``F.conv2d`` and
``aten.conv2d`` are judged by one rule.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from unet_torch.graph.calls import Call, T

#: Activation functions the spec has no block for (named in refusals as such).
_OTHER_ACTIVATIONS = {
    "gelu", "silu", "elu", "selu", "celu", "tanh", "relu6", "hardtanh", "mish", "hardswish",
    "softplus", "prelu", "log_softmax", "hardsigmoid",
}  # fmt: skip
_PASS_METHODS = {"contiguous", "clone", "detach"}
_PASS_ATEN = {"clone", "contiguous", "alias", "detach", "lift_fresh_copy"}
_F_LEAKY_SLOPE = 0.01  # F.leaky_relu's default


@dataclass
class Step:
    """What one call computes in plan terms.

    Attributes:
        kind: An op kind (:class:`unet_graph.Op`), ``"pass"`` (the input unchanged) or ``"first"``
            (item 0 of a tuple the input holds: max pooling's values beside its indices).
        attrs: The settings a plan block has.
        problems: Settings no block has.
        keys: The tensors it reads from the state dict: role (``weight``, ``bias``,
            ``running_mean``, ``running_var``) → key.
    """

    kind: str
    attrs: dict[str, Any] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    keys: dict[str, str] = field(default_factory=dict)


def _pair(value: Any) -> tuple[int, int]:
    if isinstance(value, (list, tuple)):
        return (int(value[0]), int(value[0])) if len(value) == 1 else (int(value[0]), int(value[1]))
    return int(value), int(value)


def _shape(value: Any) -> tuple[int, ...]:
    return value.shape if isinstance(value, T) else ()


def _kernel_problems(kh: int, kw: int, dilation: Any, groups: int) -> list[str]:
    """What a conv or transposed conv has that none of the spec's convs has."""
    problems = []
    if kh != kw:
        problems.append(f"a {kh}x{kw} kernel (square kernels only)")
    if _pair(dilation) != (1, 1):
        problems.append(f"dilation {_pair(dilation)} (none in the spec)")
    if groups != 1:
        problems.append(f"groups={groups} (the spec's convs are dense)")
    return problems


# -- the rules, one per block kind ----------------------------------------------------------------
def conv(
    kernel: tuple[int, int],
    stride: Any,
    padding: Any,
    dilation: Any,
    groups: int,
    bias: bool,
    padding_mode: str = "zeros",
) -> Step:
    """A 2-D convolution: square kernel, stride 1, zero padding by half the kernel (``same``) or
    none (``valid``)."""
    kh, kw = kernel
    problems = _kernel_problems(kh, kw, dilation, groups)
    if _pair(stride) != (1, 1):
        problems.append(f"strides {_pair(stride)} (the spec's convs have stride 1)")
    if padding_mode != "zeros":
        problems.append(f"padding_mode {padding_mode!r} (the spec pads with zeros)")
    if isinstance(padding, str):
        mode = padding
    elif _pair(padding) == (0, 0):
        mode = "valid"
    elif _pair(padding) == (kh // 2, kw // 2) and kh % 2 == 1:
        mode = "same"
    else:
        mode = "valid"
        problems.append(
            f"padding {_pair(padding)} for a {kh}x{kw} kernel (the spec pads by half the kernel "
            "or not at all)"
        )
    attrs = {"kernel": kh, "stride": 1, "strides": (1, 1), "padding": mode, "bias": bias}
    return Step("conv", attrs, problems)


def upconv(
    kernel: tuple[int, int],
    stride: Any,
    padding: Any,
    output_padding: Any,
    dilation: Any,
    groups: int,
    bias: bool,
) -> Step:
    """A 2-D transposed convolution (the reader checks for 2x2, stride 2)."""
    kh, kw = kernel
    problems = _kernel_problems(kh, kw, dilation, groups)
    for what, value in (("padding", padding), ("output_padding", output_padding)):
        if _pair(value) != (0, 0):
            problems.append(f"{what} {_pair(value)} (none in the spec)")
    s = _pair(stride)
    attrs = {"kernel": kh, "stride": s[0], "strides": s, "padding": "valid", "bias": bias}
    return Step("upconv", attrs, problems)


def batchnorm(eps: float, momentum: Any, affine: bool, tracks: bool) -> Step:
    problems = []
    if not tracks:
        problems.append(
            "a batch norm without running statistics (it normalises by each batch's own in "
            "evaluation; the spec's uses its running statistics)"
        )
    if momentum is None and tracks:
        problems.append(
            "momentum None (a cumulative average; the spec's batch norm has a momentum)"
        )
    attrs = {"epsilon": float(eps), "affine": affine}
    if momentum is not None:
        attrs["momentum"] = float(momentum)
    return Step("batchnorm", attrs, problems)


def instancenorm(eps: float, affine: bool, tracks: bool) -> Step:
    problems = []
    if tracks:
        problems.append(
            "an instance norm with running statistics (it uses them in evaluation; the spec's "
            "normalises each sample by its own)"
        )
    return Step("instancenorm", {"epsilon": float(eps), "affine": affine}, problems)


def groupnorm(groups: int, channels: int, eps: float, affine: bool) -> Step:
    problems = []
    if groups != channels:
        problems.append(
            f"{groups} groups over {channels} channels (the spec's instance norm has one group per "
            "channel)"
        )
    return Step("instancenorm", {"epsilon": float(eps), "affine": affine}, problems)


def maxpool(kernel: Any, stride: Any, padding: Any, dilation: Any, ceil: bool) -> Step:
    k = _pair(kernel)
    s = _pair(stride) if stride not in (None, [], ()) else k
    p, d = _pair(padding), _pair(dilation)
    if k != (2, 2) or s != (2, 2) or p != (0, 0) or d != (1, 1) or ceil:
        extra = ", ceil_mode" if ceil else ""
        problem = (f"pool {k}, strides {s}, padding {p}, dilation {d}{extra} (the spec pools "
                   "2x2, stride 2, no padding)")  # fmt: skip
        return Step("maxpool", {}, [problem])
    return Step("maxpool")


def dropout(p: float, spatial: bool) -> Step:
    if not p:  # MONAI's blocks hold Dropout(0.0) when no dropout is asked for
        return Step("pass")
    return Step("dropout", {"rate": float(p), "spatial": spatial})


def interpolate(
    call: Call, mode: str, align_corners: Any, scale: Any, antialias: bool = False
) -> Step:
    """``F.interpolate`` and its kin: ×2 upsampling, or a bilinear resize of a skip."""
    problems = []
    in_hw, out_hw = call.arg(0, "input").shape[-2:], call.shape[-2:]
    aligned = bool(align_corners)
    if mode not in ("nearest", "bilinear"):
        problems.append(f"mode {mode!r} (nearest or bilinear only)")
    if antialias:
        problems.append("antialias (none in the spec)")
    scales = None if scale is None else tuple(float(s) for s in _pair_float(scale))
    doubled = out_hw == (2 * in_hw[0], 2 * in_hw[1])
    if scales == (2.0, 2.0) or (scales is None and doubled):
        attrs = {"mode": mode, "align_corners": aligned and mode == "bilinear"}
        if scales is None:
            attrs["to_size"] = True
        return Step("upsample", attrs, problems)
    if scales is not None:
        problems.append(f"scale {scales} (the spec upsamples x2)")
        return Step("upsample", {"mode": mode, "align_corners": aligned}, problems)
    if mode != "bilinear" or aligned:
        problems.append(
            f"a resize by {mode}{' with aligned corners' if aligned else ''} (the spec resizes a "
            "skip bilinearly, half-pixel centres)"
        )
    return Step("resize", {"size": tuple(out_hw)}, problems)


def _pair_float(value: Any) -> tuple[float, float]:
    if isinstance(value, (list, tuple)):
        return (float(value[0]), float(value[-1]))
    return float(value), float(value)


def pad(amounts: Sequence[int], mode: str, value: Any) -> Step:
    """``F.pad``: PyTorch's order is (left, right, top, bottom); the op's is (top, bottom, left,
    right), as Keras' layers give them."""
    problems = []
    amounts = [int(a) for a in amounts]
    if len(amounts) > 4:
        problems.append(f"padding {tuple(amounts)} of more than the two spatial axes")
    lf, r, *rest = amounts + [0, 0]
    t, b = rest[:2] if len(amounts) >= 4 else (0, 0)
    if min(lf, r, t, b) < 0:
        problems.append(f"negative padding {tuple(amounts)} (a crop; the spec pads)")
    fill = {"constant": "zeros", "replicate": "replicate"}.get(mode)
    if fill is None:
        problems.append(f"mode {mode!r} (zeros or the edge replicated)")
    if mode == "constant" and value not in (None, 0, 0.0):
        problems.append(f"fill value {value} (the spec pads with zeros)")
    return Step("pad", {"mode": fill or "zeros", "amounts": (t, b, lf, r)}, problems)


def crop(top: int, bottom: int, left: int, right: int) -> Step:
    if not any((top, bottom, left, right)):
        return Step("pass")
    return Step("crop", {"amounts": (top, bottom, left, right)})


def softmax(dim: Any, ndim: int) -> Step:
    return Step("softmax", {"over_channels": dim is not None and int(dim) % max(ndim, 1) == 1})


def concat(dim: Any, ndim: int) -> Step:
    if int(dim) % max(ndim, 1) != 1:
        return Step("concat", {}, [f"dim {dim} (the channel axis, 1, only)"])
    return Step("concat")


def other_activation(name: str) -> Step:
    return Step("activation", {"function": name.rstrip("_")})


def unknown(what: str) -> Step:
    return Step("unknown", {"what": what})


# -- modules ----------------------------------------------------------------------------------------
def _module_keys(call: Call, state: set[str], roles: Sequence[str]) -> dict[str, str]:
    return {r: f"{call.path}.{r}" for r in roles if f"{call.path}.{r}" in state}


_NORM_ROLES = ("weight", "bias", "running_mean", "running_var")


def module_step(call: Call, state: set[str]) -> Step:
    m = call.module
    step = _module_rule(m, call)
    if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
        step.keys = _module_keys(call, state, ("weight", "bias"))
    elif isinstance(m, (nn.BatchNorm2d, nn.InstanceNorm2d, nn.GroupNorm)):
        step.keys = _module_keys(call, state, _NORM_ROLES)
    elif isinstance(m, nn.Module) and any(True for _ in m.parameters(recurse=False)):
        step.problems.append("parameters no block of the spec holds")
    return step


def _module_rule(m: Any, call: Call) -> Step:
    if isinstance(m, nn.Conv2d):
        return conv(m.kernel_size, m.stride, m.padding, m.dilation, m.groups, m.bias is not None,
                    m.padding_mode)  # fmt: skip
    if isinstance(m, nn.ConvTranspose2d):
        return upconv(m.kernel_size, m.stride, m.padding, m.output_padding, m.dilation, m.groups,
                      m.bias is not None)  # fmt: skip
    if isinstance(m, nn.BatchNorm2d):
        return batchnorm(m.eps, m.momentum, m.affine, m.track_running_stats)
    if isinstance(m, nn.InstanceNorm2d):
        return instancenorm(m.eps, m.affine, m.track_running_stats)
    if isinstance(m, nn.GroupNorm):
        return groupnorm(m.num_groups, m.num_channels, m.eps, m.affine)
    if isinstance(m, nn.LeakyReLU):
        return Step("leakyrelu", {"slope": float(m.negative_slope)})
    if isinstance(m, nn.ReLU):
        return Step("relu")
    if isinstance(m, nn.Sigmoid):
        return Step("sigmoid")
    if isinstance(m, nn.Softmax):
        return softmax(m.dim, len(call.shape))
    if isinstance(m, nn.MaxPool2d):
        return maxpool(m.kernel_size, m.stride, m.padding, m.dilation, m.ceil_mode)
    if isinstance(m, (nn.Dropout, nn.Dropout2d)):
        return dropout(m.p, isinstance(m, nn.Dropout2d))
    if isinstance(m, nn.Upsample):  # also UpsamplingBilinear2d / UpsamplingNearest2d
        step = interpolate(call, m.mode, m.align_corners, m.scale_factor)
        if m.size is not None:
            step.problems.append(f"a fixed output size {m.size} (the spec upsamples x2)")
        return step
    if isinstance(m, (nn.ZeroPad2d, nn.ConstantPad2d)):
        return pad(m.padding, "constant", m.value)
    if isinstance(m, nn.ReplicationPad2d):
        return pad(m.padding, "replicate", None)
    if isinstance(m, nn.Identity):
        return Step("pass")
    name = type(m).__name__
    if name.lower() in _OTHER_ACTIVATIONS:
        return other_activation(name.lower())
    return unknown(f"module class {name}")


# -- functions and tensor methods ------------------------------------------------------------------
_TORCH_MODULES = ("torch", "torchvision", "_operator", "operator", "builtins")


def function_step(call: Call) -> Step:
    """A call of a torch function (``F.relu``, ``torch.cat``, ...) or a tensor method."""
    fn = call.node.target
    if call.how == "function":
        origin = getattr(fn, "__module__", None) or ""
        if not origin.startswith(_TORCH_MODULES):
            return unknown(f"function {call.name}")
    name = call.name
    x = call.arg(0, "input")
    ndim = len(_shape(x))
    if name in ("relu", "relu_"):
        return Step("relu")
    if name in ("leaky_relu", "leaky_relu_"):
        return Step("leakyrelu", {"slope": float(call.arg(1, "negative_slope", _F_LEAKY_SLOPE))})
    if name in ("sigmoid", "sigmoid_"):
        return Step("sigmoid")
    if name == "softmax":
        return softmax(call.arg(1, "dim"), ndim)
    if name in ("cat", "concat", "concatenate"):
        tensors = call.arg(0, "tensors")
        return concat(call.arg(1, "dim", 0), len(_shape(tensors[0])) if tensors else 0)
    if name in ("max_pool2d", "max_pool2d_with_indices"):
        # With its indices, the values are item 0 of a tuple (a "first" step reads them).
        return maxpool(call.arg(1, "kernel_size"), call.arg(2, "stride"), call.arg(3, "padding", 0),
                       call.arg(4, "dilation", 1), bool(call.arg(5, "ceil_mode", False)))  # fmt: skip
    if name in ("dropout", "dropout2d", "feature_dropout"):
        return dropout(call.arg(1, "p", 0.5), name != "dropout")
    if name in ("interpolate", "upsample"):
        return interpolate(call, call.arg(3, "mode", "nearest"), call.arg(4, "align_corners"),
                           call.arg(2, "scale_factor"), bool(call.arg(6, "antialias", False)))  # fmt: skip
    if name == "pad":
        return pad(call.arg(1, "pad"), call.arg(2, "mode", "constant"), call.arg(3, "value"))
    if name == "center_crop":
        return _center_crop(x, call.arg(1, "output_size"))
    if name == "getitem" and isinstance(x, T):
        return _getitem_crop(x, call.args[1])
    if name == "getitem" and call.args[1] == 0:
        return Step("first")
    if name == "conv2d":
        w, b = call.arg(1, "weight"), call.arg(2, "bias")
        step = conv(w.shape[-2:], call.arg(3, "stride", 1), call.arg(4, "padding", 0),
                    call.arg(5, "dilation", 1), int(call.arg(6, "groups", 1)), b is not None)  # fmt: skip
        step.keys = _tensor_keys(weight=w, bias=b)
        return step
    if name == "conv_transpose2d":
        w, b = call.arg(1, "weight"), call.arg(2, "bias")
        step = upconv(w.shape[-2:], call.arg(3, "stride", 1), call.arg(4, "padding", 0),
                      call.arg(5, "output_padding", 0), call.arg(7, "dilation", 1),
                      int(call.arg(6, "groups", 1)), b is not None)  # fmt: skip
        step.keys = _tensor_keys(weight=w, bias=b)
        return step
    if name == "batch_norm":
        rm, rv, w, b = (call.arg(i, n) for i, n in
                        enumerate(("running_mean", "running_var", "weight", "bias"), start=1))  # fmt: skip
        step = batchnorm(call.arg(7, "eps", 1e-5), call.arg(6, "momentum", 0.1), w is not None,
                         rm is not None and not call.arg(5, "training", False))  # fmt: skip
        step.keys = _tensor_keys(weight=w, bias=b, running_mean=rm, running_var=rv)
        return step
    if name in _PASS_METHODS and call.how == "method":
        return Step("pass")
    if name.rstrip("_") in _OTHER_ACTIVATIONS:
        return other_activation(name)
    return unknown(f"{'method' if call.how == 'method' else 'function'} {name}")


def _tensor_keys(**tensors: Any) -> dict[str, str]:
    return {role: t.key for role, t in tensors.items() if isinstance(t, T) and t.key}


def _center_crop(x: T, size: Any) -> Step:
    """torchvision's ``center_crop``: its top and left offsets are rounded halves."""
    h, w = x.shape[-2:]
    size = [size] if isinstance(size, int) else list(size)
    th, tw = (int(size[0]), int(size[0])) if len(size) == 1 else (int(size[0]), int(size[1]))
    if th > h or tw > w:
        return unknown("function center_crop to a larger size (it pads)")
    top, left = int(round((h - th) / 2.0)), int(round((w - tw) / 2.0))
    return crop(top, h - th - top, left, w - tw - left)


def _getitem_crop(x: T, index: Any) -> Step:
    """``x[..., a:b, c:d]``: a crop of the spatial axes, anything else unknown."""
    index = index if isinstance(index, tuple) else (index,)
    ndim = len(x.shape)
    if index.count(Ellipsis) == 1:
        at = index.index(Ellipsis)
        index = index[:at] + (slice(None),) * (ndim - len(index) + 1) + index[at + 1 :]
    index = tuple(index) + (slice(None),) * (ndim - len(index))
    if ndim != 4 or len(index) != 4 or not all(isinstance(i, slice) for i in index):
        return unknown("function getitem other than a crop")
    bounds = []
    for axis, item in enumerate(index):
        start, stop, step = item.indices(x.shape[axis])
        if step != 1:
            return unknown("function getitem with a step")
        bounds.append((start, x.shape[axis] - max(stop, start)))
    if bounds[0] != (0, 0) or bounds[1] != (0, 0):
        return unknown("function getitem over the batch or channels")
    (t, b), (lf, r) = bounds[2], bounds[3]
    return crop(t, b, lf, r)


# -- ATen ops (torch.export) ----------------------------------------------------------------------
def aten_step(call: Call) -> Step:
    """An op of an exported graph, by its ATen schema's argument order."""
    name = (
        call.name.rstrip("_") if call.name.endswith("_") and call.name != "_softmax" else call.name
    )
    a = call.arg
    x = a(0, "input")
    ndim = len(_shape(x))
    if name == "conv2d":
        w, b = a(1, "weight"), a(2, "bias")
        step = conv(w.shape[-2:], a(3, "stride", 1), a(4, "padding", 0), a(5, "dilation", 1),
                    int(a(6, "groups", 1)), b is not None)  # fmt: skip
        step.keys = _tensor_keys(weight=w, bias=b)
        return step
    if name == "conv_transpose2d":
        w, b = a(1, "weight"), a(2, "bias")
        step = upconv(w.shape[-2:], a(3, "stride", 1), a(4, "padding", 0),
                      a(5, "output_padding", 0), a(7, "dilation", 1), int(a(6, "groups", 1)),
                      b is not None)  # fmt: skip
        step.keys = _tensor_keys(weight=w, bias=b)
        return step
    if name in ("batch_norm", "instance_norm"):
        w, b, rm, rv = a(1, "weight"), a(2, "bias"), a(3, "running_mean"), a(4, "running_var")
        eps = float(a(7, "eps", 1e-5))
        if name == "batch_norm":
            step = batchnorm(eps, a(6, "momentum", 0.1), w is not None,
                             rm is not None and not a(5, "training", False))  # fmt: skip
        else:
            step = instancenorm(eps, w is not None, rm is not None and not a(5, "use_input_stats"))
        step.keys = _tensor_keys(weight=w, bias=b, running_mean=rm, running_var=rv)
        return step
    if name == "group_norm":
        w, b = a(2, "weight"), a(3, "bias")
        step = groupnorm(
            int(a(1, "num_groups")), x.shape[1], float(a(4, "eps", 1e-5)), w is not None
        )
        step.keys = _tensor_keys(weight=w, bias=b)
        return step
    if name == "relu":
        return Step("relu")
    if name == "leaky_relu":
        return Step("leakyrelu", {"slope": float(a(1, "negative_slope", _F_LEAKY_SLOPE))})
    if name == "sigmoid":
        return Step("sigmoid")
    if name in ("softmax", "_softmax"):
        return softmax(a(1, "dim"), ndim)
    if name == "cat":
        tensors = a(0, "tensors")
        return concat(a(1, "dim", 0), len(_shape(tensors[0])) if tensors else 0)
    if name in ("max_pool2d", "max_pool2d_with_indices"):
        return maxpool(a(1, "kernel_size"), a(2, "stride"), a(3, "padding", 0), a(4, "dilation", 1),
                       bool(a(5, "ceil_mode", False)))  # fmt: skip
    if name in ("dropout", "feature_dropout"):
        return dropout(a(1, "p"), name == "feature_dropout")
    if name in ("upsample_nearest2d", "upsample_bilinear2d"):
        mode = "nearest" if "nearest" in name else "bilinear"
        scales = a(3 if mode == "bilinear" else 2, "scale_factors")
        aligned = a(2, "align_corners") if mode == "bilinear" else False
        return interpolate(call, mode, aligned, scales)
    if name == "pad":
        return pad(a(1, "pad"), a(2, "mode", "constant"), a(3, "value"))
    if name == "constant_pad_nd":
        return pad(a(1, "pad"), "constant", a(2, "value", 0))
    if name == "replication_pad2d":
        return pad(a(1, "padding"), "replicate", None)
    if name == "slice":
        return _aten_slice(x, int(a(1, "dim", 0)), a(2, "start"), a(3, "end"), a(4, "step", 1))
    if name in _PASS_ATEN:
        return Step("pass")
    if name in _OTHER_ACTIVATIONS:
        return other_activation(name)
    return unknown(f"op aten.{call.name}")


def _aten_slice(x: T, dim: int, start: Any, end: Any, step: Any) -> Step:
    ndim = len(x.shape)
    dim %= max(ndim, 1)
    start, stop, stride = slice(start, end, step).indices(x.shape[dim])
    if stride != 1:
        return unknown("op aten.slice with a step")
    before, after = start, x.shape[dim] - max(stop, start)
    if not before and not after:
        return Step("pass")
    if ndim != 4 or dim < 2:
        return unknown("op aten.slice over the batch or channels")
    t, b, lf, r = (before, after, 0, 0) if dim == 2 else (0, 0, before, after)
    return crop(t, b, lf, r)
