"""Walking the op graph (step 2 of :mod:`unet_keras.graph`): who reads each op, the main path
from the input to the output, and each skip back to the path; mismatches are collected as the
reader goes, never only the first."""

from __future__ import annotations

from typing import Any

from unet_keras.graph.ops import MERGES, GraphMismatchError, Op, as_list, graph_ops


class GraphWalk:
    """The state of one pass over a model's graph (its ops, who reads each, the mismatches and
    notes so far) and the walks along it; collects mismatches instead of stopping at the first."""

    def __init__(self, model: Any, source: str) -> None:
        self.source = source
        self.ops, self.output = graph_ops(model, source)
        self.problems: list[str] = []
        self.notes: list[str] = []
        self.dropout_sites: list[tuple[str, Op, bool]] = []  # (site, op, exact)
        shape = as_list(model.inputs)[0].shape
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
            best = max(nxt, key=lambda i: (reach[i], self.ops[i].kind not in MERGES))
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
