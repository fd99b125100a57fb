"""Train a config under a wall-clock budget, then score its best checkpoint on the validation images.

    python benchmarks/evaluate.py configs/isbi2012.yaml --budget-min 30
    python benchmarks/evaluate.py configs/camvid.yaml --budget-min 30 --no-tta

Training runs ``train.py fit`` with ``--trainer.max_time`` set to the budget minus a reserve for the
final validation and this evaluation. The score is computed on whole validation images through the
same tiled inference as validation, with and without test-time augmentation (the 8 flips and
rotations), and reported as pixel error, per-class Dice and IoU, and their means. Results go to
``<run>/evaluation.json`` and one Markdown line on stdout.

Data is read from where the config points (``../shared/data`` for the development sets); nothing is
copied.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def train(config: Path, budget_s: float, extra: list[str]) -> Path:
    """Run ``train.py fit`` within ``budget_s`` seconds; return the run folder."""
    minutes = max(1, int(budget_s // 60))
    max_time = f"00:{minutes // 60:02d}:{minutes % 60:02d}:00"
    cmd = [sys.executable, str(REPO / "train.py"), "fit", "--config", str(config),
           "--trainer.max_time", max_time, "--trainer.enable_progress_bar", "false", *extra]  # fmt: skip
    print("+", " ".join(cmd), flush=True)
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    sys.stdout.write(proc.stdout[-4000:])
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr[-4000:])
        raise SystemExit(f"training failed with exit status {proc.returncode}")
    found = re.search(r"Results in (\S+?)/? ", proc.stdout)
    if not found:
        raise SystemExit("training finished but printed no results folder")
    return REPO / found.group(1)


def evaluate(run: Path, tta: bool | str) -> dict:
    """Score the best checkpoint of ``run`` on its validation images."""
    import torch
    import yaml
    from torchmetrics.classification import (
        MulticlassAccuracy,
        MulticlassF1Score,
        MulticlassJaccardIndex,
    )

    from unet_torch.data import IGNORE_INDEX, FolderDataModule
    from unet_torch.system import SegmentationSystem

    best = run / "checkpoints" / "best.ckpt"
    system = SegmentationSystem.load_from_checkpoint(best, map_location="cpu").eval()
    config = yaml.safe_load((run / "config.yaml").read_text())
    data_args = dict(config["data"]["init_args"])
    data = FolderDataModule(**{k: v for k, v in data_args.items() if k != "class_path"})
    data.attach_spec(system.spec)
    data.setup("validate")
    k = max(system.spec.num_classes, 2)
    results = {}
    for use_tta in (False, tta) if tta else (False,):
        metrics = {
            "dice": MulticlassF1Score(k, average="none", ignore_index=IGNORE_INDEX),
            "iou": MulticlassJaccardIndex(k, average="none", ignore_index=IGNORE_INDEX),
            "accuracy": MulticlassAccuracy(k, average="micro", ignore_index=IGNORE_INDEX),
        }
        start = time.monotonic()
        for _, image, mask in data.val_samples:
            probs = system.predict_probs(torch.from_numpy(image)[None], tta=use_tta)
            labels = probs.argmax(1) if probs.shape[1] > 1 else (probs[:, 0] > 0.5).long()
            for m in metrics.values():
                m.update(labels, torch.from_numpy(mask)[None])
        dice, iou = metrics["dice"].compute(), metrics["iou"].compute()
        results["tta" if use_tta else "plain"] = {
            "pixel_error": round(1 - float(metrics["accuracy"].compute()), 4),
            "mean_dice": round(float(dice.mean()), 4),
            "mean_iou": round(float(iou.mean()), 4),
            "dice": [round(float(v), 4) for v in dice],
            "iou": [round(float(v), 4) for v in iou],
            "seconds": round(time.monotonic() - start, 1),
        }
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("config", type=Path)
    parser.add_argument("--budget-min", type=float, default=30.0, help="wall-clock budget, minutes")
    parser.add_argument("--reserve-min", type=float, default=3.0,
                        help="part of the budget kept for the final validation and export")  # fmt: skip
    parser.add_argument(
        "--no-tta", action="store_true", help="skip the test-time augmentation score"
    )
    parser.add_argument("--tta-mode", choices=["d4", "hflip"], default="d4",
                        help="d4: the 8 flips/rotations; hflip: image and mirror (road scenes)")  # fmt: skip
    parser.add_argument("--run", type=Path, help="score an existing run folder instead of training")
    parser.add_argument("extra", nargs="*", help="more train.py overrides")
    args, unknown = parser.parse_known_args()
    args.extra = [*args.extra, *unknown]  # train.py overrides such as --trainer.max_epochs 8
    start = time.monotonic()
    run = args.run or train(args.config, (args.budget_min - args.reserve_min) * 60, args.extra)
    train_s = time.monotonic() - start
    earlier = run / "evaluation.json"
    if args.run and earlier.is_file():  # rescoring a run: keep the training time it reported
        train_s = json.loads(earlier.read_text()).get("train_wall_s", train_s)
    scores = evaluate(
        run, tta=False if args.no_tta else (True if args.tta_mode == "d4" else "hflip")
    )
    summary = run / "metrics.json"  # absent when the run stopped before its artifacts
    train_metrics = json.loads(summary.read_text()) if summary.is_file() else {}
    report = {
        "config": str(args.config),
        "run": str(run),
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.platform()}",
        "train_wall_s": round(train_s, 1),
        "epochs": train_metrics.get("epochs"),
        "global_step": train_metrics.get("global_step"),
        "tta_mode": None if args.no_tta else args.tta_mode,
        "scores": scores,
    }
    (run / "evaluation.json").write_text(json.dumps(report, indent=2) + "\n")
    plain = scores["plain"]
    tta = scores.get("tta", {})
    print(
        f"| {args.config.name} | {train_s / 60:.1f} min | pixel error {plain['pixel_error']:.4f}"
        + (f" (TTA {tta['pixel_error']:.4f})" if tta else "")
        + f" | mean Dice {plain['mean_dice']:.4f} | mIoU {plain['mean_iou']:.4f}"
        + (f" (TTA {tta['mean_iou']:.4f})" if tta else "")
        + f" | IoU per class {plain['iou']} |"
    )
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
