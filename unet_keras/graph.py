"""The spec of a Keras U-Net read from its layer graph, for models this project did not build.

zhixuhao/unet and keras-unet (``vanilla_unet``, ``custom_unet``) build their models from auto-named
layers (``conv2d_17``), so nothing in a saved model names the plan. The functional graph says
everything else, and :func:`read_unet_graph` reads it:

1. Every layer becomes one or more *ops* in plan terms (a ``Conv2D`` with ``activation="relu"`` is a
   ``conv`` then a ``relu``; ``ReLU``/``LeakyReLU``/``Activation`` layers, ``BatchNormalization``,
   ``GroupNormalization`` with one group per channel (instance norm), ``MaxPooling2D``,
   ``Dropout``/``SpatialDropout2D``, ``Conv2DTranspose``, ``UpSampling2D``, ``Cropping2D``,
   ``Resizing``, ``ZeroPadding2D``, ``Concatenate`` and this project's own upsampling and padding
   layers).
2. The *main path* is followed from the input to the output: where a tensor feeds two layers, the one
   that is not a merge (concat, crop, resize, pad) continues the path and the other carries a skip.
3. The path is cut at the poolings and the up steps into encoder levels, the bottleneck and decoder
   levels; each level's convs, activations, norms and dropouts give the spec's fields, each skip
   branch gives the skip source, merge and concat order, and what follows the last decoder level's
   two convs gives the extra convs before the head and the head itself.
4. The inferred spec's plan is compared with the graph block by block (kind, channels, kernel,
   padding, bias, inputs), so a spec is only returned when its twin computes what the graph does.

Whatever the spec cannot express is collected, never only the first: each mismatch names the layer
and the architectural feature (``layer conv2d_5 (Conv2D): kernel 5x5; the spec's level convs are
3x3``). Dropout sites the spec has no exact place for (keras-unet drops between a level's two convs)
map to the nearest site and are reported in :attr:`GraphSpec.notes`: inference is unchanged,
training dropout differs.

Hand-written because Keras has no public "graph as data" API beyond each layer's ``input`` and
``output`` tensors and its config, which is what this reads.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import keras

from unet_spec import UNetSpec, build_plan

# Ops that bring a skip and the upsampled map together; the path never continues through their
# reference input.
_MERGES = ("concat", "crop", "resize", "pad")
_ACTS = ("relu", "leakyrelu")
_NORMS = ("batchnorm", "instancenorm")
_UPS = ("upconv", "upsample")
# Keras' ``leaky_relu`` activation function's default slope.
_KERAS_LEAKY_SLOPE = 0.2


class GraphMismatchError(ValueError):
    """The layer graph is not a U-Net the spec can express; ``mismatches`` lists every reason."""

    def __init__(self, source: str, mismatches: Sequence[str]) -> None:
        self.mismatches = list(mismatches)
        count = f"{len(mismatches)} mismatch" + ("es" if len(mismatches) != 1 else "")
        super().__init__(
            f"{source}: not a U-Net the spec can express ({count}): " + "; ".join(mismatches)
        )


@dataclass
class Op:
    """One step of the graph in plan terms.

    Attributes:
        index: Position in :attr:`Graph.ops`.
        kind: A plan block kind, or ``"sigmoid"``/``"softmax"`` (head activations),
            ``"activation"`` (another activation function) or ``"unknown"`` (a layer class no
            block computes).
        layer: The Keras layer (a fused activation shares its conv's layer).
        inputs: Indices of the ops read, in order.
        attrs: What the layer's config says (``filters``, ``kernel``, ``padding``, ...).
        problems: Settings of the layer no block has (strides on a conv, dilation, ...).
        name: The plan block this op is, once the graph is parsed (``""`` for dropouts and the head
            activation, which are compared separately).
    """

    index: int
    kind: str
    layer: Any
    inputs: tuple[int, ...]
    attrs: dict[str, Any] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    name: str = ""

    @property
    def label(self) -> str:
        return f"layer {self.layer.name} ({type(self.layer).__name__})"

    @property
    def channels(self) -> int:
        return int(self.layer.output.shape[-1])


@dataclass(frozen=True)
class GraphSpec:
    """What :func:`read_unet_graph` found.

    Attributes:
        spec: The inferred spec.
        layers: Plan block name → the Keras layer that holds its weights.
        input_size: The model's fixed ``(H, W)``, or ``None`` when it takes any size.
        head: The activation the model applies to its logits (``"none"``, ``"sigmoid"``,
            ``"softmax"``), which is also ``spec.head``.
        notes: What the spec expresses only approximately (training-time dropout), one line each.
    """

    spec: UNetSpec
    layers: dict[str, Any]
    input_size: tuple[int, int] | None
    head: str
    notes: tuple[str, ...] = ()


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
        return [("softmax", {"axis": cfg.get("axis", -1)})], problems
    if cls == "InstanceNormalization":  # this project's own (unet_keras.layers)
        return [("instancenorm", {"epsilon": float(cfg["epsilon"])})], problems
    if cls in ("BatchNormalization", "GroupNormalization"):
        if not (cfg.get("center", True) and cfg.get("scale", True)):
            problems.append("a norm without its scale or offset (the spec's norms have both)")
        attrs = {"epsilon": float(cfg["epsilon"])}
        if cls == "BatchNormalization":
            if cfg.get("axis") not in (-1, 3, [-1], [3]):
                problems.append(f"axis {cfg.get('axis')} (the channel axis only)")
            return [("batchnorm", {**attrs, "momentum": float(cfg["momentum"])})], problems
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


def _as_list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, (list, tuple)) else [value]


def graph_ops(model: Any, source: str) -> tuple[list[Op], int]:
    """The ops of ``model`` in layer order, and the index of the op that produces the output.

    Raises:
        GraphMismatchError: Several inputs or outputs, or a nested model.
    """
    if len(_as_list(model.inputs)) != 1 or len(_as_list(model.outputs)) != 1:
        raise GraphMismatchError(
            source,
            [f"{len(_as_list(model.inputs))} inputs and {len(_as_list(model.outputs))} outputs "
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
            op = Op(len(ops), "input", layer, ())
            ops.append(op)
            producer[id(layer.output)] = op.index
            continue
        reads = tuple(producer[id(t)] for t in _as_list(layer.input))
        steps, problems = _layer_ops(layer)
        if not steps:  # a linear activation: the layer passes its input on
            producer[id(layer.output)] = reads[0]
            continue
        for i, (kind, attrs) in enumerate(steps):
            op = Op(len(ops), kind, layer, reads if i == 0 else (len(ops) - 1,), attrs,
                    problems if i == 0 else [])  # fmt: skip
            ops.append(op)
        producer[id(layer.output)] = len(ops) - 1
    return ops, producer[id(_as_list(model.outputs)[0])]


# -- parsing ----------------------------------------------------------------------------------
@dataclass
class _Unit:
    """A conv and what follows it before the next conv."""

    conv: Op
    act: Op | None = None
    norm: Op | None = None
    act_first: bool = True
    dropouts: list[Op] = field(default_factory=list)
    extra: list[Op] = field(default_factory=list)


@dataclass
class _Level:
    prefix: str
    pre: list[Op]  # before the first conv (dropouts)
    units: list[_Unit]


class _Reader:
    """One pass over a model's graph; collects mismatches instead of stopping at the first."""

    def __init__(self, model: Any, source: str) -> None:
        self.source = source
        self.ops, self.output = graph_ops(model, source)
        self.problems: list[str] = []
        self.notes: list[str] = []
        self.dropout_sites: list[tuple[str, Op, bool]] = []  # (site, op, exact)
        shape = _as_list(model.inputs)[0].shape
        h, w = shape[1], shape[2]
        self.input_size = (int(h), int(w)) if h is not None and w is not None else None
        self.consumers: dict[int, list[int]] = {op.index: [] for op in self.ops}
        for op in self.ops:
            for i in dict.fromkeys(op.inputs):
                self.consumers[i].append(op.index)

    def problem(self, op: Op | None, text: str) -> None:
        self.problems.append(f"{op.label}: {text}" if op is not None else text)

    # The main path, from the input to the output.
    def main_path(self) -> list[Op]:
        """Each step takes the consumer with the longest way to the output (a skip is a short
        cut), a layer over a merge when they tie."""
        reach = {self.output: 0}
        for op in reversed(self.ops):  # layer order is topological
            after = [reach[i] + 1 for i in self.consumers[op.index] if i in reach]
            if op.index != self.output and after:
                reach[op.index] = max(after)
        path = [self.ops[0]]
        cur = self.ops[0]
        while cur.index != self.output:
            nxt = [i for i in self.consumers[cur.index] if i in reach]
            if not nxt:
                raise GraphMismatchError(
                    self.source, [f"{cur.label}: the output does not depend on it"]
                )
            best = max(nxt, key=lambda i: (reach[i], self.ops[i].kind not in _MERGES))
            cur = self.ops[best]
            path.append(cur)
        return path

    def trace_skip(self, op: Op, path_ids: set[int]) -> tuple[Op | None, list[Op]]:
        """From a merge's skip input back to the path: the op on the path, and the branch."""
        branch = []
        while op.index not in path_ids:
            branch.append(op)
            if op.kind not in ("crop", "resize", "dropout") or len(op.inputs) != 1:
                return None, branch
            op = self.ops[op.inputs[0]]
        return op, branch

    # Levels.
    def units(self, ops: Iterable[Op], prefix: str) -> _Level:
        pre: list[Op] = []
        units: list[_Unit] = []
        for op in ops:
            if op.kind == "conv":
                units.append(_Unit(op))
                continue
            unit = units[-1] if units else None
            if op.kind == "dropout":
                (unit.dropouts if unit else pre).append(op)
            elif unit is not None and op.kind in _ACTS and unit.act is None:
                unit.act = op
                unit.act_first = unit.norm is None
            elif unit is not None and op.kind in _NORMS and unit.norm is None:
                unit.norm = op
            elif unit is not None:
                unit.extra.append(op)
            else:
                pre.append(op)
        return _Level(prefix, pre, units)

    def name_units(
        self, level: _Level, units: Sequence[_Unit], prefix: str, first: int = 1
    ) -> None:
        for i, unit in enumerate(units, start=first):
            unit.conv.name = f"{prefix}.conv{i}"
            if unit.act is not None:
                unit.act.name = _act_name(f"{prefix}.relu{i}", unit.act)
            if unit.norm is not None:
                short = "bn" if unit.norm.kind == "batchnorm" else "norm"
                unit.norm.name = f"{prefix}.{short}{i}"
            for op in unit.extra:
                self.problem(
                    op, f"{_what(op)} after {unit.conv.layer.name}; the spec has none there"
                )

    def block_dropouts(self, level: _Level, site: str, before_site: str | None) -> None:
        """Dropout sites of one level: before its convs, between them, after them."""
        for op in level.pre:
            if op.kind != "dropout":
                self.problem(op, f"{_what(op)} before {level.prefix}'s convs; the spec has none")
            elif before_site:
                self.dropout_sites.append((before_site, op, True))
            else:
                self.dropout_sites.append((site, op, False))
        for j, unit in enumerate(level.units):
            for op in unit.dropouts:
                self.dropout_sites.append((site, op, j == len(level.units) - 1))

    def read(self) -> GraphSpec:
        self.ops[0].name = "input"
        path = self.main_path()
        path_ids = {op.index for op in path}
        on_path = set(path_ids)
        ups = [i for i, op in enumerate(path) if op.kind in _UPS]
        if not ups:
            raise GraphMismatchError(
                self.source,
                ["no up step (Conv2DTranspose or UpSampling2D) on the path: not a U-Net"],
            )
        pools = [i for i, op in enumerate(path[: ups[0]]) if op.kind == "maxpool"]
        for op in path[ups[0] :]:
            if op.kind == "maxpool":
                self.problem(op, "a pooling in the decoder; the spec pools only on the way down")
        depth = len(pools)
        if depth == 0:
            raise GraphMismatchError(self.source, ["no MaxPooling2D before the first up step"])
        if len(ups) != depth:
            self.problem(
                None,
                f"{len(ups)} up steps for {depth} poolings (a U-Net has one per pooling)",
            )
        depth_ok = 1 <= depth <= 8 and len(ups) == depth
        if not depth_ok:
            raise GraphMismatchError(self.source, self.problems or [f"depth {depth} (1 to 8)"])

        # Encoder levels and the bottleneck.
        bounds = [0, *pools]
        enc: list[_Level] = []
        for k in range(depth):
            level = self.units(path[bounds[k] + 1 : pools[k]], f"enc{k + 1}")
            path[pools[k]].name = f"enc{k + 1}.pool"
            self.name_units(level, level.units, level.prefix)
            self.block_dropouts(level, f"enc{k + 1}", None)
            enc.append(level)
        mid = self.units(path[pools[-1] + 1 : ups[0]], "mid")
        self.name_units(mid, mid.units, "mid")
        self.block_dropouts(mid, "mid", "bottom")

        # Decoder levels: the up step, the merge, the convs; the last also holds the tail convs and
        # the head.
        dec: dict[int, _Level] = {}
        up_info: dict[int, dict[str, Any]] = {}
        tail: list[_Unit] = []
        head_op: Op | None = None
        head_act = "none"
        for j, start in enumerate(ups):
            k = depth - j
            stop = ups[j + 1] if j + 1 < len(ups) else len(path)
            seg = path[start:stop]
            cut = next((i for i, op in enumerate(seg) if op.kind == "concat"), None)
            if cut is None:
                self.problem(seg[0], f"no Concatenate after the up step of dec{k}")
                raise GraphMismatchError(self.source, self.problems)
            up_info[k] = self.up_step(seg[:cut], k)
            up_info[k].update(self.merge(seg[cut], seg[cut - 1], k, path_ids, on_path))
            level = self.units(seg[cut + 1 :], f"dec{k}")
            if k == 1:
                head_op, head_act, level = self.split_head(level)
                tail = level.units[2:]
                level = _Level(level.prefix, level.pre, level.units[:2])
            self.name_units(level, level.units, level.prefix)
            self.block_dropouts(level, f"dec{k}", None)
            dec[k] = level
        self.name_units(_Level("tail", [], tail), tail, "tail")
        for unit in tail:
            if unit.norm is not None:
                self.problem(
                    unit.norm, "a norm after an extra conv before the head; the spec has none"
                )
            for op in unit.dropouts:
                self.dropout_sites.append(("dec1", op, False))

        for op in self.ops:
            if op.index not in on_path and op.kind != "input":
                self.problem(op, "not on the path from the input to the output, nor on a skip")
            if op.kind == "unknown" and op.index in on_path:
                self.problem(
                    op, f"layer class {type(op.layer).__name__}: no U-Net block computes it"
                )
            for text in op.problems:
                self.problem(op, text)

        spec = self.assemble(enc, mid, dec, up_info, tail, head_op, head_act)
        if spec is None or self.problems:
            raise GraphMismatchError(self.source, self.problems)
        self.compare_with_plan(spec)
        if self.problems:
            raise GraphMismatchError(self.source, self.problems)
        layers = {op.name: op.layer for op in self.ops if op.name}
        return GraphSpec(spec, layers, self.input_size, head_act, tuple(self.notes))

    def up_step(self, ops: Sequence[Op], k: int) -> dict[str, Any]:
        info: dict[str, Any] = {"op": ops[0], "kind": ops[0].kind, "conv": None, "act": None,
                                "pad": None}  # fmt: skip
        first = ops[0]
        if first.kind == "upconv":
            first.name = f"dec{k}.up"
            s = first.attrs["strides"]
            if first.attrs["kernel"] != 2 or s != (2, 2):
                self.problem(
                    first,
                    f"a {first.attrs['kernel']}x{first.attrs['kernel']} transposed conv with "
                    f"strides {s}; the spec's is 2x2, stride 2",
                )
            if not first.attrs["bias"]:
                self.problem(first, "an up-step transposed conv without bias; the spec's has one")
            info["conv"] = first
        else:
            first.name = f"dec{k}.upsample"
        for op in ops[1:]:
            if op.kind == "conv" and info["conv"] is None and info["act"] is None:
                op.name = f"dec{k}.up"
                info["conv"] = op
                if not op.attrs["bias"]:
                    self.problem(op, "an up-step conv without bias; the spec's has one")
                if op.attrs["kernel"] > 1 and op.attrs["padding"] != "same":
                    self.problem(op, "an up-step conv with valid padding; the spec pads it 'same'")
            elif op.kind in _ACTS and info["act"] is None and info["conv"] is not None:
                op.name = _act_name(f"dec{k}.uprelu", op)
                info["act"] = op
            elif op.kind == "pad" and info["pad"] is None:
                op.name = f"dec{k}.pad"
                info["pad"] = op
            elif op.kind == "dropout":
                self.dropout_sites.append((f"dec{k}", op, False))
            else:
                self.problem(op, f"{_what(op)} in the up step of dec{k}; the spec has none there")
        return info

    def merge(
        self, concat: Op, up: Op, k: int, path_ids: set[int], on_path: set[int]
    ) -> dict[str, Any]:
        concat.name = f"dec{k}.concat"
        if len(concat.inputs) != 2:
            self.problem(concat, f"joins {len(concat.inputs)} tensors; the spec's concat joins 2")
            return {"order": None, "tap": None, "branch": []}
        side = concat.inputs.index(up.index)
        order = "up_skip" if side == 0 else "skip_up"
        skip_in = self.ops[concat.inputs[1 - side]]
        tap, branch = self.trace_skip(skip_in, path_ids)
        on_path.update(op.index for op in branch)
        for op in branch:
            if op.kind in ("crop", "resize"):
                op.name = f"dec{k}.skip"
            elif op.kind == "dropout":
                self.dropout_sites.append((f"enc{k}", op, False))
        if tap is None:
            self.problem(branch[-1], f"the skip of dec{k} does not come from the encoder")
        return {"order": order, "tap": tap, "branch": [op for op in branch if op.kind != "dropout"]}

    def split_head(self, level: _Level) -> tuple[Op | None, str, _Level]:
        """The 1×1 head conv (the last conv) and its activation, and the level without them."""
        if not level.units:
            self.problem(None, "no conv after the last concat: the model has no head")
            return None, "none", level
        last = level.units[-1]
        head = last.conv
        head.name = "head"
        act = "none"
        rest = [op for op in (last.act, last.norm) if op is not None] + last.extra + last.dropouts
        for op in rest:
            if op.kind in ("sigmoid", "softmax") and act == "none" and op is rest[-1]:
                if op.kind == "softmax" and op.attrs.get("axis", -1) not in (-1, 3):
                    self.problem(op, "a softmax over another axis than the channels")
                act = op.kind
            else:
                self.problem(op, f"{_what(op)} after the head conv; the spec's head is a 1x1 conv "
                             "and sigmoid, softmax or nothing")  # fmt: skip
        if head.attrs["kernel"] != 1:
            k = head.attrs["kernel"]
            self.problem(head, f"the last conv is {k}x{k}; the spec's head is a 1x1 conv")
        if not head.attrs["bias"]:
            self.problem(head, "a head conv without bias; the spec's has one")
        return head, act, _Level(level.prefix, level.pre, level.units[:-1])

    # Fields.
    def agree(self, feature: str, items: Sequence[tuple[Op, Any]], show=repr) -> Any:
        """The value most layers have; every other layer is a mismatch."""
        if not items:
            return None
        value = Counter(v for _, v in items).most_common(1)[0][0]
        for op, v in items:
            if v != value:
                self.problem(op, f"{feature} {show(v)} where the other layers have {show(value)}")
        return value

    def assemble(self, enc, mid, dec, up_info, tail, head_op, head_act) -> UNetSpec | None:
        depth = len(enc)
        levels = [*enc, mid, *(dec[k] for k in sorted(dec, reverse=True))]
        units = [u for level in levels for u in level.units] + list(tail)
        for level in levels:
            if len(level.units) != 2:
                where = level.units[0].conv if level.units else None
                self.problem(
                    where,
                    f"{level.prefix} has {len(level.units)} convs; each level of the spec has 2",
                )
        if self.problems and any(len(level.units) != 2 for level in levels):
            return None
        for unit in units:
            if unit.conv.attrs["kernel"] != 3:
                k = unit.conv.attrs["kernel"]
                self.problem(unit.conv, f"kernel {k}x{k}; the spec's level convs are 3x3")
            if unit.act is None:
                self.problem(unit.conv, "no activation after this conv; the spec has one")
        padding = self.agree("padding", [(u.conv, u.conv.attrs["padding"]) for u in units])
        bias = self.agree("use_bias", [(u.conv, u.conv.attrs["bias"]) for u in units])
        acts = [(u.act, (u.act.kind, u.act.attrs.get("slope", 0.0))) for u in units if u.act]
        acts += [(info["act"], (info["act"].kind, info["act"].attrs.get("slope", 0.0)))
                 for info in up_info.values() if info["act"] is not None]  # fmt: skip
        act_kind, slope = self.agree("activation", acts, _show_act) or ("relu", 0.0)
        block_units = [u for level in levels for u in level.units]
        norm = self.agree("norm", [(u.norm or u.conv, u.norm.kind if u.norm else "none")
                                   for u in block_units])  # fmt: skip
        normed = [u for u in block_units if u.norm is not None]
        act_first = self.agree(
            "order (activation before norm)", [(u.norm, u.act_first) for u in normed if u.act]
        )
        eps = self.agree("epsilon", [(u.norm, u.norm.attrs["epsilon"]) for u in normed])
        momentum = self.agree(
            "momentum",
            [(u.norm, u.norm.attrs["momentum"]) for u in normed if "momentum" in u.norm.attrs],
        )

        # Up steps.
        infos = [up_info[k] for k in sorted(up_info)]
        up_kind = self.agree("up step", [(i["op"], i["kind"]) for i in infos])
        modes = [(i["op"], (i["op"].attrs["mode"], i["op"].attrs["align_corners"]))
                 for i in infos if i["kind"] == "upsample"]  # fmt: skip
        mode, aligned = self.agree("interpolation", modes, _show_mode) or ("nearest", False)
        up_kernel = self.agree(
            "up-step conv kernel",
            [(i["op"], i["conv"].attrs["kernel"] if i["conv"] else 0) for i in infos
             if i["kind"] == "upsample"],
        )  # fmt: skip
        up_act = self.agree("up-step activation", [(i["op"], i["act"] is not None) for i in infos])
        order = self.agree("concat order", [(i["op"], i["order"]) for i in infos if i["order"]])

        # Skips: where they leave the encoder and how they meet the upsampled map.
        sources, merges = [], []
        for k, info in up_info.items():
            tap = info["tap"]
            if tap is None:
                continue
            level = enc[k - 1]
            pool = next(op for op in self.ops if op.name == f"enc{k}.pool")
            before = self.ops[pool.inputs[0]]
            if tap is pool:
                sources.append((info["op"], "pooled"))
            elif tap is before:
                sources.append((info["op"], "pre_pool"))
            elif level.units and tap is _last_op(level.units[-1]):
                sources.append((info["op"], "pre_pool"))
                self.notes.append(
                    f"the skip of dec{k} leaves enc{k} before its dropout; the twins' skip carries it (training differs)"
                )
            else:
                self.problem(tap, f"the skip of dec{k} leaves enc{k} at {tap.layer.name}; the "
                             "spec's skips leave a level after its convs or its pooling")  # fmt: skip
            kinds = [op.kind for op in info["branch"]]
            if info["pad"] is not None:
                kinds.append("pad")
            if len(kinds) > 1:
                self.problem(info["op"], f"the skip of dec{k} is merged by {' then '.join(kinds)}")
            merges.append((info["op"], kinds[0] if kinds else "none"))
        source = self.agree("skip source", sources)
        merge = self.agree("skip merge", merges)

        pad_mode, pad_align = "zeros", "center"
        pads = [i["pad"] for i in infos if i["pad"] is not None]
        if pads:
            pad_mode = self.agree("pad fill", [(p, p.attrs["mode"]) for p in pads])
            pad_align = self.agree("pad placement", [(p, _pad_align(p)) for p in pads])

        # Widths.
        widths = []
        for level in [*enc, mid]:
            a, b = (u.conv.channels for u in level.units)
            if a != b:
                self.problem(level.units[1].conv,
                             f"{level.prefix}'s convs have {a} and {b} filters; the spec's "
                             "encoder levels keep one width")  # fmt: skip
            widths.append(b)
        dec_widths = tuple(dec[k].units[1].conv.channels for k in range(1, depth + 1))
        mid_widths = tuple(dec[k].units[0].conv.channels for k in range(1, depth + 1))
        up_widths = tuple(
            up_info[k]["conv"].channels if up_info[k]["conv"] else 0 for k in range(1, depth + 1)
        )
        base = widths[0]
        doubling = tuple(base * 2**i for i in range(depth + 1))
        enc_widths = tuple(widths)

        # Dropout: one rate, sites where the spec has them.
        sites = list(dict.fromkeys(site for site, _, _ in self.dropout_sites))
        rates = [(op, op.attrs["rate"]) for _, op, _ in self.dropout_sites]
        rate = Counter(r for _, r in rates).most_common(1)[0][0] if rates else 0.0
        other = sorted({f"{r:.6g}" for _, r in rates if r != rate})
        if other:
            self.notes.append(f"dropout rates {', '.join(other)} become {rate:.6g}")
        inside = [
            f"{op.layer.name} ({site})" for site, op, exact in self.dropout_sites if not exact
        ]
        if inside:
            self.notes.append(f"dropout inside a level moves after its convs: {', '.join(inside)}")
        if any(op.attrs["spatial"] for _, op, _ in self.dropout_sites):
            self.notes.append("SpatialDropout2D (whole channels) becomes Dropout (single values)")
        if self.problems:
            return None
        up_conv_kernel = 1 if up_kind == "upconv" else up_kernel
        fields: dict[str, Any] = {
            "in_channels": self.ops[0].channels,
            "num_classes": head_op.channels if head_op is not None else 1,
            "depth": depth,
            "base_filters": base,
            "padding": padding,
            "skip_source": source,
            "skip_merge": merge,
            "pad_mode": pad_mode,
            "pad_align": pad_align,
            "concat_order": order,
            "upsample": "transpose" if up_kind == "upconv" else mode,
            "align_corners": bool(aligned) if up_kind == "upsample" else False,
            "up_conv_kernel": up_conv_kernel,
            "up_activation": bool(up_act),
            "widths": () if enc_widths == doubling else enc_widths,
            "decoder_widths": () if dec_widths == enc_widths[:depth] else dec_widths,
            "decoder_mid_widths": () if mid_widths == dec_widths else mid_widths,
            "conv_bias": bias,
            "activation": "leaky_relu" if act_kind == "leakyrelu" else "relu",
            "norm": {"batchnorm": "batch", "instancenorm": "instance"}.get(norm, "none"),
            "act_before_norm": bool(act_first) if norm != "none" else False,
            "dropout": rate if sites else 0.0,
            "dropout_at": tuple(sites) if sites else ("mid",),
            "head_convs": tuple(u.conv.channels for u in tail),
            "head": head_act,
        }
        if act_kind == "leakyrelu":
            fields["negative_slope"] = slope
        if eps is not None:
            fields["bn_epsilon"] = eps
        if momentum is not None:
            fields["bn_momentum"] = float(f"{1.0 - momentum:.12g}")  # Keras' is 1 - PyTorch's
        if up_kind == "upconv" or up_conv_kernel:
            decoder = dec_widths
            fields["up_widths"] = () if up_widths == decoder else up_widths
        try:
            return UNetSpec(**fields)
        except ValueError as err:
            self.problem(None, f"the graph's features do not combine into a spec ({err})")
            return None

    def compare_with_plan(self, spec: UNetSpec) -> None:
        """Every plan block against its op: kind, channels, kernel, padding, bias, inputs."""
        plan = build_plan(spec)
        named = {op.name: op for op in self.ops if op.name}
        dropped = {b.name: b.inputs[0] for b in plan.blocks if b.kind == "dropout"}
        layout = None
        if self.input_size is not None:
            try:
                layout = plan.layout(self.input_size)
            except ValueError as err:
                self.problem(None, f"the model's input size does not fit the inferred spec ({err})")

        def plan_input(name: str) -> str:
            while name in dropped:
                name = dropped[name]
            return name

        def op_input(index: int) -> str:
            op = self.ops[index]
            while not op.name and op.kind in ("dropout", "sigmoid", "softmax") and op.inputs:
                op = self.ops[op.inputs[0]]
            return op.name or op.layer.name

        for block in plan.blocks:
            if block.kind == "dropout":
                continue
            op = named.pop(block.name, None)
            if op is None:
                self.problem(
                    None, f"plan block {block.name} ({block.kind}) has no layer in the model"
                )
                continue
            found = {"kind": op.kind, "channels": op.channels}
            wanted = {"kind": block.kind, "channels": block.out_channels}
            if block.kind in ("conv", "upconv"):
                found |= {"kernel": op.attrs["kernel"], "bias": op.attrs["bias"]}
                wanted |= {"kernel": block.kernel, "bias": block.bias}
                if block.kernel > 1 and block.kind == "conv":
                    found["padding"], wanted["padding"] = op.attrs["padding"], block.padding
            if block.kind == "upsample":
                found["mode"] = (op.attrs["mode"], op.attrs["align_corners"])
                wanted["mode"] = (block.mode, block.align_corners)
            if block.kind == "leakyrelu":
                found["slope"], wanted["slope"] = op.attrs["slope"], block.slope
            if block.kind in _NORMS:
                found["epsilon"], wanted["epsilon"] = op.attrs["epsilon"], block.epsilon
            found["inputs"] = tuple(op_input(i) for i in op.inputs)
            wanted["inputs"] = tuple(plan_input(n) for n in block.inputs)
            if block.kind in ("crop", "resize", "pad") and layout is not None:
                info = layout[block.name]
                if "amounts" in op.attrs:
                    found["amounts"], wanted["amounts"] = op.attrs["amounts"], info.crop
                if "size" in op.attrs:
                    found["size"], wanted["size"] = tuple(op.attrs["size"]), info.shape[1:]
            if block.kind in ("crop", "resize"):  # the reference size is baked into the layer
                found["inputs"], wanted["inputs"] = found["inputs"][:1], wanted["inputs"][:1]
            for key, value in wanted.items():
                if found.get(key) != value:
                    self.problem(
                        op, f"plan block {block.name}: {key} {found.get(key)!r}, expected {value!r}"
                    )
        for op in named.values():
            self.problem(op, f"named {op.name} but the inferred plan has no such block")


def _last_op(unit: _Unit) -> Op:
    ops = [unit.conv, unit.act, unit.norm]
    return max((op for op in ops if op is not None), key=lambda op: op.index)


def _pad_align(op: Op) -> str:
    if "align" in op.attrs:
        return op.attrs["align"]
    t, b, lf, r = op.attrs["amounts"]
    return "end" if (t == 0 and b > 1) or (lf == 0 and r > 1) else "center"


def _act_name(relu_name: str, op: Op) -> str:
    return relu_name.replace("relu", "act") if op.kind == "leakyrelu" else relu_name


def _what(op: Op) -> str:
    if op.kind == "activation":
        return f"activation {op.attrs['function']!r}"
    return {"batchnorm": "batch norm", "instancenorm": "instance norm", "relu": "a ReLU",
            "leakyrelu": "a leaky ReLU", "sigmoid": "a sigmoid", "softmax": "a softmax",
            "maxpool": "a pooling", "upconv": "a transposed conv", "upsample": "an upsampling",
            "concat": "a concat", "unknown": f"layer class {type(op.layer).__name__}"}.get(
        op.kind, op.kind)  # fmt: skip


def _show_act(value: tuple[str, float]) -> str:
    kind, slope = value
    return f"LeakyReLU({slope})" if kind == "leakyrelu" else "ReLU"


def _show_mode(value: tuple[str, bool]) -> str:
    mode, aligned = value
    return f"{mode} (aligned corners)" if aligned else mode


def read_unet_graph(model: Any, source: str | None = None) -> GraphSpec:
    """Infer the spec of a Keras functional ``model`` from its layer graph.

    Args:
        model: A loaded Keras functional model (a ``.keras`` file, a legacy ``.h5`` model, or one
            built in memory).
        source: How messages name the model (default: its name).

    Returns:
        The spec, the Keras layer of each weighted plan block, the fixed input size, the head
        activation and what is only approximate.

    Raises:
        GraphMismatchError: The graph is not a U-Net the spec can express; every mismatch is
            listed, each naming the layer and the feature.
    """
    return _Reader(model, source or f"Keras model {model.name!r}").read()
