"""The inferred spec's plan against the graph (step 4 of :mod:`unet_graph`): block by
block, kind, channels, kernel, padding, bias and inputs, so a spec is only returned when its twin
computes what the graph does."""

from __future__ import annotations

from unet_graph.ops import NORMS
from unet_graph.walk import GraphWalk
from unet_spec import UNetSpec, build_plan


class PlanCheck(GraphWalk):
    """Compares the plan of the inferred spec with the named ops."""

    def compare_with_plan(self, spec: UNetSpec) -> None:
        """Every plan block against its op: kind, channels, kernel, padding, bias, inputs."""
        plan = build_plan(spec)
        named = {op.name: op for op in self.ops if op.name}
        dropped = {b.name: b.inputs[0] for b in plan.blocks if b.kind == "dropout"}
        layout = None
        if self.graph.layout_size is not None:
            try:
                layout = plan.layout(self.graph.layout_size)
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
            return op.name or op.where

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
            if block.kind in NORMS:
                found["epsilon"], wanted["epsilon"] = op.attrs["epsilon"], block.epsilon
            found["inputs"] = tuple(op_input(i) for i in op.inputs)
            wanted["inputs"] = tuple(plan_input(n) for n in block.inputs)
            if block.kind in ("crop", "resize", "pad") and layout is not None:
                info = layout[block.name]
                if "amounts" in op.attrs:
                    found["amounts"], wanted["amounts"] = op.attrs["amounts"], info.crop
                if "size" in op.attrs:
                    found["size"], wanted["size"] = tuple(op.attrs["size"]), info.shape[1:]
            if block.kind in ("crop", "resize"):  # the reference size is baked into the op
                found["inputs"], wanted["inputs"] = found["inputs"][:1], wanted["inputs"][:1]
            for key, value in wanted.items():
                if found.get(key) != value:
                    self.problem(
                        op, f"plan block {block.name}: {key} {found.get(key)!r}, expected {value!r}"
                    )
        for op in named.values():
            self.problem(op, f"named {op.name} but the inferred plan has no such block")
