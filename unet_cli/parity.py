"""``unet parity WEIGHTS``: run both twins on the same input and compare them block by block.

PyTorch in fp32 is the reference; the same model in float64 measures its fp32 noise on this machine,
and each Keras block must stay within ``--margin`` times that noise (see
:func:`unet_spec.check_against_noise`). Prints one row per plan block (name, shape, max |Δ|,
relative error, the noise floor, the limit, status), the first block out of tolerance and a
verdict. The file is read as ``unet port`` reads it (layouts from elsewhere with no flags, any
plain U-Net's state dict with ``--source-model``), and where its source can run (the class named
with ``--source-model``, MONAI, the model in a Keras file, onnxruntime) the twin is also judged
against the source itself, as a port is proven. Exit code 0 within tolerance, 1 outside it, 2 on
bad input (non-finite weights or input included).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from unet_cli.common import (
    add_device_argument,
    add_spec_arguments,
    at_least_one,
    non_negative_float,
    non_negative_int,
    positive_int,
    spec_from_args,
)
from unet_runtime import atomic_write_bytes
from unet_spec import NoiseTolerance

HELP = "compare the PyTorch and Keras models of a weight file, block by block"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "weights", type=Path, help="any file `unet port` reads (.ckpt, .pt, .safetensors, ...)"
    )
    add_spec_arguments(parser)
    parser.add_argument(
        "--source-model",
        metavar="MODULE:FACTORY",
        help="the source's own class or builder (as for unet port): the file is read through "
        "its graph where needed, and the twin is judged against it too",
    )
    parser.add_argument(
        "--source-args", metavar="JSON", help="keyword arguments of --source-model, a JSON object"
    )
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--image", type=Path, help="an image file as input (resized to --size)")
    source.add_argument("--random", action="store_true", help="random input in [0, 1) (default)")
    parser.add_argument(
        "--size", type=positive_int, help="input size N (default: the preset's own)"
    )
    parser.add_argument(
        "--batch-size",
        "--batch",
        type=positive_int,
        default=1,
        help="images per input batch (default 1)",
    )
    parser.add_argument("--seed", type=non_negative_int, default=0, help="seed of the random input")
    add_device_argument(parser)
    parser.add_argument("--margin", type=at_least_one, default=NoiseTolerance.margin,
                        help="limit as a multiple of the measured fp32 noise "
                             f"(default {NoiseTolerance.margin:g})")  # fmt: skip
    parser.add_argument("--floor", type=non_negative_float, default=NoiseTolerance.floor,
                        help="smallest noise assumed, relative to the output's scale "
                             f"(default {NoiseTolerance.floor:.3g}, 8 fp32 epsilons)")  # fmt: skip
    parser.add_argument("--json", type=Path, metavar="OUT", help="write the report as JSON")
    parser.add_argument("--plot", type=Path, metavar="OUT.png", help="plot per-block errors")


def _check_output(path: Path | None, option: str) -> None:
    if path is not None and not path.parent.is_dir():
        raise FileNotFoundError(f"{option} {path}: folder {path.parent} does not exist")


def run(args: argparse.Namespace) -> int:
    from unet_bridge import random_input, run_parity
    from unet_bridge.formats import suffix_of
    from unet_bridge.inputs import image_input
    from unet_bridge.port import prove_read
    from unet_bridge.sources import read_any
    from unet_spec.sizes import check_size, default_size
    from unet_torch.predict import resolve_device

    _check_output(args.json, "--json")
    _check_output(args.plot, "--plot")
    if args.plot is not None and args.plot.suffix.lower() != ".png":
        raise ValueError(f"--plot {args.plot}: the plot is a PNG file (end the name in .png)")
    suffix_of(args.weights)
    _, read = read_any(
        args.weights, spec=spec_from_args(args), source_model=args.source_model,
        source_args=args.source_args,
    )  # fmt: skip
    weights, spec, reference, note = read
    size = check_size(spec, args.size or default_size(spec))
    if args.image is not None:
        x = image_input(args.image, spec, size, args.batch_size)
        what = f"image {args.image}"
    else:
        x = random_input(spec, size, args.batch_size, args.seed)
        what = f"random input (seed {args.seed})"
    tol = NoiseTolerance(margin=args.margin, floor=args.floor)
    report = run_parity(spec, weights, x, tol, device=str(resolve_device(args.device)))

    print(
        f"{args.weights}: {what}, input {'×'.join(map(str, x.shape))} (NCHW); PyTorch fp32 is the "
        "reference, PyTorch float64 measures its noise"
    )
    for line in report.lines():
        print(line)
    document = report.to_json_dict()
    if note:
        print(f"{args.weights}: {note}")
    if reference is not None:  # the source itself, judged as a port's proof judges it
        proof = prove_read(read, seed=args.seed, tolerance=tol)
        print(f"against the source: {proof.summary}")
        document["source"] = {"passed": proof.ok, "summary": proof.summary}
        document["passed"] = report.passed and proof.ok
    if args.json is not None:
        text = json.dumps(document, indent=2) + "\n"
        atomic_write_bytes(args.json, text.encode("utf-8"))
    if args.plot is not None:
        atomic_write_bytes(args.plot, report.plot_png())
    return 0 if document["passed"] else 1
