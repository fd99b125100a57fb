"""The parity figures of every preset on this machine: PyTorch's fp32 noise against float64, the
Keras twin's distance from both, and the limit the noise-aware check derives from them.

    python benchmarks/parity_noise.py [--full] [--json out.json]
    ONEDNN_MAX_CPU_ISA=AVX2 python benchmarks/parity_noise.py      # the kernels of an AVX2 CPU

Prints a Markdown table headed by the machine (CPU, torch's CPU capability, the oneDNN ISA cap,
threads). Small presets run at their default sizes, full-width ones at their smallest size with
a few output pixels; ``--full`` adds the ``seed`` model at 572² (about 1.5 min, 6 GB).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from unet_bridge import random_input, run_parity
from unet_runtime import keep_freed_memory, machine_info, machine_line
from unet_spec import DEFAULT_SIZES, PRESETS, random_weights


def cases(full: bool) -> list[tuple[str, int]]:
    out = []
    for name, spec in sorted(PRESETS.items()):
        if spec.base_filters <= 16:
            out.append((name, DEFAULT_SIZES[name]))
        else:
            out.append((name, spec.plan().nearest_valid_size(8 * 2**spec.depth, direction="up")))
    if full:
        out.append(("seed", 572))
    return out


def main() -> int:
    keep_freed_memory()  # the process setting every entry point makes (docs/architecture.md)
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--full", action="store_true", help="add the seed model at 572²")
    parser.add_argument("--json", type=Path, help="write the figures as JSON")
    args = parser.parse_args()
    rows = []
    for name, size in cases(args.full):
        spec = PRESETS[name]
        x = random_input(spec, size, 1, seed=0)
        report = run_parity(spec, random_weights(spec, seed=0), x)
        worst = max(report.layers, key=lambda r: r.check.rel / r.check.rel_limit)
        logits = report.logits
        rows.append({
            "preset": name, "size": size,
            "torch_noise_rel": logits.noise_rel, "keras_vs_float64_rel": logits.candidate_rel64,
            "keras_vs_torch_rel": logits.rel, "rel_limit": logits.rel_limit,
            "ratio": logits.noise_ratio, "worst_block": worst.name,
            "worst_block_ratio": worst.check.noise_ratio,
            "decisive": logits.decisive, "flips": logits.flips, "passed": report.passed,
            "seconds": report.seconds,
        })  # fmt: skip
        print(f"{name}@{size}: {logits}", file=sys.stderr, flush=True)
    print(f"Machine: {machine_line()}; margin {report.tolerance.margin:g}× the noise\n")
    print(
        "| preset | size | PyTorch fp32 vs float64 (noise) | Keras fp32 vs float64 | "
        "Keras vs PyTorch | × noise | limit | worst block (× noise) | label flips | verdict |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| `{r['preset']}` | {r['size']}² | {r['torch_noise_rel']:.2g} | "
              f"{r['keras_vs_float64_rel']:.2g} | {r['keras_vs_torch_rel']:.2g} | {r['ratio']:.1f} | "
              f"{r['rel_limit']:.2g} | {r['worst_block']} ({r['worst_block_ratio']:.1f}) | "
              f"{r['flips']} of {r['decisive']} | {'pass' if r['passed'] else 'FAIL'} |")  # fmt: skip
    if args.json is not None:
        doc = {"machine": machine_info(), "rows": rows}
        args.json.write_text(json.dumps(doc, indent=2) + "\n")
    return 0 if all(r["passed"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
