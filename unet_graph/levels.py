"""The main path cut into levels (step 3 of :mod:`unet_graph`): each level's convs with
their activations, norms and dropouts, the up steps, the skip merges and the head, each op named
after the plan block it is."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from unet_graph.ops import ACTS, NORMS, Op
from unet_graph.walk import GraphWalk


@dataclass
class Unit:
    """A conv and what follows it before the next conv."""

    conv: Op
    act: Op | None = None
    norm: Op | None = None
    act_first: bool = True
    dropouts: list[Op] = field(default_factory=list)
    extra: list[Op] = field(default_factory=list)


@dataclass
class Level:
    prefix: str
    pre: list[Op]  # before the first conv (dropouts)
    units: list[Unit]


class LevelReader(GraphWalk):
    """Cuts the main path into levels and names each op after its plan block."""

    # Levels.
    def units(self, ops: Iterable[Op], prefix: str) -> Level:
        pre: list[Op] = []
        units: list[Unit] = []
        for op in ops:
            if op.kind == "conv":
                units.append(Unit(op))
                continue
            unit = units[-1] if units else None
            if op.kind == "dropout":
                (unit.dropouts if unit else pre).append(op)
            elif unit is not None and op.kind in ACTS and unit.act is None:
                unit.act = op
                unit.act_first = unit.norm is None
            elif unit is not None and op.kind in NORMS and unit.norm is None:
                unit.norm = op
            elif unit is not None:
                unit.extra.append(op)
            else:
                pre.append(op)
        return Level(prefix, pre, units)

    def name_units(self, level: Level, units: Sequence[Unit], prefix: str, first: int = 1) -> None:
        for i, unit in enumerate(units, start=first):
            unit.conv.name = f"{prefix}.conv{i}"
            if unit.act is not None:
                unit.act.name = _act_name(f"{prefix}.relu{i}", unit.act)
            if unit.norm is not None:
                short = "bn" if unit.norm.kind == "batchnorm" else "norm"
                unit.norm.name = f"{prefix}.{short}{i}"
            for op in unit.extra:
                self.problem(op, f"{_what(op)} after {unit.conv.where}; the spec has none there")

    def block_dropouts(self, level: Level, site: str, before_site: str | None) -> None:
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

    def up_step(self, ops: Sequence[Op], k: int) -> dict[str, Any]:
        info: dict[str, Any] = {"op": ops[0], "kind": ops[0].kind, "conv": None, "act": None,
                                "norm": None, "act_first": True, "pad": None}  # fmt: skip
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
            elif op.kind in ACTS and info["act"] is None and info["conv"] is not None:
                op.name = _act_name(f"dec{k}.uprelu", op)
                info["act"] = op
            elif op.kind in NORMS and info["norm"] is None and info["conv"] is not None:
                op.name = f"dec{k}.up{'bn' if op.kind == 'batchnorm' else 'norm'}"
                info["norm"] = op
                info["act_first"] = info["act"] is not None
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

    def split_head(self, level: Level) -> tuple[Op | None, str, Level]:
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
                if op.kind == "softmax" and not op.attrs.get("over_channels", True):
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
        return head, act, Level(level.prefix, level.pre, level.units[:-1])


def _act_name(relu_name: str, op: Op) -> str:
    return relu_name.replace("relu", "act") if op.kind == "leakyrelu" else relu_name


def _what(op: Op) -> str:
    if op.kind == "activation":
        return f"activation {op.attrs['function']!r}"
    return {"batchnorm": "batch norm", "instancenorm": "instance norm", "relu": "a ReLU",
            "leakyrelu": "a leaky ReLU", "sigmoid": "a sigmoid", "softmax": "a softmax",
            "maxpool": "a pooling", "upconv": "a transposed conv", "upsample": "an upsampling",
            "concat": "a concat", "unknown": op.what}.get(
        op.kind, op.kind)  # fmt: skip
