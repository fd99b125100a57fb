"""``unet summary``: the plan of a spec as a table of blocks, shapes, parameters and FLOPs."""

from __future__ import annotations

import argparse
import json

from unet_cli.common import add_spec_arguments, positive_int, spec_from_args
from unet_spec import PRESETS
from unet_spec.sizes import default_size

HELP = "print every block of a U-Net with its output shape, parameters and FLOPs"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_spec_arguments(parser)
    parser.add_argument(
        "--size", type=positive_int, help="input size N (N×N); default: the preset's own"
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument("--list", action="store_true", help="list the presets and exit")


def _fmt_flops(macs: int) -> str:
    return f"{macs / 1e9:.1f} G multiply-accumulates (≈ {2 * macs / 1e9:.1f} GFLOP)"


def run(args: argparse.Namespace) -> int:
    if args.list:
        for name, spec in PRESETS.items():
            print(f"{name:24s} {spec.to_json()}")
        return 0
    spec = spec_from_args(args)
    if spec is None:
        raise ValueError("give --preset NAME or --spec FILE (see --list)")
    size = default_size(spec) if args.size is None else args.size
    plan = spec.plan()
    layout = plan.check_size(size)
    c, h, w = layout.output_shape
    totals = {
        "input": [spec.in_channels, size, size],
        "output": [c, h, w],
        "params": layout.params,
        "macs": layout.macs,
        "flops": 2 * layout.macs,
        "halo": layout.halo[0],
        "receptive_field": plan.receptive_field,
    }
    if args.json:
        rows = [
            {"name": i.block.name, "kind": i.block.kind, "shape": list(i.shape), "params": i.params,
             "macs": i.macs}
            for i in layout
        ]  # fmt: skip
        print(
            json.dumps({"spec": spec.to_dict(), "size": size, "layers": rows, **totals}, indent=2)
        )
        return 0
    print(f"{'block':18s} {'kind':10s} {'output (C×H×W)':>18s} {'params':>12s} {'MACs':>16s}")
    for info in layout:
        shape = "×".join(map(str, info.shape))
        print(
            f"{info.block.name:18s} {info.block.kind:10s} {shape:>18s} {info.params:>12,d} "
            f"{info.macs:>16,d}"
        )
    print(f"input: {size}×{size}×{spec.in_channels}   output: {h}×{w}×{c}   halo: {layout.halo[0]}")
    print(f"total params: {layout.params:,d}")
    print(f"total FLOPs: {_fmt_flops(layout.macs)}")
    return 0
