"""Walking the op graph (step 2 of :mod:`unet_graph`): who reads each op, the main path
from the input to the output, and each skip back to the path; mismatches are collected as the
reader goes, never only the first."""

from __future__ import annotations

from unet_graph.ops import MERGES, WORDS, Graph, GraphMismatchError, Op


class GraphWalk:
    """The state of one pass over a model's graph (its ops, who reads each, the mismatches and
    notes so far) and the walks along it; collects mismatches instead of stopping at the first."""

    def __init__(self, graph: Graph) -> None:
        self.graph = graph
        self.source = graph.source
        self.ops, self.output = graph.ops, graph.output
        self.words = {**WORDS, **graph.words}
        self.problems: list[str] = []
        self.notes: list[str] = []
        self.dropout_sites: list[tuple[str, Op, bool]] = []  # (site, op, exact)
        self.input_size = graph.input_size
        self.consumers: dict[int, list[int]] = {op.index: [] for op in self.ops}
        for op in self.ops:
            for i in dict.fromkeys(op.inputs):
                self.consumers[i].append(op.index)

    def problem(self, op: Op | None, text: str) -> None:
        self.problems.append(f"{op.label}: {text}" if op is not None else text)

    # The main path, from the input to the output.
    def main_path(self) -> list[Op]:
        """Each step takes the consumer with the longest way to the output (a skip is a short
        cut), an op over a merge when they tie."""
        reach = {self.output: 0}
        for op in reversed(self.ops):  # the ops are in topological order
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
