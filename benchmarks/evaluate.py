"""Train a config under a wall-clock budget, then score its checkpoints on the validation images.

    python benchmarks/evaluate.py configs/isbi2012.yaml --budget-min 30
    python benchmarks/evaluate.py configs/camvid.yaml --budget-min 30 --no-tta

Training runs ``train.py fit`` with ``--trainer.max_time`` set to the budget minus a reserve for the
final validation and this evaluation. The score is Lightning's own: ``trainer.validate`` (or
``trainer.test`` with ``--split test``) with the best checkpoint and the last one, on whole images
through the system's tiled inference, with and without test-time augmentation, reported as pixel
error, per-class Dice and IoU, and their means (all classes, and the foreground classes for Dice).
The best checkpoint is then run through the real ``unet predict`` command on the same image files
and its written masks are scored by the system's own metrics: validation and ``unet predict`` share
one tiling policy, head and label rule, so the two mIoU figures must agree within ``--agree`` (exit
status 1 otherwise). Results go to ``<run>/evaluation.json`` and one Markdown line on stdout.

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

from unet_infer import TTA_MODES  # noqa: E402
from unet_runtime import keep_freed_memory, machine_line  # noqa: E402 - after the path set-up above


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


def _summary(figures: dict[str, float], seconds: float, stage: str) -> dict:
    """The report's figures from what the system logs (:meth:`SegmentationSystem.summarize`)."""
    classes = sum(1 for k in figures if re.fullmatch(rf"{stage}/dice_\d+", k))
    return {
        "pixel_error": round(float(figures[f"{stage}/pixel_error"]), 4),
        "mean_dice": round(float(figures[f"{stage}/dice"]), 4),
        "mean_dice_fg": round(float(figures[f"{stage}/dice_fg"]), 4),
        "mean_iou": round(float(figures[f"{stage}/miou"]), 4),
        "dice": [round(float(figures[f"{stage}/dice_{k}"]), 4) for k in range(classes)],
        "iou": [round(float(figures[f"{stage}/iou_{k}"]), 4) for k in range(classes)],
        "seconds": round(seconds, 1),
    }


def _data(run: Path, spec):
    """The run's data module, rebuilt from its ``config.yaml`` (data paths relative to the
    repository, where ``train`` runs ``train.py``)."""
    import importlib

    import yaml

    from unet_train.datasets import Augmentation

    config = yaml.safe_load((run / "config.yaml").read_text())
    module, _, name = config["data"]["class_path"].rpartition(".")
    args = dict(config["data"].get("init_args") or {})
    if isinstance(args.get("augment"), dict):
        args["augment"] = Augmentation(**args["augment"])
    if args.get("root") and not Path(args["root"]).is_absolute():
        args["root"] = str(REPO / args["root"])
    data = getattr(importlib.import_module(module), name)(**args)
    data.attach_spec(spec)
    return data


def _load(run: Path, tta: bool | str = False, checkpoint: str = "best"):
    """A checkpoint's system (with ``tta`` for its evaluation steps) and the run's data."""
    from unet_train.system import SegmentationSystem

    path = run / "checkpoints" / f"{checkpoint}.ckpt"
    if not path.is_file():
        raise SystemExit(f"{path}: no such checkpoint")
    from dataclasses import replace

    system = SegmentationSystem.load_from_checkpoint(path, map_location="cpu").eval()
    system.inference = replace(system.inference, tta=tta)  # the stored tile stays
    return system, _data(run, system.spec), path


def evaluate(run: Path, tta: bool | str, split: str = "val", checkpoint: str = "best") -> dict:
    """Score a checkpoint of ``run`` (``best`` or ``last``) on its ``split`` images with Lightning's
    ``trainer.validate`` / ``trainer.test``: the run's own metrics, on the CPU as ``unet predict``."""
    import lightning as L
    import torch

    results = {}
    for use_tta in (False, tta) if tta else (False,):
        system, data, path = _load(run, use_tta, checkpoint)
        trainer = L.Trainer(
            accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
            enable_progress_bar=False, enable_model_summary=False, default_root_dir=run,
        )  # fmt: skip
        run_stage = trainer.validate if split == "val" else trainer.test
        start = time.monotonic()
        (figures,) = run_stage(system, datamodule=data, ckpt_path=str(path), verbose=False)
        results["tta" if use_tta else "plain"] = _summary(figures, time.monotonic() - start, split)
    # Memory-mapped: the step is read without loading the tensors again.
    ckpt = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    results["global_step"] = ckpt["global_step"]
    return results


def evaluate_predict(run: Path, backend: str, split: str = "val") -> dict:
    """Run ``unet predict`` (a subprocess, as a user would) on the ``split`` image files with the
    best checkpoint of ``run`` and score the masks it writes with the system's metrics."""
    import numpy as np
    import torch
    from PIL import Image

    from unet_infer.masks import decode_mask

    system, data, best = _load(run)
    data.setup("validate" if split == "val" else "test")
    samples = data.val_samples if split == "val" else data.test_samples
    paths = [Path(name).resolve() for name, _, _ in samples]
    stems = [p.stem for p in paths]
    if len(set(stems)) != len(stems):  # masks are named after the stem
        raise SystemExit(f"{split} images share a file stem; unet predict would overwrite masks")
    out = run / f"predict-{split}-{backend}"
    cmd = [sys.executable, "-m", "unet_cli", "predict", *map(str, paths),
           "--weights", str(best), "--out", str(out), "--backend", backend]  # fmt: skip
    if system.inference.tile:  # validation's tile, so both run the same tiles
        cmd += ["--tile", str(system.inference.tile)]
    print("+", " ".join(cmd[:4]), f"<{len(paths)} {split} images>", " ".join(cmd[4 + len(paths) :]))
    start = time.monotonic()
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr[-4000:])
        raise SystemExit(f"unet predict failed with exit status {proc.returncode}")
    seconds = time.monotonic() - start
    # The written masks, scored by the same metric collection and figures as validation.
    metrics = system.val_metrics.clone()
    metrics.reset()
    for path, (_, _, mask) in zip(paths, samples, strict=True):
        written = np.asarray(Image.open(out / f"{path.stem}_mask.png"))
        labels = torch.from_numpy(decode_mask(written, system.spec.num_classes))[None]
        metrics.update(labels, torch.from_numpy(mask)[None])
    figures = {k: float(v) for k, v in system.summarize(metrics.compute(), split).items()}
    return {"backend": backend, **_summary(figures, seconds, split)}


def main() -> None:
    keep_freed_memory()  # the process setting every entry point makes (docs/architecture.md)
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("config", type=Path)
    parser.add_argument("--budget-min", type=float, default=30.0, help="wall-clock budget, minutes")
    parser.add_argument("--reserve-min", type=float, default=3.0,
                        help="part of the budget kept for the final validation and export")  # fmt: skip
    parser.add_argument(
        "--no-tta", action="store_true", help="skip the test-time augmentation score"
    )
    parser.add_argument("--tta-mode", choices=TTA_MODES,
                        help="d4: the 8 flips/rotations; flips: the 4 flips; hflip: image and "
                             "mirror (road scenes); default: the views the model was trained "
                             "with, recorded in its checkpoint")  # fmt: skip
    parser.add_argument("--run", type=Path, help="score an existing run folder instead of training")
    parser.add_argument("--split", choices=["val", "test"], default="val",
                        help="images scored: validation, or the data's test split")  # fmt: skip
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
    # The vocabulary of unet_infer.tta; True: the model's own views (SegmentationSystem.views).
    views = False if args.no_tta else (args.tta_mode or True)
    scores = evaluate(run, tta=views, split=args.split)
    # The best checkpoint is chosen by the plain validation score on these very images, which
    # favours the plain view over TTA; the last checkpoint is chosen by neither: the fair
    # comparison of the two.
    if (run / "checkpoints" / "last.ckpt").is_file():
        scores["last"] = evaluate(run, tta=views, split=args.split, checkpoint="last")
    predicted = evaluate_predict(run, args.predict_backend, args.split)
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
        "split": args.split,
        "tta_mode": None if args.no_tta else _load(run, views)[0].views(views),
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
    last = scores.get("last")
    if last:
        print(
            f"last checkpoint (step {last['global_step']}): pixel error "
            f"{last['plain']['pixel_error']:.4f}"
            + (f" (TTA {last['tta']['pixel_error']:.4f})" if tta else "")
            + f", mIoU {last['plain']['mean_iou']:.4f}"
            + (f" (TTA {last['tta']['mean_iou']:.4f})" if tta else "")
        )
    print(
        f"{args.split} mIoU {plain['mean_iou']:.4f}, pixel error {plain['pixel_error']:.4f}; "
        f"unet predict ({predicted['backend']}) mIoU {predicted['mean_iou']:.4f}, "
        f"pixel error {predicted['pixel_error']:.4f}; machine: {report['machine']}"
    )
    print(json.dumps(report, indent=2))
    if gap > args.agree:
        raise SystemExit(
            f"unet predict and {args.split} disagree: mIoU {predicted['mean_iou']:.4f} vs "
            f"{plain['mean_iou']:.4f} (allowed difference {args.agree})"
        )


if __name__ == "__main__":
    main()
