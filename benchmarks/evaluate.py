"""Train a config under a wall-clock budget, then score its best checkpoint on the validation images.

    python benchmarks/evaluate.py configs/isbi2012.yaml --budget-min 30
    python benchmarks/evaluate.py configs/camvid.yaml --budget-min 30 --no-tta

Training runs ``train.py fit`` with ``--trainer.max_time`` set to the budget minus a reserve for the
final validation and this evaluation. The score is computed on whole validation images through the
inference path of validation (``SegmentationSystem.predict_labels``), with and without test-time
augmentation, and reported as pixel error, per-class Dice and IoU, and their means. The same
checkpoint is then run through the real ``unet predict`` command on the same image files and its
written masks are scored alike: validation and ``unet predict`` share one tiling policy, head and
label rule, so the two mIoU figures must agree within ``--agree`` (exit status 1 otherwise).
Results go to ``<run>/evaluation.json`` and one Markdown line on stdout.

Data is read from where the config points (``../shared/data`` for the development sets); nothing is
copied.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from unet_spec import machine_line  # noqa: E402 - after the path set-up above


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


def _metrics(num_classes: int) -> dict:
    from torchmetrics.classification import (
        MulticlassAccuracy,
        MulticlassF1Score,
        MulticlassJaccardIndex,
    )

    from unet_spec.data import IGNORE_INDEX

    k = max(num_classes, 2)
    return {
        "dice": MulticlassF1Score(k, average="none", ignore_index=IGNORE_INDEX),
        "iou": MulticlassJaccardIndex(k, average="none", ignore_index=IGNORE_INDEX),
        "accuracy": MulticlassAccuracy(k, average="micro", ignore_index=IGNORE_INDEX),
    }


def _summary(metrics: dict, seconds: float) -> dict:
    dice, iou = metrics["dice"].compute(), metrics["iou"].compute()
    return {
        "pixel_error": round(1 - float(metrics["accuracy"].compute()), 4),
        "mean_dice": round(float(dice.mean()), 4),
        "mean_iou": round(float(iou.mean()), 4),
        "dice": [round(float(v), 4) for v in dice],
        "iou": [round(float(v), 4) for v in iou],
        "seconds": round(seconds, 1),
    }


def _load(run: Path):
    import yaml

    from unet_train.data import FolderDataModule
    from unet_train.system import SegmentationSystem

    best = run / "checkpoints" / "best.ckpt"
    if not best.is_file():
        raise SystemExit(f"{best}: no such checkpoint")
    system = SegmentationSystem.load_from_checkpoint(best, map_location="cpu").eval()
    config = yaml.safe_load((run / "config.yaml").read_text())
    data_args = dict(config["data"]["init_args"])
    data = FolderDataModule(**{k: v for k, v in data_args.items() if k != "class_path"})
    data.attach_spec(system.spec)
    data.setup("validate")
    return system, data


def evaluate(run: Path, tta: bool | str) -> dict:
    """Score the best checkpoint of ``run`` on its validation images, as validation does."""
    import torch

    system, data = _load(run)
    results = {}
    for use_tta in (False, tta) if tta else (False,):
        metrics = _metrics(system.spec.num_classes)
        start = time.monotonic()
        for _, image, mask in data.val_samples:
            labels = system.predict_labels(torch.from_numpy(image)[None], tta=use_tta)
            for m in metrics.values():
                m.update(labels, torch.from_numpy(mask)[None])
        results["tta" if use_tta else "plain"] = _summary(metrics, time.monotonic() - start)
    return results


def evaluate_predict(run: Path, backend: str) -> dict:
    """Run ``unet predict`` (a subprocess, as a user would) on the validation image files with the
    best checkpoint of ``run`` and score the masks it writes."""
    import numpy as np
    import torch
    from PIL import Image

    from unet_spec.masks import decode_mask

    system, data = _load(run)
    paths = [Path(name).resolve() for name, _, _ in data.val_samples]
    stems = [p.stem for p in paths]
    if len(set(stems)) != len(stems):  # masks are named after the stem
        raise SystemExit("validation images share a file stem; unet predict would overwrite masks")
    out = run / f"predict-val-{backend}"
    cmd = [sys.executable, "-m", "unet_cli", "predict", *map(str, paths),
           "--weights", str(run / "checkpoints" / "best.ckpt"), "--out", str(out),
           "--backend", backend]  # fmt: skip
    if system.hparams.get("tile"):  # validation's tile, so both run the same tiles
        cmd += ["--tile", str(system.hparams["tile"])]
    print(
        "+", " ".join(cmd[:4]), f"<{len(paths)} validation images>", " ".join(cmd[4 + len(paths) :])
    )
    start = time.monotonic()
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr[-4000:])
        raise SystemExit(f"unet predict failed with exit status {proc.returncode}")
    seconds = time.monotonic() - start
    metrics = _metrics(system.spec.num_classes)
    for path, (_, _, mask) in zip(paths, data.val_samples, strict=True):
        written = np.asarray(Image.open(out / f"{path.stem}_mask.png"))
        labels = torch.from_numpy(decode_mask(written, system.spec.num_classes))[None]
        for m in metrics.values():
            m.update(labels, torch.from_numpy(mask)[None])
    return {"backend": backend, **_summary(metrics, seconds)}


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
    parser.add_argument("--predict-backend", choices=["torch", "keras"], default="torch",
                        help="backend of the unet predict run scored beside validation")  # fmt: skip
    # The two paths share tiles, head and label rule; their labels can differ only where float
    # noise between kernels reorders the top two classes, a handful of pixels in a data set. A
    # difference of policy moves mIoU by whole points (0.09 on CamVid before the paths were one).
    parser.add_argument("--agree", type=float, default=0.002,
                        help="largest mIoU difference allowed between validation and unet predict")  # fmt: skip
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
    predicted = evaluate_predict(run, args.predict_backend)
    gap = abs(predicted["mean_iou"] - scores["plain"]["mean_iou"])
    summary = run / "metrics.json"  # absent when the run stopped before its artifacts
    train_metrics = json.loads(summary.read_text()) if summary.is_file() else {}
    report = {
        "config": str(args.config),
        "run": str(run),
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine_line(),
        "train_wall_s": round(train_s, 1),
        "epochs": train_metrics.get("epochs"),
        "global_step": train_metrics.get("global_step"),
        "tta_mode": None if args.no_tta else args.tta_mode,
        "scores": scores,
        "unet_predict": predicted,
        "predict_agrees": gap <= args.agree,
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
    print(
        f"validation mIoU {plain['mean_iou']:.4f}, pixel error {plain['pixel_error']:.4f}; "
        f"unet predict ({predicted['backend']}) mIoU {predicted['mean_iou']:.4f}, "
        f"pixel error {predicted['pixel_error']:.4f}; machine: {report['machine']}"
    )
    print(json.dumps(report, indent=2))
    if gap > args.agree:
        raise SystemExit(
            f"unet predict and validation disagree: mIoU {predicted['mean_iou']:.4f} vs "
            f"{plain['mean_iou']:.4f} (allowed difference {args.agree})"
        )


if __name__ == "__main__":
    main()
