"""Reading a U-Net spec from a torch module: trace it (:mod:`~unet_torch.graph.calls`), turn its
calls into ops (:mod:`~unet_torch.graph.steps`), let the framework-free reader (:mod:`unet_graph`)
infer and check the spec, and tie each canonical tensor to the module's state-dict key."""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass, field

import torch
import torch.fx as fx
from torch import nn

from unet_graph import Graph, GraphMismatchError, GraphSpec, Op, read_unet_graph
from unet_spec import UNetSpec, build_plan
from unet_torch.graph.calls import (
    Call,
    Traced,
    TraceMismatch,
    export_calls,
    fx_calls,
    fx_graph,
)
from unet_torch.graph.steps import Step, aten_step, function_step, module_step
from unet_torch.graph.weights import Fixed

#: How messages name the torch classes of some op kinds.
TORCH_WORDS = {
    "upconv": "ConvTranspose2d",
    "upsample": "Upsample or F.interpolate",
    "maxpool": "MaxPool2d",
    "concat": "torch.cat",
    "dropout": "Dropout",
    "spatial_dropout": "Dropout2d",
}
# Sizes tried, in order, when none is given. The trace runs the module (twice: fx's graph and the
# forward it is checked against), and shapes are all it needs, so small first: a 31 M-parameter
# U-Net takes about a second per forward at 64x64 on two cores and a sixteenth of that at 16x16.
# The larger ones are sizes valid-padding U-Nets of depth 2 to 4 take.
_SIZES = (16, 32, 64, 96, 128, 188, 252, 572)
# Marks the one mismatch a different measuring size may cure.
_MISFIT = "does not fit the inferred spec"


@dataclass(frozen=True)
class Origin:
    """Where a plan block comes from: how messages name it, and the state-dict keys it reads."""

    label: str
    keys: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class TorchGraphSpec:
    """What :func:`read_torch_graph` found.

    Attributes:
        spec: The inferred spec.
        head: The activation the module applies to its logits (``"none"``, ``"sigmoid"``,
            ``"softmax"``), which is also ``spec.head``.
        notes: What the spec expresses only approximately or what the reader assumed, one line
            each.
        mapping: Canonical tensor name (``enc1.conv1.weight``) → the module's state-dict key, or
            :class:`~unet_torch.graph.weights.Fixed` where the module stores none.
        bookkeeping: The module's state-dict keys that are counters, not weights
            (``num_batches_tracked``).
        unmapped: The module's state-dict keys no plan block reads (modules its forward never
            runs); a reverse port cannot fill them.
        blocks: Plan block → how messages name the module or call it comes from.
        traced: ``"torch.fx"`` or ``"torch.export"``.
        size: The input size at which sizes and paddings were measured.
    """

    spec: UNetSpec
    head: str
    notes: tuple[str, ...]
    mapping: dict[str, str | Fixed]
    bookkeeping: tuple[str, ...]
    unmapped: tuple[str, ...]
    blocks: dict[str, str]
    traced: str
    size: int


# -- calls → ops ----------------------------------------------------------------------------------
def _step(call: Call, state: set[str]) -> Step:
    if call.how == "module":
        return module_step(call, state)
    if call.how == "aten":
        return aten_step(call)
    return function_step(call)


def _origin(call: Call, root: str) -> tuple[str, str, str]:
    """``(label, where, cls)`` of a call, for messages."""
    if call.module is not None:
        cls = type(call.module).__name__
        return f"module {call.path} ({cls})", call.path, cls
    scope = call.path or root
    word = {"method": "method", "aten": "op"}.get(call.how, "function")
    name = f"aten.{call.name}" if call.how == "aten" else call.name
    return f"{word} {name} at {scope}", f"{name} at {scope}", call.name


def _build(traced: Traced, source: str, root: str, state: set[str]) -> tuple[Graph, list[Op]]:
    """The :class:`unet_graph.Graph` of a traced module."""
    problems: list[str] = []
    if traced.outputs != 1:
        problems.append(f"{traced.outputs} outputs (a U-Net has one)")
    ops: list[Op] = []
    producer: dict[fx.Node, int] = {}
    shapes: dict[int, tuple[int, ...]] = {}
    users: dict[int, int] = {}
    refs: dict[int, list[fx.Node]] = {}
    for call in traced.calls:
        if call.how == "input":
            if ops:
                problems.append("more than one input (a U-Net has one)")
                continue
            ops.append(
                Op(
                    0,
                    "input",
                    (),
                    "the input",
                    "input",
                    "input",
                    call.shape[1],
                    Origin("the input"),
                )
            )
            producer[call.node] = 0
            shapes[0] = call.shape
            continue
        step = _step(call, state)
        reads = [producer[n] for n in call.inputs if n in producer]
        if step.kind in ("pass", "first") and reads:
            producer[call.node] = reads[0]
            continue
        if step.kind == "crop" and reads and _merge_crop(ops[reads[0]], users, step):
            producer[call.node] = reads[0]  # one crop sliced axis by axis (ATen's slices)
            continue
        label, where, cls = _origin(call, root)
        channels = call.shape[1] if len(call.shape) > 1 else 0
        op = Op(len(ops), step.kind, tuple(reads), label, where, cls, channels,
                Origin(label, dict(step.keys)), step.attrs, step.problems)  # fmt: skip
        ops.append(op)
        producer[call.node] = op.index
        shapes[op.index] = call.shape
        users[op.index] = call.users
        if step.kind == "pad":
            refs[op.index] = [n for n in call.shape_sources if n in producer]
    if problems:
        raise GraphMismatchError(source, problems)
    _pad_references(ops, shapes, refs, producer, traced.how == "torch.export")
    if traced.output not in producer:
        raise GraphMismatchError(source, ["the output is not computed from the input"])
    in_channels = ops[0].channels if ops else 0
    graph = Graph(ops, producer[traced.output], source, in_channels, None, traced.size,
                  TORCH_WORDS)  # fmt: skip
    return graph, ops


def _merge_crop(prev: Op, users: dict[int, int], step: Step) -> bool:
    if prev.kind != "crop" or users.get(prev.index) != 1:
        return False
    prev.attrs["amounts"] = tuple(
        a + b for a, b in zip(prev.attrs["amounts"], step.attrs["amounts"], strict=True)
    )
    return True


def _pad_references(
    ops: list[Op],
    shapes: dict[int, tuple[int, ...]],
    refs: dict[int, list[fx.Node]],
    producer: dict[fx.Node, int],
    exported: bool,
) -> None:
    """A pad to a skip's size reads the skip: the tensor whose shape its amounts come from (fx), or
    in an exported graph, where the amounts are numbers already, the tensor it is concatenated with
    when their sizes agree."""
    consumers: dict[int, list[Op]] = {}
    for op in ops:
        for i in op.inputs:
            consumers.setdefault(i, []).append(op)
    for index, nodes in refs.items():
        op = ops[index]
        size = shapes[index][-2:]
        candidates = [producer[n] for n in nodes if shapes[producer[n]][-2:] == size]
        if exported and not candidates:
            for cat in consumers.get(index, []):
                if cat.kind == "concat" and len(cat.inputs) == 2:
                    other = cat.inputs[1 - cat.inputs.index(index)]
                    if other < index and shapes[other][-2:] == size:
                        candidates.append(other)
        if candidates:
            op.inputs = (*op.inputs[:1], candidates[0])


# -- tracing --------------------------------------------------------------------------------------
def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    line = text[0] if text else type(err).__name__
    return f"{type(err).__name__}: {line}"[:200]


def _in_channels(module: nn.Module, gm: fx.GraphModule | None) -> int:
    """The input's channels, read from the first conv the forward runs (or the first defined)."""
    if gm is not None:
        for node in gm.graph.nodes:
            if node.op == "call_module":
                m = module.get_submodule(node.target)
                if isinstance(m, nn.Conv2d):
                    return m.in_channels
            if node.op == "call_function" and getattr(node.target, "__name__", "") == "conv2d":
                weight = node.args[1] if len(node.args) > 1 else node.kwargs.get("weight")
                if isinstance(weight, fx.Node) and weight.op == "get_attr":
                    return int(functools.reduce(getattr, weight.target.split("."), module).shape[1])
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            return m.in_channels
    raise ValueError("no Conv2d in the module: its input channels cannot be told")


def _example(module: nn.Module, channels: int, size: int) -> torch.Tensor:
    """A seeded random input (the trace is checked against the forward on it; zeros would hide a
    difference), on the module's device and in its dtype."""
    p = next(module.parameters(), None)
    dtype = p.dtype if p is not None and p.is_floating_point() else torch.float32
    device = p.device if p is not None else torch.device("cpu")
    x = torch.randn(1, channels, size, size, generator=torch.Generator().manual_seed(size))
    return x.to(device, dtype)


class _Tracer:
    """Traces one module at the sizes asked for, by torch.fx or else torch.export."""

    def __init__(self, module: nn.Module, source: str) -> None:
        self.module, self.source = module, source
        self.fx_error = ""
        try:
            self.gm: fx.GraphModule | None = fx_graph(module)
        except Exception as err:  # any failure of fx means: try torch.export
            self.gm, self.fx_error = None, f"torch.fx cannot trace it ({_first_line(err)})"
        self.channels = _in_channels(module, self.gm)
        self.run_errors: dict[int, str] = {}
        self.checked = False  # whether fx's trace was checked against the forward

    def at(self, size: int) -> Traced | None:
        """The calls at ``size``, or ``None`` when the module does not run there."""
        x = _example(self.module, self.channels, size)
        if self.gm is not None:
            try:
                traced = fx_calls(self.module, self.gm, x, check=not self.checked)
                self.checked = True
                return traced
            except TraceMismatch as err:
                self.gm, self.fx_error = None, str(err)
            except Exception as err:  # the trace fails: does the module itself run here?
                try:
                    with torch.no_grad():
                        self.module(x)
                except Exception as own:  # it does not: a size it does not take
                    self.run_errors[size] = _first_line(own)
                    return None
                self.gm = None
                self.fx_error = (
                    f"its torch.fx trace fails where its forward runs ({_first_line(err)})"
                )
        try:
            return export_calls(self.module, x)
        except Exception as err:  # the module does not run, or export fails, at this size
            self.run_errors[size] = _first_line(err)
            return None

    def refusal(self, sizes: list[int]) -> ValueError:
        shown = ", ".join(f"{s}: {e}" for s, e in self.run_errors.items())
        if self.gm is None:
            return ValueError(
                f"{self.source}: {self.fx_error}, and torch.export cannot export it ({shown}); "
                "port a TorchScript, .pt2 or .onnx file of it instead, or give a size it takes"
            )
        sizes_text = (
            "x".join(map(str, sizes[:1]))
            if len(sizes) == 1
            else "any of " + ", ".join(map(str, sizes))
        )
        return ValueError(
            f"{self.source}: it does not run at {sizes_text} ({shown}); give a size it takes"
        )


def _read_at(tracer: _Tracer, traced: Traced, state: set[str]) -> tuple[GraphSpec, list[Op]]:
    root = type(tracer.module).__name__
    graph, ops = _build(traced, tracer.source, root, state)
    return read_unet_graph(graph), ops


def read_torch_graph(
    module: nn.Module, source: str | None = None, size: int | None = None
) -> TorchGraphSpec:
    """Infer the spec of a torch U-Net from its graph, and tie its tensors to canonical names.

    The module is traced with ``torch.fx`` (or, where fx cannot trace it, exported with
    ``torch.export``) and run once on zeros in evaluation mode, at ``size`` or at the first of a
    few sizes it takes; a spec that takes any size (a pad merge) is measured again at an odd size,
    where the pads show their placement. The module's modes are restored afterwards.

    Args:
        module: The torch module (its class, built with its arguments).
        source: How messages name it (default: its class).
        size: The input size to trace at (a size the module takes).

    Returns:
        The spec, the head, the notes and the tensor mapping (see :class:`TorchGraphSpec`).

    Raises:
        GraphMismatchError: The module is not a U-Net the spec can express; every mismatch is
            listed, each naming the module path or the call and the feature.
        ValueError: It cannot be traced, or does not run at the sizes tried (the message says why
            and what to pass instead).
    """
    source = source or f"torch module {type(module).__name__}"
    modes = {m: m.training for m in module.modules()}
    module.eval()
    try:
        return _read(module, source, size)
    finally:
        for m, mode in modes.items():
            m.training = mode


def _read(module: nn.Module, source: str, size: int | None) -> TorchGraphSpec:
    state_dict = module.state_dict()
    state = set(state_dict)
    tracer = _Tracer(module, source)
    sizes = [size] if size else list(_SIZES)
    misfit: GraphMismatchError | None = None
    for s in sizes:
        traced = tracer.at(s)
        if traced is None:
            continue
        try:
            found, ops = _read_at(tracer, traced, state)
        except GraphMismatchError as err:
            if size or not any(_MISFIT in m for m in err.mismatches):
                raise
            misfit = misfit or err
            continue
        spec = found.spec
        if spec.skip_merge in ("pad", "none"):
            odd = s + 2**spec.depth - 1
            retraced = tracer.at(odd)
            if retraced is not None:
                found, ops = _read_at(tracer, retraced, state)
                traced = retraced
        return _result(found, ops, traced, tracer, state_dict)
    if misfit is not None:
        raise misfit
    raise tracer.refusal(sizes)


def _result(
    found: GraphSpec,
    ops: list[Op],
    traced: Traced,
    tracer: _Tracer,
    state_dict: Mapping[str, torch.Tensor],
) -> TorchGraphSpec:
    spec = found.spec
    plan = build_plan(spec)
    mapping: dict[str, str | Fixed] = {}
    problems, fixed_norms = [], []
    for name, shape in plan.weight_shapes.items():
        block, tensor = name.rsplit(".", 1)
        origin: Origin = found.layers[block]
        key = origin.keys.get(tensor)
        if key is not None:
            mapping[name] = key
        elif plan[block].kind in ("batchnorm", "instancenorm") and tensor in ("weight", "bias"):
            mapping[name] = Fixed(1.0 if tensor == "weight" else 0.0, tuple(shape))
            fixed_norms.append(origin.label)
        else:
            problems.append(f"{origin.label}: no tensor for {name} in the state dict")
    if problems:
        raise GraphMismatchError(tracer.source, problems)
    used = {k for k in mapping.values() if isinstance(k, str)}
    # Batch norms' counters, in plan order (as tensor_mapping lists them).
    counters = tuple(dict.fromkeys(
        f"{k.rsplit('.', 1)[0]}.num_batches_tracked" for n, k in mapping.items()
        if n.endswith(".running_mean") and isinstance(k, str)
        and f"{k.rsplit('.', 1)[0]}.num_batches_tracked" in state_dict
    ))  # fmt: skip
    unmapped = tuple(k for k in state_dict if k not in used and k not in counters)
    notes = list(found.notes)
    fixed_norms = list(dict.fromkeys(fixed_norms))
    if fixed_norms:
        shown = ", ".join(fixed_norms[:2]) + (", ..." if len(fixed_norms) > 2 else "")
        notes.append(
            f"{len(fixed_norms)} norms without affine parameters ({shown}): the twin's norm "
            "weights are 1 and its biases 0"
        )
    resized = [op.label for op in ops if op.name and op.attrs.get("to_size")]
    if resized:
        notes.append(
            f"{', '.join(resized)}: interpolation to another tensor's size, which is x2 at the "
            "sizes the spec takes"
        )
    if unmapped:
        notes.append(
            f"state-dict keys the forward never reads: {', '.join(unmapped[:6])}"
            f"{' ...' if len(unmapped) > 6 else ''} (a reverse port cannot fill them)"
        )
    if traced.how == "torch.export":
        notes.append(f"read from torch.export's graph: {tracer.fx_error}")
    blocks = {name: origin.label for name, origin in found.layers.items()}
    return TorchGraphSpec(spec, found.head, tuple(notes), mapping, counters, unmapped, blocks,
                          traced.how, int(traced.size[0]))  # fmt: skip
