"""Reading a U-Net spec from a graph of ops: the steps of :mod:`unet_graph` run in order, and what
they found."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from unet_graph.infer import SpecInference
from unet_graph.levels import Level, LevelReader, Unit
from unet_graph.ops import UPS, Graph, GraphMismatchError, Op
from unet_graph.plan_check import PlanCheck
from unet_spec import UNetSpec


@dataclass(frozen=True)
class GraphSpec:
    """What :func:`read_unet_graph` found.

    Attributes:
        spec: The inferred spec.
        layers: Plan block name → the front-end's handle of the op that is the block (its
            :attr:`~unet_graph.Op.source`: a Keras layer, a torch module); for weighted blocks, what
            holds the weights.
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


class _Reader(LevelReader, SpecInference, PlanCheck):
    """One pass over a model's graph, step by step; every mismatch is collected."""

    def read(self) -> GraphSpec:
        self.ops[0].name = "input"
        path = self.main_path()
        path_ids = {op.index for op in path}
        on_path = set(path_ids)
        ups = [i for i, op in enumerate(path) if op.kind in UPS]
        if not ups:
            raise GraphMismatchError(
                self.source,
                [
                    f"no up step ({self.words['upconv']} or {self.words['upsample']}) on the path: "
                    "not a U-Net"
                ],  # fmt: skip
            )
        pools = [i for i, op in enumerate(path[: ups[0]]) if op.kind == "maxpool"]
        for op in path[ups[0] :]:
            if op.kind == "maxpool":
                self.problem(op, "a pooling in the decoder; the spec pools only on the way down")
        depth = len(pools)
        if depth == 0:
            raise GraphMismatchError(
                self.source, [f"no {self.words['maxpool']} before the first up step"]
            )
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
        enc: list[Level] = []
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
        dec: dict[int, Level] = {}
        up_info: dict[int, dict[str, Any]] = {}
        tail: list[Unit] = []
        head_op: Op | None = None
        head_act = "none"
        for j, start in enumerate(ups):
            k = depth - j
            stop = ups[j + 1] if j + 1 < len(ups) else len(path)
            seg = path[start:stop]
            cut = next((i for i, op in enumerate(seg) if op.kind == "concat"), None)
            if cut is None:
                self.problem(seg[0], f"no {self.words['concat']} after the up step of dec{k}")
                raise GraphMismatchError(self.source, self.problems)
            up_info[k] = self.up_step(seg[:cut], k)
            up_info[k].update(self.merge(seg[cut], seg[cut - 1], k, path_ids, on_path))
            level = self.units(seg[cut + 1 :], f"dec{k}")
            if k == 1:
                head_op, head_act, level = self.split_head(level)
                tail = level.units[2:]
                level = Level(level.prefix, level.pre, level.units[:2])
            self.name_units(level, level.units, level.prefix)
            self.block_dropouts(level, f"dec{k}", None)
            dec[k] = level
        self.name_units(Level("tail", [], tail), tail, "tail")
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
                self.problem(op, f"{op.what}: no U-Net block computes it")
            for text in op.problems:
                self.problem(op, text)

        spec = self.assemble(enc, mid, dec, up_info, tail, head_op, head_act)
        if spec is None or self.problems:
            raise GraphMismatchError(self.source, self.problems)
        self.compare_with_plan(spec)
        if self.problems:
            raise GraphMismatchError(self.source, self.problems)
        layers = {op.name: op.source for op in self.ops if op.name}
        return GraphSpec(spec, layers, self.input_size, head_act, tuple(self.notes))


def read_unet_graph(graph: Graph) -> GraphSpec:
    """Infer the spec of the U-Net a front-end's ``graph`` of ops describes.

    Returns:
        The spec, each plan block's op source, the fixed input size, the head activation and what
        is only approximate.

    Raises:
        GraphMismatchError: The graph is not a U-Net the spec can express; every mismatch is
            listed, each naming the op's origin and the feature.
    """
    return _Reader(graph).read()
