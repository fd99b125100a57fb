"""Deployment exports of every small preset: export time, file size, distance from PyTorch,
argmax agreement and latency against PyTorch eager, for each format and precision.

    python benchmarks/export_report.py [--json benchmarks/results-export.json]
                                       [--md benchmarks/results-export.md] [--demo RUN_FOLDER]

Each artefact is written by ``unet_bridge.export_model`` (run in its runtime and verified against
the PyTorch model before it lands) on random weights, at a small valid size with batch 1 for the
latency. ``--demo`` adds a trained model (a training run's ``model.safetensors``), with the mIoU of
every artefact on the synthetic validation set of the demo run against PyTorch's. Prints a
Markdown table headed by the machine line.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np

from unet_bridge import export, export_model, load_any_weights, random_input
from unet_infer import labels_from_probs
from unet_runtime import keep_freed_memory, machine_line
from unet_spec import PRESETS, UNetSpec, random_weights

FORMATS = [
    (".onnx", "fp32"), (".onnx", "fp16"), (".onnx", "dynamic-int8"),
    (".pt2", "fp32"), (".savedmodel", "fp32"),
    (".tflite", "fp32"), (".tflite", "fp16"), (".tflite", "dynamic-int8"),
]  # fmt: skip
SMALL = sorted(n for n in PRESETS if PRESETS[n].base_filters <= 16)


def latency(run, x: np.ndarray, repeats: int) -> float:
    """Median seconds of ``run(x)`` after one warm-up call."""
    run(x)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run(x)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def miou(labels: np.ndarray, masks: np.ndarray, classes: int) -> float:
    ious = []
    for k in range(classes):
        union = np.logical_or(labels == k, masks == k).sum()
        if union:
            ious.append(np.logical_and(labels == k, masks == k).sum() / union)
    return float(np.mean(ious))


def eager(model):
    """PyTorch eager on NCHW numpy."""
    import torch

    def run(x: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return model(torch.from_numpy(x)).numpy()

    return run


def measure(name, spec: UNetSpec, weights, size: int, suffix: str, precision: str, folder: Path,
            repeats: int, torch_s: float, val=None) -> dict:  # fmt: skip
    path = folder / f"{name.split(' ')[0]}-{precision}{suffix}"
    result = export_model(weights, spec, path, size=size, precision=precision, card=False)
    check = result.checks[0]
    x = random_input(spec, size, 1, seed=5)
    run = export.load_artefact(path)
    torch_run = eager(export.load_canonical_torch(spec, weights))
    row = {
        "model": name, "size": size, "format": suffix, "precision": precision,
        "export_s": result.seconds["export"], "bytes": result.bytes,
        "max_abs": check.logits.max_abs, "rel": check.logits.rel,
        "rel_limit": check.logits.rel_limit, "argmax_agreement": check.argmax_agreement,
        "passed": result.ok, "latency_s": latency(run, x, repeats),
        "torch_latency_s": torch_s,
    }  # fmt: skip
    if val is not None:
        images, masks = val
        # Both return logits: the one label rule before the head.
        row["miou"] = miou(labels_from_probs(run(images), "none"), masks, spec.num_classes)
        row["torch_miou"] = miou(
            labels_from_probs(torch_run(images), "none"), masks, spec.num_classes
        )
    print(f"{name} {suffix} {precision}: rel {row['rel']:.3g} "
          f"argmax {100 * row['argmax_agreement']:.3f}%", file=sys.stderr, flush=True)  # fmt: skip
    return row


def table(rows: list[dict], machine: str) -> str:
    lines = [
        f"Machine: {machine}", "",
        "| model | size | format | precision | export s | size KB | max abs Δ | rel | rel limit "
        "| argmax agree | latency ms | torch ms | mIoU (torch) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]  # fmt: skip
    for r in rows:
        iou = f"{r['miou']:.4f} ({r['torch_miou']:.4f})" if "miou" in r else ""
        lines.append(
            f"| {r['model']} | {r['size']} | {r['format']} | {r['precision']} | "
            f"{r['export_s']:.1f} | {r['bytes'] / 1024:.0f} | {r['max_abs']:.2g} | {r['rel']:.2g} | "
            f"{r['rel_limit']:.2g} | {100 * r['argmax_agreement']:.3f}% | "
            f"{1000 * r['latency_s']:.2f} | {1000 * r['torch_latency_s']:.2f} | {iou} |"
        )
    return "\n".join(lines) + "\n"


def main() -> int:
    keep_freed_memory()  # the process setting every entry point makes (docs/architecture.md)
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", type=Path, help="write the rows as JSON")
    parser.add_argument("--md", type=Path, help="write the Markdown table")
    parser.add_argument("--demo", type=Path, help="a training run folder (model.safetensors)")
    parser.add_argument("--presets", nargs="*", default=SMALL)
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args()
    import unet_torch  # noqa: F401  (torch before TensorFlow)

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        models = [(n, PRESETS[n], random_weights(PRESETS[n], seed=0), None) for n in args.presets]
        if args.demo is not None:
            from unet_data.synthetic import make_dataset

            weights, spec, *_ = load_any_weights(args.demo / "model.safetensors")
            # The demo run's validation images (configs/demo.yaml: 256 train, 32 val, 64 px).
            images, masks = make_dataset(32, 64, spec.in_channels, spec.num_classes, 0, 256)
            models.append((f"demo ({args.demo.parent.name}/{args.demo.name})", spec, weights,
                           (images, masks)))  # fmt: skip
        # PyTorch eager first, before TensorFlow starts its thread pools; then the formats in
        # FORMATS order (torch-side runtimes before the TensorFlow ones), every model each.
        cases = []
        for name, spec, weights, val in models:
            size = spec.plan().nearest_valid_size(64 if spec.padding == "same" else 188, "up")
            model = export.load_canonical_torch(spec, weights)
            cases.append((name, spec, weights, val, size, latency(eager(model),
                          random_input(spec, size, 1, seed=5), args.repeats)))  # fmt: skip
        for suffix, precision in FORMATS:
            for name, spec, weights, val, size, torch_s in cases:
                rows.append(measure(name, spec, weights, size, suffix, precision, Path(tmp),
                                    args.repeats, torch_s, val))  # fmt: skip
    machine = machine_line()
    text = table(rows, machine)
    print(text)
    if args.json:
        args.json.write_text(json.dumps({"machine": machine, "rows": rows}, indent=1) + "\n")
    if args.md:
        args.md.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
