"""A torch module as a list of calls with concrete arguments: traced by ``torch.fx`` (and run once
to learn every tensor's shape and every size arithmetic's value) or exported by ``torch.export``
(whose ATen graph carries both already).

Each :class:`Call` is one node that produces a tensor: what it calls (a module, a function, a tensor
method or an ATen op), where in the module tree it happens, its arguments with tensors replaced by
:class:`T` (the node and its shape) and with the size arithmetic done, and the state-dict keys of
the parameters and buffers it reads. Nodes that compute sizes only (``x.size()``, ``x.shape[2] -
y.shape[2]``) are no calls: they are what the arguments are computed from.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.fx as fx
from torch import nn


@dataclass(frozen=True)
class T:
    """A tensor argument: the node that produced it, its shape, and its state-dict key when it is
    a parameter or buffer of the module."""

    node: fx.Node
    shape: tuple[int, ...]
    key: str | None = None


@dataclass
class Call:
    """One node that produces a tensor (or a tuple of them).

    Attributes:
        node: The graph node.
        how: ``"input"``, ``"module"`` (a leaf module's forward), ``"function"``, ``"method"`` (a
            tensor method) or ``"aten"`` (an op of an exported graph).
        name: The module's class name, the function's, method's or ATen op's name.
        module: The leaf module (``"module"`` calls).
        path: The module's path; for other calls, the path of the module whose forward makes the
            call (``""`` for the top module).
        args: Positional arguments, tensors as :class:`T`, sizes as numbers.
        kwargs: Keyword arguments, likewise.
        shape: The output's shape (of its first tensor, for a tuple of them).
        inputs: The tensor inputs that are activations (not parameters), in argument order.
        shape_sources: Tensors whose shapes the arguments were computed from (a pad to another
            tensor's size).
        users: How many nodes read the output.
    """

    node: fx.Node
    how: str
    name: str
    module: nn.Module | None
    path: str
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    shape: tuple[int, ...]
    inputs: list[fx.Node] = field(default_factory=list)
    shape_sources: list[fx.Node] = field(default_factory=list)
    users: int = 0

    def arg(self, index: int, name: str, default: Any = None) -> Any:
        """The argument at ``index`` or named ``name``."""
        if len(self.args) > index:
            return self.args[index]
        return self.kwargs.get(name, default)


@dataclass
class Traced:
    """A module's calls, in graph order, and which node is the output."""

    calls: list[Call]
    output: fx.Node | None
    outputs: int
    how: str  # "torch.fx" | "torch.export"
    size: tuple[int, int]


def _leaves(value: Any) -> Iterator[Any]:
    if isinstance(value, (list, tuple)):
        for item in value:
            yield from _leaves(item)
    elif isinstance(value, dict):
        for item in value.values():
            yield from _leaves(item)
    elif isinstance(value, slice):
        yield from _leaves((value.start, value.stop, value.step))
    else:
        yield value


def _concrete(value: Any, lookup: Callable[[fx.Node], Any]) -> Any:
    return fx.node.map_aggregate(value, lambda v: lookup(v) if isinstance(v, fx.Node) else v)


def _tensor_inputs(args: Any, kwargs: Any) -> list[fx.Node]:
    return [t.node for t in _leaves((args, kwargs)) if isinstance(t, T) and t.key is None]


def _function_name(target: Any) -> str:
    return getattr(target, "__name__", str(target))


# -- torch.fx -----------------------------------------------------------------------------------
def _autowrapped() -> tuple[Callable[..., Any], ...]:
    """Functions fx records as calls instead of tracing into (their size checks need numbers):
    torchvision's ``center_crop``, when torchvision is loaded (a module that calls it has imported
    it; importing it here would cost seconds for every other module)."""
    found = []
    for name in ("torchvision.transforms.functional", "torchvision.transforms.v2.functional"):
        functions = sys.modules.get(name)
        if functions is not None and hasattr(functions, "center_crop"):
            found.append(functions.center_crop)
    return tuple(found)


def fx_graph(module: nn.Module) -> fx.GraphModule:
    """``torch.fx``'s symbolic trace of ``module`` (each node's ``nn_module_stack`` names the modules
    whose forward runs it)."""
    tracer = fx.Tracer(autowrap_functions=_autowrapped())
    graph = tracer.trace(module)
    return fx.GraphModule(tracer.root, graph)


def _scope(node: fx.Node) -> str:
    """The path of the innermost module whose forward makes the call (``""``: the top one)."""
    stack = list(node.meta.get("nn_module_stack", {}).values())
    return str(stack[-1][0]) if stack else ""


class _Recorder(fx.Interpreter):
    """Runs a traced module once, keeping each node's value: tensors as their shape only.

    fx's ``ShapeProp`` keeps the shapes of tensors only; a pad's amounts and a crop's slices are
    computed from sizes (``skip.size(2) - x.size(2)``), so the values of those nodes are kept too.
    """

    def __init__(self, gm: fx.GraphModule) -> None:
        super().__init__(gm)
        self.values: dict[fx.Node, Any] = {}

    def run_node(self, n: fx.Node) -> Any:
        out = super().run_node(n)
        key = n.target if n.op == "get_attr" else None
        self.values[n] = fx.node.map_aggregate(
            out, lambda v: T(n, tuple(v.shape), key) if isinstance(v, torch.Tensor) else v
        )
        return out


def _sources(value: Any, values: dict[fx.Node, Any], seen: set[fx.Node]) -> Iterator[fx.Node]:
    """The tensors whose shapes a non-tensor argument was computed from."""
    for item in _leaves(value):
        if not isinstance(item, fx.Node) or item in seen:
            continue
        seen.add(item)
        if isinstance(values.get(item), T):
            yield item
        else:
            yield from _sources((item.args, item.kwargs), values, seen)


def fx_calls(module: nn.Module, gm: fx.GraphModule, x: torch.Tensor, check: bool = True) -> Traced:
    """The calls of ``gm`` (``module`` traced by :func:`fx_graph`), run on ``x``.

    Args:
        check: Run ``module`` on ``x`` too, and raise :class:`TraceMismatch` unless the trace
            computes the same (once per trace is enough: fx cannot branch on sizes, so a trace
            that matches at one size matches at all).
    """
    recorder = _Recorder(gm)
    with torch.no_grad():
        traced_out = recorder.run(x)
        # The trace calls the same kernels on the same tensors in the same order as the forward,
        # so the two agree to the bit unless fx recorded another path (a branch on a Proxy that
        # it took one way, a `torch.jit.isinstance` it saw as false).
        if check and not _same(traced_out, module(x)):
            raise TraceMismatch("its torch.fx trace computes something else than its forward")
    values = recorder.values
    calls: list[Call] = []
    output, outputs = None, 0
    for node in gm.graph.nodes:
        value = values.get(node)
        if node.op == "output":
            outs = [v for v in _leaves(node.args) if isinstance(v, fx.Node)]
            outputs = len(outs)
            output = outs[0] if outs else None
            continue
        if node.op == "get_attr" or not _holds_tensor(value):
            continue
        args = _concrete(node.args, values.get)
        kwargs = _concrete(node.kwargs, values.get)
        shape = _first_shape(value)
        if node.op == "placeholder":
            how, name, mod, path = "input", "input", None, ""
        elif node.op == "call_module":
            mod = module.get_submodule(node.target)
            how, name, path = "module", type(mod).__name__, str(node.target)
        else:
            mod, path = None, _scope(node)
            how = "method" if node.op == "call_method" else "function"
            name = node.target if how == "method" else _function_name(node.target)
        call = Call(node, how, name, mod, path, args, kwargs, shape, users=len(node.users))
        call.inputs = _tensor_inputs(args, kwargs)
        tensors = {t.node for t in _leaves((args, kwargs)) if isinstance(t, T)}
        call.shape_sources = [
            n for n in _sources((node.args, node.kwargs), values, set()) if n not in tensors
        ]
        calls.append(call)
    size = tuple(x.shape[-2:])
    return Traced(calls, output, outputs, "torch.fx", size)  # type: ignore[arg-type]


class TraceMismatch(RuntimeError):
    """fx's trace of a module runs, but does not compute what the module's forward does."""


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor):
        return a.shape == b.shape and bool(torch.equal(a, b))
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same(u, v) for u, v in zip(a, b, strict=True))
    return type(a) is type(b)


def _first_shape(value: Any) -> tuple[int, ...]:
    """The shape of the tensor, or of the first one of a tuple (max pooling with its indices)."""
    return next(v.shape for v in _leaves(value) if isinstance(v, T))


def _holds_tensor(value: Any) -> bool:
    return any(isinstance(v, T) for v in _leaves(value))


# -- torch.export -------------------------------------------------------------------------------
def export_calls(module: nn.Module, x: torch.Tensor) -> Traced:
    """The calls of ``module``'s ATen graph, exported for ``x``'s size (shapes from the export)."""
    program = torch.export.export(module, (x,))
    signature = program.graph_signature
    keys = {**signature.inputs_to_parameters, **signature.inputs_to_buffers}
    values: dict[fx.Node, Any] = {}
    calls: list[Call] = []
    output, outputs = None, 0
    for node in program.graph.nodes:
        val = node.meta.get("val")
        if node.op == "output":
            outs = [v for v in _leaves(node.args) if isinstance(v, fx.Node)]
            outputs = len(outs)
            output = outs[0] if outs else None
            continue
        values[node] = _shapes_of(val, node, keys.get(node.name))
        if node.op == "placeholder" and node.name in keys:
            continue
        if node.op == "placeholder" and node.name not in signature.user_inputs:
            continue  # lifted constants
        if not _holds_tensor(values[node]):
            continue
        args = _concrete(node.args, values.get)
        kwargs = _concrete(node.kwargs, values.get)
        value = values[node]
        shape = _first_shape(value)
        stack = list(node.meta.get("nn_module_stack", {}).values())
        path = _scope(node)
        leaf = _leaf_class(stack[-1][1]) if stack else None
        if node.op == "placeholder":
            how, name = "input", "input"
        else:
            target = str(node.target)
            aten = target.startswith("aten.")
            how = "aten" if aten else "function"
            name = target.split(".")[1] if aten else _function_name(node.target)
        call = Call(node, how, name, None, path, args, kwargs, shape, users=len(node.users))
        call.module = module.get_submodule(path) if leaf and path else None
        call.inputs = _tensor_inputs(args, kwargs)
        calls.append(call)
    size = tuple(x.shape[-2:])
    return Traced(calls, output, outputs, "torch.export", size)  # type: ignore[arg-type]


def _shapes_of(value: Any, node: fx.Node, key: str | None) -> Any:
    """An exported node's value (fake tensors) with each tensor as a :class:`T`."""
    return fx.node.map_aggregate(
        value,
        lambda v: (
            T(node, tuple(int(s) for s in v.shape), key) if isinstance(v, torch.Tensor) else v
        ),
    )


def _leaf_class(qualified: Any) -> str | None:
    """The class name of a torch.nn built-in module (whose forward is one op), else ``None``."""
    text = qualified if isinstance(qualified, str) else getattr(qualified, "__module__", "")
    if isinstance(qualified, type):
        text = f"{qualified.__module__}.{qualified.__name__}"
    return text.rsplit(".", 1)[-1] if text.startswith("torch.nn.modules.") else None
