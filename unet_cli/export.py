"""``unet export WEIGHTS DST``: a deployment artefact, run in its own runtime and proven first.

The format comes from DST's suffix: ``.onnx`` (``torch.onnx.export``, dynamo exporter; runs in
onnxruntime), ``.savedmodel`` (a TensorFlow SavedModel folder, Keras ``model.export``),
``.tflite`` (LiteRT, Keras ``model.export(format="litert")``) and ``.pt2`` (``torch.export``).
The batch dimension is always dynamic; H and W are dynamic where the spec takes any multiple of
``2**depth``, else fixed at ``--size`` (default: the preset's size).

The artefact is written to a temporary path beside DST, run in its runtime on a random batch (and
``--image``), and judged against the canonical PyTorch model and its float64 run like ``unet
port``; only then is it renamed to DST, with a model card ``DST.README.md`` (``README.md`` inside
a SavedModel folder). Exit 1 when it is out of tolerance (nothing written), 2 for bad input.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from unet_cli.common import (
    add_spec_arguments,
    non_negative_int,
    positive_int,
    spec_from_args,
)

HELP = "export to .onnx, .savedmodel, .tflite or .pt2 (run in its runtime and verified)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from unet_bridge import EXPORTS, PRECISIONS

    parser.add_argument("weights", type=Path, help="weights in any format `unet port` reads")
    parser.add_argument(
        "dst", type=Path, help=f"the artefact: {', '.join(EXPORTS)} (.savedmodel is a folder)"
    )
    add_spec_arguments(parser)
    parser.add_argument(
        "--size", type=positive_int, help="input size (fixes H and W unless --dynamic)"
    )
    parser.add_argument(
        "--dynamic", action="store_true",
        help="H and W dynamic (the default where the spec takes any multiple of 2**depth and "
        "--size is not given)",
    )  # fmt: skip
    parser.add_argument("--opset", type=positive_int, help="ONNX opset (default: the exporter's)")
    parser.add_argument(
        "--precision", choices=PRECISIONS, default="fp32",
        help="fp16 / dynamic-int8: .onnx and .tflite only, verified against a looser tolerance "
        "derived from the format's precision",
    )  # fmt: skip
    parser.add_argument("--image", type=Path, help="also check the artefact on this image")
    parser.add_argument(
        "--seed", type=non_negative_int, default=0, help="seed of the check's random input"
    )
    parser.add_argument("--no-card", action="store_true", help="write no model card")
    parser.add_argument("--json", type=Path, help="also write the verification report here")


def run(args: argparse.Namespace) -> int:
    from unet_bridge import RejectedError, export_model, find_metrics
    from unet_bridge.export import export_of
    from unet_bridge.sources import read_any
    from unet_runtime import atomic_write_bytes

    export = export_of(args.dst)  # the suffix first: no framework loads for a typo
    if not args.weights.is_file():
        raise FileNotFoundError(f"{args.weights}: no such file")
    if args.image is not None and not args.image.is_file():
        raise FileNotFoundError(f"{args.image}: no such image")
    weights, spec, _, _ = read_any(args.weights, spec=spec_from_args(args))[1]
    try:
        result = export_model(
            weights, spec, args.dst, size=args.size, dynamic=args.dynamic or None,
            opset=args.opset, precision=args.precision, image=args.image, seed=args.seed,
            card=not args.no_card, metrics=find_metrics(args.weights), source=str(args.weights),
        )  # fmt: skip
    except RejectedError as rejected:
        result = rejected.result
        print(f"unet export: verification failed, nothing written to {args.dst}:")
        for line in result.lines():
            print(f"  {line}")
        _write_json(args.json, result, atomic_write_bytes)
        return 1
    print(
        f"{args.weights} -> {args.dst} ({export.fmt.description}, {args.precision}, "
        f"{result.bytes / 1e6:.2f} MB, exported in {result.seconds['export']:.1f} s)"
    )
    print(f"sizes: {result.size_rule}")
    print(f"verified (limit {result.tolerance.margin:g}x the fp32 noise):")
    for line in result.lines():
        print(f"  {line}")
    if result.card is not None:
        print(f"model card: {result.card}")
    _write_json(args.json, result, atomic_write_bytes)
    return 0


def _write_json(path: Path | None, result, write) -> None:
    if path is not None:
        write(path, json.dumps(result.to_dict(), indent=1).encode())
