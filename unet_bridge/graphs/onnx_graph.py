"""ONNX models into the U-Net graph reader's ops (:mod:`unet_graph`), and their weights by name.

An ONNX file carries its graph and its weights, so a U-Net exported by any framework is read with
no flags: each node on the data path becomes an :class:`~unet_graph.Op` (``Conv`` a conv,
``ConvTranspose`` an up conv, ``Resize`` ×2 an upsampling or, to another tensor's size, a skip
resize, ``Pad`` and ``Slice`` the skip merges, ...), the reader infers the spec, and each plan
block's initializers give the canonical tensors (ONNX keeps PyTorch's OIHW and
``(in, out, kh, kw)`` layouts, so mapping is renaming). The nodes that compute shapes (``Shape``,
``Gather``, ``Sub``, ``Div``, ``Cast``, ``Constant``, ``Concat`` of sizes, ...) read no activation
and are not ops.

Sizes that an exporter computes at run time (the pad to the skip's size, a centre crop's offsets,
a resize to the skip's size) are measured: the model runs once in onnxruntime with those tensors
as extra outputs, at its own size or, for a model that takes any size, at a small odd one.

Exporters fold batch norm into the convolution before it (``torch.onnx.export`` in eval mode does):
such a model is a conv with bias and no norm, which is what the spec reads, and the note says so.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from unet_graph import Graph, GraphMismatchError, Op, read_unet_graph
from unet_spec import UNetSpec, build_plan

#: How messages name the ONNX ops of some op kinds.
ONNX_WORDS = {
    "upconv": "ConvTranspose",
    "upsample": "Resize",
    "maxpool": "MaxPool",
    "concat": "Concat",
    "dropout": "Dropout",
    "spatial_dropout": "Dropout",
}
# Nearest-neighbour ×2 that repeats each pixel twice, as (coordinate transformation, rounding):
# the source coordinate of output pixel x is x/2 (asymmetric), (x+0.5)/2-0.5 (half pixel) or
# (x+0.5)/2 (TensorFlow's), and only these roundings of it land on x // 2.
_NEAREST_X2 = {
    ("asymmetric", "floor"), ("asymmetric", "round_prefer_floor"),
    ("half_pixel", "round_prefer_floor"), ("half_pixel", "round_prefer_ceil"),
    ("pytorch_half_pixel", "round_prefer_floor"), ("pytorch_half_pixel", "round_prefer_ceil"),
    ("tf_half_pixel_for_nn", "floor"),
}  # fmt: skip
# Bilinear sampling the spec has: half-pixel centres (PyTorch's align_corners=False, Keras) or
# aligned corners; for ×2 and larger outputs pytorch_half_pixel is half_pixel.
_LINEAR = {"half_pixel": False, "pytorch_half_pixel": False, "align_corners": True}
# Ops that hand their input on unchanged at inference.
_PASS = ("Identity",)
# Ops whose outputs describe a tensor rather than carry it.
_SHAPE_OPS = ("Shape", "Size")


@dataclass(frozen=True)
class OnnxRead:
    """What :func:`read_onnx` found.

    Attributes:
        spec: The inferred spec (its head is the model's own head activation).
        weights: Canonical weights (plan names, float32).
        names: Canonical tensor name → the initializer it came from.
        input_size: The model's fixed ``(H, W)``, or ``None`` when it takes any size.
        notes: What the spec expresses only approximately, and what the exporter changed.
    """

    spec: UNetSpec
    weights: dict[str, np.ndarray]
    names: dict[str, str]
    input_size: tuple[int, int] | None
    notes: tuple[str, ...]


def _attrs(node: Any) -> dict[str, Any]:
    import onnx

    out = {}
    for a in node.attribute:
        value = onnx.helper.get_attribute_value(a)
        out[a.name] = value.decode() if isinstance(value, bytes) else value
    return out


def _f32(value: float) -> float:
    """A float stored as float32 (epsilon 1e-5 is 9.99999975e-06 there) as its shortest decimal."""
    return float(str(np.float32(value)))


class _Front:
    """One pass over an ONNX graph: nodes into ops, then the measured sizes filled in."""

    def __init__(self, model: Any, source: str) -> None:
        from onnx import numpy_helper

        self.model, self.source = model, source
        graph = model.graph
        self.consts: dict[str, Any] = {t.name: t for t in graph.initializer}
        self._to_array = numpy_helper.to_array
        self.arrays: dict[str, np.ndarray] = {}
        for node in graph.node:
            if node.op_type == "Constant":
                self._constant(node)
        inputs = [i for i in graph.input if i.name not in self.consts]
        if len(inputs) != 1 or len(graph.output) != 1:
            raise GraphMismatchError(
                source, [f"{len(inputs)} inputs and {len(graph.output)} outputs (a U-Net has one of each)"]
            )  # fmt: skip
        self.input = inputs[0]
        dims = self.input.type.tensor_type.shape.dim
        if len(dims) != 4 or not dims[1].HasField("dim_value"):
            raise GraphMismatchError(
                source,
                [f"input {self.input.name!r} is not an NCHW image batch with fixed channels"],
            )
        hw = [d.dim_value if d.HasField("dim_value") else None for d in dims[2:]]
        self.input_size = (hw[0], hw[1]) if None not in hw else None
        self.ops: list[Op] = [
            Op(
                0,
                "input",
                (),
                f"input {self.input.name}",
                self.input.name,
                "input",
                dims[1].dim_value,
            )  # fmt: skip
        ]
        self.producer: dict[str, int] = {self.input.name: 0}
        self.readers = Counter(name for node in graph.node for name in node.input if name)
        self.readers.update(o.name for o in graph.output)
        # Pads an exporter wrote before a conv (a 'same' conv with an even kernel): folded into it.
        self.pending_pad: dict[str, tuple[tuple[int, int, int, int], str]] = {}
        self.wanted: dict[str, str] = {}  # tensor → what to measure: "value" or "shape"
        self.measured: dict[str, np.ndarray] = {}
        self.measured_at: tuple[int, int] | None = None
        self.generated: list[str] = []  # initializer names an exporter made up (folding)

    # -- constants ---------------------------------------------------------------------------
    def _constant(self, node: Any) -> None:
        import onnx

        for a in node.attribute:
            value = onnx.helper.get_attribute_value(a)
            if isinstance(value, onnx.TensorProto):
                self.arrays[node.output[0]] = self._to_array(value)
            elif a.name in ("value_float", "value_int", "value_floats", "value_ints"):
                self.arrays[node.output[0]] = np.asarray(value)

    def const(self, name: str) -> np.ndarray | None:
        """The value of an initializer or Constant output (``None``: computed at run time)."""
        if not name:
            return None
        if name not in self.arrays and name in self.consts:
            self.arrays[name] = self._to_array(self.consts[name])
        return self.arrays.get(name)

    def _fold(self, node: Any) -> None:
        """Compute a node of constants (the legacy exporter builds a pad's amounts from constants
        through Reshape, Slice, Transpose and Cast), so its outputs are constants too."""
        values = [self.const(n) for n in node.input if n]
        if any(v is None for v in values) or node.domain not in ("", "ai.onnx"):
            return
        from onnx.reference import ReferenceEvaluator

        try:
            outs = ReferenceEvaluator(node).run(
                None, dict(zip([n for n in node.input if n], values, strict=True))
            )
        except Exception:  # an op the reference evaluator lacks: the value stays unknown
            return
        for name, value in zip(node.output, outs, strict=False):
            self.arrays[name] = np.asarray(value)

    def stored(self, name: str) -> bool:
        return name in self.consts or name in self.arrays

    # -- nodes into ops ----------------------------------------------------------------------
    def add(self, node: Any, kind: str, inputs: tuple[int, ...], channels: int,
            attrs: dict[str, Any] | None = None, problems: list[str] | None = None,
            source: Any = None) -> Op:  # fmt: skip
        where = node.name or node.output[0]
        op = Op(len(self.ops), kind, inputs, f"node {where} ({node.op_type})", where, node.op_type,
                channels, source, attrs or {}, problems or [])  # fmt: skip
        self.ops.append(op)
        self.producer[node.output[0]] = op.index
        return op

    def data(self, name: str) -> Op:
        return self.ops[self.producer[name]]

    def read(self) -> Graph:
        for node in self.model.graph.node:
            reads = [name for name in node.input if name in self.producer]
            if not reads and node.op_type != "Constant":
                self._fold(node)
            if not reads or node.op_type in _SHAPE_OPS or node.op_type == "Constant":
                continue
            handler = getattr(self, f"_{node.op_type.lower()}", None)
            if node.op_type in _PASS:
                self.producer[node.output[0]] = self.producer[reads[0]]
            elif handler is None:
                self.unknown(node, reads)
            else:
                handler(node, _attrs(node))
        output = self.model.graph.output[0].name
        if output not in self.producer:
            raise GraphMismatchError(self.source, ["the output does not depend on the input"])
        if self.wanted:
            self.measure()
        self._pad_references()
        return Graph(self.ops, self.producer[output], self.source, self.ops[0].channels,
                     self.input_size, self.measured_at, words=ONNX_WORDS)  # fmt: skip

    def _pad_references(self) -> None:
        """A pad to the skip's size reads the skip, as the plan's pad block does; its amounts are
        numbers here, so the skip is the tensor the padded map is concatenated with (a concat
        joins maps of one size)."""
        for op in self.ops:
            if op.kind != "concat" or len(op.inputs) != 2:
                continue
            for side, i in enumerate(op.inputs):
                pad, other = self.ops[i], op.inputs[1 - side]
                if pad.kind == "pad" and len(pad.inputs) == 1 and other < pad.index:
                    pad.inputs = (pad.inputs[0], other)

    def unknown(self, node: Any, reads: list[str]) -> None:
        inputs = tuple(dict.fromkeys(self.producer[n] for n in reads))
        self.add(node, "unknown", inputs, self.data(reads[0]).channels,
                 {"what": f"ONNX op {node.op_type}"})  # fmt: skip

    def weight(self, node: Any, index: int, problems: list[str]) -> str | None:
        name = node.input[index] if len(node.input) > index else ""
        if not name:
            return None
        if not self.stored(name):
            problems.append(f"input {name!r} is computed, not stored (a weight must be a constant)")
            return None
        if name.startswith("onnx::") or name.endswith("weight_bias"):
            self.generated.append(name)
        return name

    def _kernel(self, node: Any, a: dict[str, Any]) -> tuple[Any, ...] | None:
        """A (transposed) conv's weight and bias names, weight, kernel size and the problems so
        far; ``None`` (the node read as an unknown op) when its weight is not a stored 4-D tensor."""
        problems: list[str] = []
        w_name = self.weight(node, 1, problems)
        b_name = self.weight(node, 2, problems)
        w = self.const(w_name) if w_name else None
        if w is None or w.ndim != 4:
            self.unknown(node, [node.input[0]])
            return None
        k = list(a.get("kernel_shape", w.shape[2:]))
        if k[0] != k[1]:
            problems.append(f"a {k[0]}x{k[1]} kernel (square kernels only)")
        return problems, w_name, b_name, w, k

    def _conv(self, node: Any, a: dict[str, Any]) -> None:
        kernel = self._kernel(node, a)
        if kernel is None:
            return
        problems, w_name, b_name, w, k = kernel
        strides, dilations = list(a.get("strides", [1, 1])), list(a.get("dilations", [1, 1]))
        if dilations != [1, 1]:
            problems.append(f"dilations {dilations} (none in the spec)")
        if a.get("group", 1) != 1:
            problems.append(f"group={a['group']} (the spec's convs are dense)")
        if strides != [1, 1]:
            problems.append(f"strides {strides} (the spec's convs have stride 1)")
        x = node.input[0]
        pads = list(a.get("pads", [0, 0, 0, 0]))
        t, lf, b, r = pads if len(pads) == 4 else (0, 0, 0, 0)
        if x in self.pending_pad:
            (pt, pb, pl, pr), x = self.pending_pad.pop(x)
            t, b, lf, r = t + pt, b + pb, lf + pl, r + pr
        auto = a.get("auto_pad", "NOTSET")
        before, after = (k[0] - 1) // 2, k[0] - 1 - (k[0] - 1) // 2
        if auto == "VALID" or (auto == "NOTSET" and not any((t, b, lf, r))):
            padding = "valid"
        elif auto == "SAME_UPPER" or (auto == "NOTSET" and (t, b) == (lf, r) == (before, after)):
            padding = "same"  # an even kernel's extra row and column after, as Keras pads
        elif auto == "SAME_LOWER" and k[0] % 2:
            padding = "same"
        else:
            padding = "same"
            problems.append(
                f"pads {(t, lf, b, r)} with a {k[0]}x{k[0]} kernel (the spec's convs pad 'same' "
                "or not at all)"
            )
        attrs = {"kernel": k[0], "stride": strides[0], "strides": tuple(strides),
                 "padding": padding, "bias": b_name is not None}  # fmt: skip
        # torch.onnx's rewriter records the batch norm it folded into this conv.
        meta = " ".join(
            p.value for p in node.metadata_props if p.key.endswith(("rule_name", "class_hierarchy"))
        )
        if "BatchNorm" in meta and b_name:
            self.generated.append(b_name)
        self.add(node, "conv", (self.producer[x],), int(w.shape[0]), attrs, problems,
                 {"weight": w_name, "bias": b_name})  # fmt: skip

    def _convtranspose(self, node: Any, a: dict[str, Any]) -> None:
        kernel = self._kernel(node, a)
        if kernel is None:
            return
        problems, w_name, b_name, w, k = kernel
        strides = list(a.get("strides", [1, 1]))
        group = a.get("group", 1)
        if group != 1:
            problems.append(f"group={group} (the spec's transposed convs are dense)")
        for key in ("pads", "output_padding"):
            if any(a.get(key, [])):
                problems.append(f"{key} {list(a[key])} (none in the spec)")
        if a.get("output_shape") or a.get("auto_pad", "NOTSET") not in ("NOTSET", "VALID"):
            problems.append("an output shape or auto_pad (the spec's transposed conv has neither)")
        if list(a.get("dilations", [1, 1])) != [1, 1]:
            problems.append(f"dilations {list(a['dilations'])} (none in the spec)")
        attrs = {"kernel": k[0], "stride": strides[0], "strides": tuple(strides),
                 "padding": "valid", "bias": b_name is not None}  # fmt: skip
        self.add(node, "upconv", (self.producer[node.input[0]],), int(w.shape[1]) * group, attrs,
                 problems, {"weight": w_name, "bias": b_name})  # fmt: skip

    def _batchnormalization(self, node: Any, a: dict[str, Any]) -> None:
        problems: list[str] = []
        names = [self.weight(node, i, problems) for i in range(1, 5)]
        if a.get("training_mode", 0):
            problems.append("training mode (batch statistics at inference)")
        # ONNX's momentum weighs the running value, PyTorch's (the spec's) the new batch.
        attrs = {"epsilon": _f32(a.get("epsilon", 1e-5)),
                 "momentum": float(f"{1.0 - _f32(a.get('momentum', 0.9)):.12g}")}  # fmt: skip
        source = dict(zip(("weight", "bias", "running_mean", "running_var"), names, strict=True))
        x = self.data(node.input[0])
        self.add(node, "batchnorm", (x.index,), x.channels, attrs, problems, source)

    def _instancenormalization(self, node: Any, a: dict[str, Any]) -> None:
        problems: list[str] = []
        names = [self.weight(node, i, problems) for i in (1, 2)]
        x = self.data(node.input[0])
        self.add(node, "instancenorm", (x.index,), x.channels,
                 {"epsilon": _f32(a.get("epsilon", 1e-5))}, problems,
                 {"weight": names[0], "bias": names[1]})  # fmt: skip

    def _relu(self, node: Any, a: dict[str, Any]) -> None:
        x = self.data(node.input[0])
        self.add(node, "relu", (x.index,), x.channels)

    def _leakyrelu(self, node: Any, a: dict[str, Any]) -> None:
        x = self.data(node.input[0])
        self.add(node, "leakyrelu", (x.index,), x.channels, {"slope": _f32(a.get("alpha", 0.01))})

    def _sigmoid(self, node: Any, a: dict[str, Any]) -> None:
        x = self.data(node.input[0])
        self.add(node, "sigmoid", (x.index,), x.channels)

    def _softmax(self, node: Any, a: dict[str, Any]) -> None:
        x = self.data(node.input[0])
        opset = next(
            (o.version for o in self.model.opset_import if o.domain in ("", "ai.onnx")), 13
        )
        axis = a.get("axis", -1 if opset >= 13 else 1)
        # The reader names the channel axis as its Keras front-end does (-1, NHWC); any other
        # axis is None, which it refuses.
        self.add(node, "softmax", (x.index,), x.channels, {"axis": -1 if axis in (1, -3) else None})

    def _maxpool(self, node: Any, a: dict[str, Any]) -> None:
        x = self.data(node.input[0])
        problems = []
        k, s = list(a.get("kernel_shape", [])), list(a.get("strides", [1, 1]))
        if k != [2, 2] or s != [2, 2] or any(a.get("pads", [])) or a.get("ceil_mode", 0):
            problems.append(
                f"kernel {k}, strides {s}, pads {list(a.get('pads', []))}, ceil_mode "
                f"{a.get('ceil_mode', 0)} (the spec pools 2x2, stride 2, no padding, floor)"
            )
        if len(node.output) > 1 and self.readers[node.output[1]]:
            problems.append("its indices are used (the spec's pooling keeps none)")
        self.add(node, "maxpool", (x.index,), x.channels, {}, problems)

    def _dropout(self, node: Any, a: dict[str, Any]) -> None:
        x = self.data(node.input[0])
        ratio = self.const(node.input[1]) if len(node.input) > 1 else None
        rate = float(ratio) if ratio is not None else float(a.get("ratio", 0.5))
        self.add(node, "dropout", (x.index,), x.channels, {"rate": _f32(rate), "spatial": False})

    def _concat(self, node: Any, a: dict[str, Any]) -> None:
        reads = [n for n in node.input if n in self.producer]
        if a.get("axis") not in (1, -3) or len(reads) != len(node.input):
            self.unknown(node, reads)
            return
        inputs = tuple(self.producer[n] for n in reads)
        channels = sum(self.ops[i].channels for i in inputs)
        self.add(node, "concat", inputs, channels)

    def _pad(self, node: Any, a: dict[str, Any]) -> None:
        x = self.data(node.input[0])
        problems = []
        mode = a.get("mode", "constant")
        fill = self.const(node.input[2]) if len(node.input) > 2 else None
        if mode == "constant" and fill is not None and float(np.asarray(fill).ravel()[0]) != 0.0:
            problems.append(
                f"padding with {float(np.asarray(fill).ravel()[0])} (zeros or the edge)"
            )
        if mode not in ("constant", "edge"):
            problems.append(f"mode {mode!r} (the spec pads with zeros or the edge)")
        pads = self.const(node.input[1]) if len(node.input) > 1 else np.asarray(a.get("pads", []))
        axes = self.const(node.input[3]) if len(node.input) > 3 and node.input[3] else None
        dynamic = pads is None or (len(node.input) > 3 and node.input[3] and axes is None)
        attrs = {"mode": "zeros" if mode == "constant" else "replicate", "pads": node.input[1],
                 "axes": node.input[3] if len(node.input) > 3 else ""}  # fmt: skip
        if not dynamic:
            amounts = _pad_amounts(np.asarray(pads), axes)
            if amounts is None:
                problems.append(
                    "pads the batch or the channels (the spec pads the height and width)"
                )
            elif (
                mode == "constant"
                and not problems
                and self.readers[node.output[0]] == 1
                and self._feeds_unpadded_conv(node.output[0])
            ):
                self.pending_pad[node.output[0]] = (amounts, node.input[0])
                self.producer[node.output[0]] = x.index
                return
            else:
                attrs["amounts"] = amounts
        else:
            self.wanted[node.input[1]] = "value"
            if attrs["axes"]:
                self.wanted[attrs["axes"]] = "value"
        self.add(node, "pad", (x.index,), x.channels, attrs, problems)

    def _feeds_unpadded_conv(self, name: str) -> bool:
        for node in self.model.graph.node:
            if name in node.input:
                a = _attrs(node)
                return (node.op_type == "Conv" and node.input[0] == name
                        and not any(a.get("pads", [])) and a.get("auto_pad", "NOTSET") == "NOTSET")  # fmt: skip
        return False

    def _slice(self, node: Any, a: dict[str, Any]) -> None:
        x = self.data(node.input[0])
        names = list(node.input[1:5]) + [""] * (5 - len(node.input))
        starts, ends, axes, steps = (self.const(n) if n else None for n in names[:4])
        if axes is not None and starts is not None and ends is not None:
            full = all(
                int(ax) % 4 in (0, 1) and int(s) == 0 and int(e) >= 2**31 - 1
                for ax, s, e in zip(np.ravel(axes), np.ravel(starts), np.ravel(ends), strict=False)
            )
            if full:  # x[:, :, ...]: the whole batch and every channel
                self.producer[node.output[0]] = x.index
                return
        for n in names[:4]:
            if n and not self.stored(n):
                self.wanted[n] = "value"
        self.wanted[node.input[0]] = "shape"
        slices = [(node.input[0], names[0], names[2], names[3])]
        # x[..., a:b, c:d] may come as one slice per axis: one crop.
        if x.kind == "crop" and x.attrs.get("slices") and self.readers[node.input[0]] == 1:
            x.attrs["slices"] += slices
            self.producer[node.output[0]] = x.index
            x.attrs["out"] = node.output[0]
            self.wanted.pop(node.input[0], None)
            self.wanted[node.output[0]] = "shape"
            return
        self.wanted[node.output[0]] = "shape"
        self.add(node, "crop", (x.index,), x.channels, {"slices": slices, "out": node.output[0]})

    def _resize(self, node: Any, a: dict[str, Any]) -> None:
        x = self.data(node.input[0])
        problems = []
        mode = a.get("mode", "nearest")
        ctm = a.get("coordinate_transformation_mode", "half_pixel")
        if mode == "nearest":
            rounding = a.get("nearest_mode", "round_prefer_floor")
            aligned = False
            if (ctm, rounding) not in _NEAREST_X2:
                problems.append(
                    f"nearest sampling with {ctm} coordinates rounded {rounding} (the spec "
                    "repeats each pixel)"
                )
        elif mode == "linear" and ctm in _LINEAR:
            aligned = _LINEAR[ctm]
        else:
            aligned = False
            problems.append(
                f"mode {mode!r} with coordinate_transformation_mode {ctm!r} (the spec interpolates "
                "nearest, or bilinear with half-pixel centres or aligned corners)"
            )
        names = list(node.input[1:4]) + [""] * (4 - len(node.input))
        scales = self.const(names[1]) if names[1] else None
        attrs: dict[str, Any] = {"mode": "bilinear" if mode == "linear" else "nearest",
                                 "align_corners": aligned}  # fmt: skip
        if scales is not None and scales.size == 4:
            attrs["scale"] = tuple(float(s) for s in scales[2:])
        else:
            self.wanted[node.input[0]] = "shape"
            self.wanted[node.output[0]] = "shape"
            attrs["shapes"] = (node.input[0], node.output[0])
        op = self.add(node, "upsample", (x.index,), x.channels, attrs, problems)
        self._scale_problem(op)

    def _upsample(self, node: Any, a: dict[str, Any]) -> None:
        """The ``Upsample`` op of opsets before 10 (nearest, or linear on asymmetric coordinates)."""
        mode = a.get("mode", "nearest")
        a = {"mode": "nearest" if mode == "nearest" else "linear",
             "coordinate_transformation_mode": "asymmetric", "nearest_mode": "floor"}  # fmt: skip
        self._resize(node, a)

    def _scale_problem(self, op: Op) -> None:
        scale = op.attrs.get("scale")
        if scale is not None and scale != (2.0, 2.0):
            op.problems.append(f"scales {scale} (the spec upsamples x2)")

    # -- measured sizes ----------------------------------------------------------------------
    def measure(self) -> None:
        """Run the model once with the wanted tensors (and shapes) as extra outputs."""
        import onnx
        import onnxruntime as ort

        model = onnx.ModelProto()
        model.CopyFrom(self.model)
        graph = model.graph
        outputs = {}
        for name, what in self.wanted.items():
            out = f"__measured_{len(outputs)}"
            src = name
            if what == "shape":
                graph.node.append(onnx.helper.make_node("Shape", [name], [out + "_s"]))
                src = out + "_s"
            graph.node.append(
                onnx.helper.make_node("Cast", [src], [out], to=onnx.TensorProto.INT64)
            )
            graph.output.append(
                onnx.helper.make_tensor_value_info(out, onnx.TensorProto.INT64, None)
            )
            outputs[name] = out
        options = ort.SessionOptions()
        options.log_severity_level = 4  # sizes it does not take are tried quietly
        sess = ort.InferenceSession(model.SerializeToString(), options,
                                    providers=["CPUExecutionProvider"])  # fmt: skip
        names = [outputs[n] for n in self.wanted]
        pools = sum(op.kind == "maxpool" for op in self.ops)
        cell = 2 ** max(pools, 1)
        if self.input_size is not None:
            candidates = [self.input_size]
        else:  # an odd size first: the pads and crops show where pooling drops a row
            sizes = [12 * cell + cell - 1, 12 * cell] + list(range(8 * cell, 40 * cell))
            candidates = [(n, n) for n in dict.fromkeys(sizes)][:80]
        last = ""
        for h, w in candidates:
            x = np.zeros((1, self.ops[0].channels, h, w), np.float32)
            try:
                values = sess.run(names, {self.input.name: x})
            except Exception as err:  # onnxruntime raises its own exception types
                last = str(err).splitlines()[0][:200]
                continue
            self.measured = {n: v for n, v in zip(self.wanted, values, strict=True)}
            self.measured_at = (h, w)
            break
        else:
            raise GraphMismatchError(
                self.source, [f"onnxruntime runs it at none of the sizes tried ({last})"]
            )
        for op in self.ops:
            if op.kind == "pad" and "amounts" not in op.attrs:
                axes = self.measured.get(op.attrs["axes"]) if op.attrs["axes"] else None
                amounts = _pad_amounts(self.measured[op.attrs["pads"]], axes)
                if amounts is None:
                    op.problems.append("pads the batch or the channels (the spec pads H and W)")
                else:
                    op.attrs["amounts"] = amounts
            elif op.kind == "crop":
                self._crop_amounts(op)
            elif op.kind == "upsample" and "shapes" in op.attrs:
                src, dst = (tuple(self.measured[n][2:]) for n in op.attrs["shapes"])
                if dst == (2 * src[0], 2 * src[1]):
                    op.attrs["scale"] = (2.0, 2.0)
                elif op.attrs["mode"] == "bilinear":
                    # A resize to another tensor's size: the skip brought to the up step's size.
                    op.kind, op.attrs["size"] = "resize", (int(dst[0]), int(dst[1]))
                    if op.attrs["align_corners"]:
                        op.problems.append("a resize with aligned corners (the spec's has none)")
                else:
                    op.problems.append(f"resizes {src} to {dst} (the spec upsamples x2)")

    def _crop_amounts(self, op: Op) -> None:
        src = self.measured[op.attrs["slices"][0][0]]
        dst = self.measured[op.attrs["out"]]
        start = {2: 0, 3: 0}
        for _, starts, axes, steps in op.attrs["slices"]:
            s = np.ravel(self._value(starts))
            ax = np.ravel(self._value(axes)) if axes else np.arange(len(s))
            st = np.ravel(self._value(steps)) if steps else np.ones(len(s), np.int64)
            for a, b, c in zip(ax, s, st, strict=False):
                a = int(a) % 4
                if int(c) != 1:
                    op.problems.append(f"a slice with step {int(c)} (a crop takes every pixel)")
                if a in (2, 3):
                    dim = int(src[a])
                    b = int(b)
                    start[a] = min(max(b + dim if b < 0 else b, 0), dim)
                elif int(src[a]) != int(dst[a]):
                    op.problems.append("slices the batch or the channels (a crop keeps both)")
        t, lf = start[2], start[3]
        op.attrs["amounts"] = (t, int(src[2] - dst[2]) - t, lf, int(src[3] - dst[3]) - lf)

    def _value(self, name: str) -> np.ndarray:
        value = self.const(name)
        return np.asarray(value if value is not None else self.measured[name])


def _pad_amounts(pads: np.ndarray, axes: np.ndarray | None) -> tuple[int, int, int, int] | None:
    """``(top, bottom, left, right)`` of ONNX pads (all begins, then all ends), or ``None`` when
    the batch or channels are padded."""
    pads = [int(p) for p in np.ravel(pads)]
    n = len(pads) // 2
    axes_list = [int(a) % 4 for a in np.ravel(axes)] if axes is not None else list(range(n))
    begin = dict(zip(axes_list, pads[:n], strict=False))
    end = dict(zip(axes_list, pads[n:], strict=False))
    if any(begin.get(a, 0) or end.get(a, 0) for a in (0, 1)):
        return None
    return begin.get(2, 0), end.get(2, 0), begin.get(3, 0), end.get(3, 0)


def read_onnx(model: str | Path | Any, source: str | None = None) -> OnnxRead:
    """The spec and canonical weights of the U-Net in an ONNX model.

    Args:
        model: An ``.onnx`` file (external data beside it is read too) or a loaded
            ``onnx.ModelProto``.
        source: How messages name the model (default: ``ONNX model NAME``).

    Raises:
        GraphMismatchError: The graph is not a U-Net the spec can express (every mismatch named by
            node and feature).
        ValueError: The file is not an ONNX model.
    """
    import onnx

    if isinstance(model, onnx.ModelProto):
        source = source or "ONNX model"
    else:
        path = Path(model)
        source = source or f"ONNX model {path.name}"
        try:
            model = onnx.load(str(path))
        except Exception as err:  # protobuf's DecodeError and onnx's own errors
            first = str(err).splitlines()[0][:200] if str(err) else type(err).__name__
            raise ValueError(f"{path}: not an ONNX model ({first})") from None
    front = _Front(model, source)
    found = read_unet_graph(front.read())
    inferred = found.spec
    names: dict[str, str] = {}
    weights: dict[str, np.ndarray] = {}
    for name, shape in build_plan(inferred).weight_shapes.items():
        block, tensor = name.rsplit(".", 1)
        initializer = found.layers[block][tensor]
        value = np.asarray(front.const(initializer), dtype=np.float32)
        if value.shape != tuple(shape):
            raise GraphMismatchError(
                front.source, [f"{initializer} is {value.shape}, {name} needs {tuple(shape)}"]
            )
        names[name] = initializer
        weights[name] = np.ascontiguousarray(value)
    notes = list(found.notes)
    folded = [n for n in front.generated if n in names.values()]
    if inferred.norm == "none" and inferred.conv_bias and folded:
        notes.append(
            "batch norm folded into the convs by the exporter: read as convs with bias and no "
            "norm (the same function at inference; training from it has no batch norm)"
        )
    return OnnxRead(inferred, weights, names, found.input_size, tuple(notes))


def onnx_runner(path: str | Path) -> Any:
    """NCHW float32 in, the model's output out, in one onnxruntime session."""
    from unet_bridge.artefacts.onnx import load

    return load(Path(path))


__all__ = ["ONNX_WORDS", "OnnxRead", "onnx_runner", "read_onnx"]
