"""``unet parity WEIGHTS``: run both twins on the same input and compare them block by block.

PyTorch in fp32 is the reference; the same model in float64 measures its fp32 noise on this machine,
and each Keras block must stay within ``--margin`` times that noise (see
:func:`unet_spec.check_against_noise`). Prints one row per plan block (name, shape, max |Δ|,
relative error, the noise floor, the limit, status), the first block out of tolerance and a
verdict. Exit code 0 within tolerance, 1 outside it, 2 on bad input (non-finite weights or input
included).
"""

from __future__ import annotations

import argparse
import io
import json
from pathlib import Path
from typing import TYPE_CHECKING

from unet_cli.common import add_spec_arguments, spec_from_args
from unet_spec import NoiseTolerance, atomic_write_bytes

if TYPE_CHECKING:
    from unet_bridge import ParityReport

HELP = "compare the PyTorch and Keras models of a weight file, block by block"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "weights", type=Path, help=".ckpt, .pt, .safetensors, .keras or .weights.h5"
    )
    add_spec_arguments(parser)
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--image", type=Path, help="an image file as input (resized to --size)")
    source.add_argument("--random", action="store_true", help="random input in [0, 1) (default)")
    parser.add_argument("--size", type=int, help="input size N (default: the preset's own)")
    parser.add_argument("--batch", type=int, default=1, help="batch size (default 1)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random input")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="cpu",
                        help="where PyTorch runs (Keras places itself); default cpu")  # fmt: skip
    parser.add_argument("--margin", type=float, default=NoiseTolerance.margin,
                        help="limit as a multiple of the measured fp32 noise "
                             f"(default {NoiseTolerance.margin:g})")  # fmt: skip
    parser.add_argument("--floor", type=float, default=NoiseTolerance.floor,
                        help="smallest noise assumed, relative to the output's scale "
                             f"(default {NoiseTolerance.floor:.3g}, 8 fp32 epsilons)")  # fmt: skip
    parser.add_argument("--json", type=Path, metavar="OUT", help="write the report as JSON")
    parser.add_argument("--plot", type=Path, metavar="OUT.png", help="plot per-block errors")


def _check_output(path: Path | None, option: str) -> None:
    if path is not None and not path.parent.is_dir():
        raise FileNotFoundError(f"{option} {path}: folder {path.parent} does not exist")


def run(args: argparse.Namespace) -> int:
    import unet_bridge as cf

    if args.batch < 1:
        raise ValueError(f"--batch must be at least 1. Received: --batch {args.batch}")
    if not args.margin >= 1:
        raise ValueError(f"--margin must be at least 1. Received: --margin {args.margin}")
    if not args.floor >= 0:
        raise ValueError(f"--floor must be non-negative. Received: --floor {args.floor}")
    _check_output(args.json, "--json")
    _check_output(args.plot, "--plot")
    if args.plot is not None and args.plot.suffix.lower() != ".png":
        raise ValueError(f"--plot {args.plot}: the plot is a PNG file (end the name in .png)")
    cf.suffix_of(args.weights)
    weights, spec, _ = cf.load_any_weights(args.weights, spec_from_args(args))
    size = cf.check_size(spec, args.size or cf.default_size(spec))
    if args.image is not None:
        x = cf.image_input(args.image, spec, size, args.batch)
        what = f"image {args.image}"
    else:
        x = cf.random_input(spec, size, args.batch, args.seed)
        what = f"random input (seed {args.seed})"
    device = args.device
    if device != "cpu":
        import torch

        if device == "cuda" and not torch.cuda.is_available():
            raise ValueError("--device cuda: no CUDA device is available")
        device = "cuda" if torch.cuda.is_available() else "cpu"
    tol = NoiseTolerance(margin=args.margin, floor=args.floor)
    report = cf.run_parity(spec, weights, x, tol, device=device)

    print(
        f"{args.weights}: {what}, input {'×'.join(map(str, x.shape))} (NCHW); PyTorch fp32 is the "
        "reference, PyTorch float64 measures its noise"
    )
    print(f"{'block':18s} {'kind':10s} {'shape':>16s} {'max|Δ|':>9s} {'rel':>9s} "
          f"{'noise':>9s} {'limit':>9s} {'×noise':>7s}  status")  # fmt: skip
    for row in report.layers:
        c = row.check
        shape = "×".join(map(str, c.shape[1:]))
        print(
            f"{row.name:18s} {row.kind:10s} {shape:>16s} {c.max_abs:9.3g} {c.rel:9.3g} "
            f"{c.noise_rel:9.3g} {c.rel_limit:9.3g} {c.noise_ratio:7.2f}  "
            f"{'ok' if c.passed else 'OUT'}"
        )
    print(f"logits: {report.logits}")
    print(f"output ({spec.head}): {report.output}")
    print(f"first block out of tolerance: {report.first_failure or 'none'}")
    v = report.versions
    print(
        f"machine: {v.get('cpu')}, torch {v.get('cpu_capability')}, oneDNN ISA "
        f"{v.get('onednn_max_cpu_isa')}, {v.get('torch_threads')} threads; torch {v.get('torch')}, "
        f"keras {v.get('keras')} on {v.get('keras_backend')} {v.get('tensorflow', '')}; TF32 off; "
        f"time torch {report.seconds['torch']:.1f}s, float64 {report.seconds['float64']:.1f}s, "
        f"keras {report.seconds['keras']:.1f}s"
    )
    limits = f"each block within {tol.margin:g}× the fp32 noise (floor {tol.floor:.3g})"
    print(f"verdict: {'PASS' if report.passed else 'FAIL'} ({limits})")

    if args.json is not None:
        text = json.dumps(report.to_json_dict(), indent=2) + "\n"
        atomic_write_bytes(args.json, text.encode("utf-8"))
    if args.plot is not None:
        atomic_write_bytes(args.plot, plot_png(report))
    return 0 if report.passed else 1


def plot_png(report: ParityReport) -> bytes:
    """Per-block max |Δ| and relative error on a log scale, as PNG bytes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = report.layers
    tol = report.tolerance
    floor = 1e-12  # exact zeros have no place on a log axis
    xs = range(len(rows))
    fig, ax = plt.subplots(figsize=(max(8, 0.18 * len(rows)), 4.5), dpi=100)
    ax.semilogy(xs, [max(r.max_abs, floor) for r in rows], ".-", label="max |Δ|")
    ax.semilogy(xs, [max(r.rel, floor) for r in rows], ".-", label="relative error")
    ax.semilogy(xs, [max(r.check.noise_rel, floor) for r in rows], ":", color="C2",
                label="fp32 noise (PyTorch vs float64)")  # fmt: skip
    ax.semilogy(xs, [r.check.rel_limit for r in rows], "--", color="C1", lw=0.8,
                label=f"limit ({tol.margin:g}× noise)")  # fmt: skip
    failed = [i for i, r in enumerate(rows) if not r.passed]
    if failed:
        ax.axvline(failed[0], color="red", lw=0.8, label=f"first out: {rows[failed[0]].name}")
    ax.set_xticks(list(xs))
    ax.set_xticklabels([r.name for r in rows], rotation=90, fontsize=6)
    ax.set_ylabel("Keras vs PyTorch")
    ax.set_title(f"per-block parity — {'PASS' if report.passed else 'FAIL'}")
    ax.legend(fontsize=7)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    return buffer.getvalue()
