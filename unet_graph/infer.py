"""The spec's fields from the parsed levels (step 3 of :mod:`unet_graph`): the value most
layers agree on for each feature, every other layer named as a mismatch, and the notes on what the
spec expresses only approximately."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

from unet_graph.levels import Unit
from unet_graph.ops import Op
from unet_graph.walk import GraphWalk
from unet_spec import UNetSpec


class SpecInference(GraphWalk):
    """Gathers the spec's fields from the levels, naming every layer that disagrees."""

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
        # The up steps' norms (up_norm) are the spec's norm too: one kind, order, epsilon, momentum.
        up_normed = [Unit(i["conv"], i["act"], i["norm"], i["act_first"])
                     for _, i in sorted(up_info.items()) if i["norm"] is not None]  # fmt: skip
        norm = self.agree("norm", [(u.norm or u.conv, u.norm.kind if u.norm else "none")
                                   for u in [*block_units, *up_normed]])  # fmt: skip
        normed = [u for u in block_units if u.norm is not None] + up_normed
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
        up_norm = self.agree("up-step norm", [(i["op"], i["norm"] is not None) for i in infos])
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
                self.problem(tap, f"the skip of dec{k} leaves enc{k} at {tap.where}; the "
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
        inside = [f"{op.where} ({site})" for site, op, exact in self.dropout_sites if not exact]
        if inside:
            self.notes.append(f"dropout inside a level moves after its convs: {', '.join(inside)}")
        if any(op.attrs["spatial"] for _, op, _ in self.dropout_sites):
            self.notes.append(
                f"{self.words['spatial_dropout']} (whole channels) becomes {self.words['dropout']} "
                "(single values)"
            )
        if self.problems:
            return None
        up_conv_kernel = 1 if up_kind == "upconv" else up_kernel
        fields: dict[str, Any] = {
            "in_channels": self.graph.in_channels,
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
            "up_norm": bool(up_norm),
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
            fields["bn_momentum"] = momentum
        if up_kind == "upconv" or up_conv_kernel:
            decoder = dec_widths
            fields["up_widths"] = () if up_widths == decoder else up_widths
        try:
            return UNetSpec(**fields)
        except ValueError as err:
            self.problem(None, f"the graph's features do not combine into a spec ({err})")
            return None


def _last_op(unit: Unit) -> Op:
    ops = [unit.conv, unit.act, unit.norm]
    return max((op for op in ops if op is not None), key=lambda op: op.index)


def _pad_align(op: Op) -> str:
    if "align" in op.attrs:
        return op.attrs["align"]
    t, b, lf, r = op.attrs["amounts"]
    return "end" if (t == 0 and b > 1) or (lf == 0 and r > 1) else "center"


def _show_act(value: tuple[str, float]) -> str:
    kind, slope = value
    return f"LeakyReLU({slope})" if kind == "leakyrelu" else "ReLU"


def _show_mode(value: tuple[str, bool]) -> str:
    mode, aligned = value
    return f"{mode} (aligned corners)" if aligned else mode
