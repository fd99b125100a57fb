"""Fine-tuning from a model trained on other data against training from scratch, on CamVid.

    python benchmarks/finetune_vs_scratch.py --data-root ../shared/data/camvid \\
        --work runs/finetune-vs-scratch [--stage all|pretrain|finetune|scratch|report]

The task: drive 0001TP (62 frames) with CamVid's 11 classes, a user's "few dozen labelled images":
its first 31 frames train, its last 31 validate (neighbouring frames are alike, so the two halves
are contiguous blocks). The base model never sees 0001TP: it is trained on the other two drives
(0006R0 and 0016E5, ``train/`` and ``val/`` pooled) with a *different class set*, CamVid's 11
classes merged into 5 (sky; building and fence; road and pavement; tree; poles, signs, cars and
people), so fine-tuning has to re-initialise the head (5 → 11 classes).

Both target runs have the same budget, seed, crops, batches, optimiser and schedule
(``configs/camvid.yaml``'s recipe); the fine-tuned one starts from the base model
(``model.init_from``) with its encoder frozen for the first epochs (``configs/finetune.yaml``'s
callback). Each run is ``python train.py fit`` with a generated config, one thread
(``OMP_NUM_THREADS=1``), validated every epoch. The report gives, for each, the best and last
validation mIoU and the steps it took to reach the score the scratch run ends with (and half of
it), as JSON and a markdown table. Needs the ``train`` extra; no Keras (the export is off).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from unet_runtime import atomic_write_bytes, machine_info  # noqa: E402

TARGET_DRIVE = "0001TP"
BASE_DRIVES = ("0006R0", "0016E5")
#: CamVid's 11 classes merged into 5 for the base model (void, 11, stays ignored).
COARSE = {0: 0, 1: 1, 7: 1, 3: 2, 4: 2, 5: 3, 2: 4, 6: 4, 8: 4, 9: 4, 10: 4}
CROP, BATCH = 176, 8
BASE_EPOCHS, BASE_STEPS_PER_EPOCH = 40, 20  # 800 steps
TARGET_EPOCHS, TARGET_STEPS_PER_EPOCH = 30, 10  # 300 steps
UNFREEZE_AT = 2  # epochs with the encoder frozen (20 steps)


def prepare(data_root: Path, work: Path) -> tuple[Path, Path]:
    """Two data folders of links: the base model's drives, and the target drive in two halves."""
    frames: dict[str, list[Path]] = {}
    for split in ("train", "val"):
        for image in sorted((data_root / split / "images").glob("*.png")):
            frames.setdefault(image.name.split("_")[0], []).append(image)
    base, target = work / "data-base", work / "data-target"
    for folder in (base, target):
        if folder.exists():
            return base, target
    for drive in BASE_DRIVES:
        for image in frames[drive]:
            _link(image, base / "images")
            _link(image.parent.parent / "masks" / image.name, base / "masks")
    own = frames[TARGET_DRIVE]
    half = len(own) // 2
    for part, images in (("train", own[:half]), ("val", own[half:])):
        for image in images:
            _link(image, target / part / "images")
            _link(image.parent.parent / "masks" / image.name, target / part / "masks")
    return base, target


def _link(src: Path, folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / src.name).symlink_to(src.resolve())  # a name seen twice fails here


def config(work: Path, name: str, root: Path, classes: int, epochs: int, steps: int,
           value_map: dict[int, int] | None = None, val_every: int = 1) -> dict:  # fmt: skip
    """``configs/camvid.yaml``'s recipe on ``root`` with this benchmark's budget."""
    base = yaml.safe_load((REPO / "configs" / "camvid.yaml").read_text())
    data = base["data"]["init_args"]
    data["masks"] = {**data.get("masks", {}), "value_map": value_map}
    data.update(root=str(root), num_classes=classes, split="random",
                val_groups=None, val_fraction=0.1, samples_per_epoch=steps * BATCH,
                crop_size=CROP, batch_size=BATCH, val_batch_size=8)  # fmt: skip
    base["model"]["optimizer"]["init_args"].pop("fused", None)
    trainer = base["trainer"]
    trainer.update(max_epochs=epochs, check_val_every_n_epoch=val_every, max_time=None,
                   logger=[{"class_path": "lightning.pytorch.loggers.CSVLogger",
                            "init_args": {"save_dir": str(work / "runs"), "name": name}}],
                   callbacks=[], enable_progress_bar=False)  # fmt: skip
    base["artifacts"] = {"keras_export": False, "overlays": 2}
    return base


def run(work: Path, name: str, cfg: dict) -> Path:
    """Train one run (``train.py fit``) and return its folder."""
    path = work / f"{name}.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    log = (work / f"{name}.log").open("w")
    start = time.monotonic()
    subprocess.run([sys.executable, str(REPO / "train.py"), "fit", "--config", str(path)],
                   check=True, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=REPO)  # fmt: skip
    print(f"{name}: {time.monotonic() - start:.0f} s", flush=True)
    return latest(work, name)


def latest(work: Path, name: str) -> Path:
    runs = sorted((work / "runs" / name).glob("version_*"), key=lambda p: int(p.name[8:]))
    if not runs or not (runs[-1] / "metrics.json").is_file():
        raise FileNotFoundError(f"{work / 'runs' / name}: no finished run (metrics.json)")
    return runs[-1]


def target_config(work: Path, target: Path, name: str, init_from: Path | None) -> dict:
    cfg = config(work, name, target, 11, TARGET_EPOCHS, TARGET_STEPS_PER_EPOCH)
    # The target folder's train/ and val/ are the split: the random split keeps them as given.
    cfg["data"]["init_args"].pop("val_fraction")
    if init_from is not None:
        finetune = yaml.safe_load((REPO / "configs" / "finetune.yaml").read_text())
        cfg["model"]["preset"] = None  # the spec comes from the base model
        cfg["model"]["init_from"] = str(init_from)
        callbacks = finetune["trainer"]["callbacks"]
        for cb in callbacks:
            if cb["class_path"].endswith("FreezeEncoder"):
                cb["init_args"]["unfreeze_at_epoch"] = UNFREEZE_AT
        cfg["trainer"]["callbacks"] = [c for c in callbacks
                                       if c["class_path"].endswith("FreezeEncoder")]  # fmt: skip
    return cfg


def steps_to(history: list[dict], key: str, score: float) -> int | None:
    """The first validated step at which ``key`` reached ``score``."""
    for row in history:
        if row.get(key, float("-inf")) >= score:
            return int(row["step"])
    return None


def report(work: Path, out_json: Path, out_md: Path) -> dict:
    runs = {name: json.loads((latest(work, name) / "metrics.json").read_text())
            for name in ("finetune", "scratch")}  # fmt: skip
    key = "val/miou"
    scratch_last = runs["scratch"]["last"][key]
    rows = {}
    for name, m in runs.items():
        rows[name] = {
            "best": m["best"][key], "best_step": m["best"]["step"], "last": m["last"][key],
            "steps": m["global_step"], "wall_s": m["wall_time_s"],
            "steps_to_scratch_final": steps_to(m["history"], key, scratch_last),
            "steps_to_half_scratch_final": steps_to(m["history"], key, scratch_last / 2),
            "curve": [(r["step"], round(r[key], 4)) for r in m["history"] if key in r],
            "base_model": m.get("base_model"),
        }  # fmt: skip
    base = json.loads((latest(work, "pretrain") / "metrics.json").read_text())
    pretrain = {"classes": 5, "steps": base["global_step"], "images": base["data"],
                "val_miou": base["last"].get(key), "wall_s": base["wall_time_s"]}  # fmt: skip
    # The training processes' machine (their thread count and allocator), not this process's.
    result = {"metric": key, "scratch_final": scratch_last, "pretrain": pretrain, "runs": rows,
              "machine": runs["scratch"].get("machine") or machine_info()}  # fmt: skip
    atomic_write_bytes(out_json, (json.dumps(result, indent=1) + "\n").encode())
    lines = [
        f"| run | steps | best mIoU (step) | last mIoU | steps to {scratch_last:.3f} "
        f"(scratch's last) | steps to {scratch_last / 2:.3f} | wall s |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, r in rows.items():
        lines.append(
            f"| {name} | {r['steps']} | {r['best']:.4f} ({r['best_step']}) | {r['last']:.4f} | "
            f"{r['steps_to_scratch_final'] or 'not reached'} | "
            f"{r['steps_to_half_scratch_final'] or 'not reached'} | {r['wall_s']:.0f} |"
        )
    atomic_write_bytes(out_md, ("\n".join(lines) + "\n").encode())
    print("\n".join(lines))
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-root", type=Path, default=REPO.parent / "shared/data/camvid")
    parser.add_argument("--work", type=Path, default=REPO / "runs" / "finetune-vs-scratch")
    parser.add_argument("--stage", default="all",
                        choices=["all", "pretrain", "finetune", "scratch", "report"])  # fmt: skip
    parser.add_argument(
        "--json", type=Path, default=REPO / "benchmarks" / "results-finetune-vs-scratch.json"
    )
    parser.add_argument(
        "--markdown", type=Path, default=REPO / "benchmarks" / "results-finetune-vs-scratch.md"
    )
    args = parser.parse_args(argv)
    work = args.work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    base_data, target = prepare(args.data_root.resolve(), work)
    stages = ["pretrain", "finetune", "scratch", "report"] if args.stage == "all" else [args.stage]
    if "pretrain" in stages:
        cfg = config(work, "pretrain", base_data, 5, BASE_EPOCHS, BASE_STEPS_PER_EPOCH,
                     value_map=COARSE, val_every=10)  # fmt: skip
        run(work, "pretrain", cfg)
    if "finetune" in stages:
        weights = latest(work, "pretrain") / "model.safetensors"
        run(work, "finetune", target_config(work, target, "finetune", weights))
    if "scratch" in stages:
        run(work, "scratch", target_config(work, target, "scratch", None))
    if "report" in stages:
        report(work, args.json, args.markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
