"""Compare training recipes at a fixed number of steps on a GPU (in-process, no CLI).

    python benchmarks/recipe_sweep.py --data-root ../shared/data --json sweep.json [--only isbi]

On a CPU the evaluation budget (``evaluate.py``) allows a few hundred steps; on a GPU each of those
runs takes a minute, so recipes can be ranked by validation score per step before one of them is
spent on the CPU budget. A variant is a committed config (``configs/isbi2012.yaml``,
``configs/camvid.yaml``) with some model and data fields changed. Each run prints one JSON line
(best validation score, its step, the curve) and the whole list goes to ``--json``. Needs torch,
lightning, torchmetrics, torchvision and PyYAML (no Keras: no export).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import lightning as L  # noqa: E402
import torch  # noqa: E402
import yaml  # noqa: E402
from lightning.pytorch.cli import instantiate_module  # noqa: E402

from unet_runtime import keep_freed_memory, machine_info  # noqa: E402
from unet_train.callbacks import FiniteLossGuard  # noqa: E402
from unet_train.data import FolderDataModule  # noqa: E402
from unet_train.datasets import Augmentation  # noqa: E402
from unet_train.system import SegmentationSystem  # noqa: E402

STEPS_PER_EPOCH = 25
AUGMENT_FIELDS = {f.name for f in dataclasses.fields(Augmentation)}
NO_DROPOUT_BN = {"norm": "batch", "dropout": 0.0}  # the ISBI config's spec override
BALANCED = {"flips": "horizontal", "balance_classes": 0.5}  # the CamVid config's crops
CE = {"name": "ce"}  # the loss fields a variant changes (the config's others stay)

# name: (config, steps, model fields changed, data fields changed)
VARIANTS = {
    "isbi/ce_dice": ("isbi2012", 500, {}, {}),
    "isbi/ce": ("isbi2012", 500, {"loss": CE}, {}),
    "isbi/ce_572b2": ("isbi2012", 500, {"loss": CE}, {"crop_size": 572, "batch_size": 2}),
    "isbi/ce_w32": ("isbi2012", 500, {"loss": CE, "spec": {**NO_DROPOUT_BN, "base_filters": 32}}, {}),
    "isbi/ce_same256": ("isbi2012", 500, {"loss": CE, "preset": "modern-small", "spec": None},
                        {"crop_size": 256, "batch_size": 8}),
    "isbi/ce_2000": ("isbi2012", 2000, {"loss": CE}, {}),
    "isbi/ce_border10": ("isbi2012", 500, {"loss": CE}, {"border_weight": 10.0}),
    "isbi/ce_border3": ("isbi2012", 500, {"loss": CE}, {"border_weight": 3.0}),
    "camvid/base": ("camvid", 1200, {}, {"flips": True, "balance_classes": 0.0}),
    "camvid/hflip_bal": ("camvid", 1200, {}, BALANCED),
    "camvid/hflip_bal_lr2e-3": ("camvid", 1200, {"lr": 2e-3}, BALANCED),
    "camvid/hflip_bal0.8_lr2e-3": ("camvid", 1200, {"lr": 2e-3}, {**BALANCED, "balance_classes": 0.8}),
    "camvid/hflip_bal_mf_lr2e-3": ("camvid", 1200, {"lr": 2e-3, "loss": {"class_weighting": "median_frequency"}}, BALANCED),
    "camvid/hflip_bal_w24": ("camvid", 1200, {"spec": {"base_filters": 24}}, BALANCED),
    "camvid/config": ("camvid", 1200, {}, {}),
    "camvid/config_dice2": ("camvid", 1200, {"loss": {"dice_weight": 2.0}}, {}),
    "camvid/config_bal0.8": ("camvid", 1200, {}, {"balance_classes": 0.8}),
}  # fmt: skip


class History(L.Callback):
    def __init__(self) -> None:
        self.rows: list[dict] = []

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: SegmentationSystem) -> None:
        if not trainer.sanity_checking:
            self.rows.append({"step": trainer.global_step, **pl_module.last_val})


def run(name: str, root: Path, seed: int, workers: int, max_steps: int | None) -> dict:
    dataset, steps, model_over, data_over = VARIANTS[name]
    steps = min(steps, max_steps or steps)
    epochs = max(1, steps // STEPS_PER_EPOCH)
    config = yaml.safe_load((REPO / "configs" / f"{dataset}.yaml").read_text())
    data = {**config["data"]["init_args"], **data_over}
    # Augmentation fields of a variant ("flips") refine the config's augment block.
    augment = {**data.get("augment", {}), **{k: data.pop(k) for k in AUGMENT_FIELDS if k in data}}
    data["augment"] = Augmentation(**augment)
    data.update(root=str(root / dataset), num_workers=workers,
                samples_per_epoch=STEPS_PER_EPOCH * data["batch_size"])  # fmt: skip
    model_over = dict(model_over)
    model = {**config["model"], "num_classes": data["num_classes"]}
    if "lr" in model_over:  # the sweep's shorthand for the configured optimiser's learning rate
        optimizer = model["optimizer"]
        lr = model_over.pop("lr")
        model["optimizer"] = {**optimizer, "init_args": {**optimizer["init_args"], "lr": lr}}
    if "loss" in model_over:  # fields of the config's loss group
        model["loss"] = {**model.get("loss", {}), **model_over.pop("loss")}
    model.update(model_over)
    L.seed_everything(seed, verbose=False)
    history = History()
    trainer = L.Trainer(
        accelerator="auto", devices=1, max_epochs=epochs, logger=False,
        check_val_every_n_epoch=min(4, epochs), enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, callbacks=[FiniteLossGuard(), history],
        default_root_dir=f"/tmp/sweep/{name}",
    )  # fmt: skip
    start = time.monotonic()
    system = instantiate_module(SegmentationSystem, model)  # as train.py builds it
    trainer.fit(system, datamodule=FolderDataModule(**data))
    key, better = ("val/pixel_error", min) if dataset == "isbi2012" else ("val/miou", max)
    best = better(history.rows, key=lambda r: r[key])
    k = 2 if dataset == "isbi2012" else 11
    result = {"variant": name, "seed": seed, "steps": steps, "seconds": round(time.monotonic() - start, 1),
              "metric": key, "best": round(best[key], 4), "best_step": best["step"],
              "final": round(history.rows[-1][key], 4),
              "best_iou": [round(best.get(f"val/iou_{c}", 0.0), 3) for c in range(k)],
              "curve": [(r["step"], round(r[key], 4)) for r in history.rows]}  # fmt: skip
    print(json.dumps(result), flush=True)
    return result


def main() -> None:
    keep_freed_memory()  # the process setting every entry point makes (docs/architecture.md)
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-root", type=Path, required=True)
    p.add_argument("--json", type=Path, default=Path("sweep.json"))
    p.add_argument("--only", nargs="+", default=[""], help="run the variants named (substrings)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    p.add_argument("--workers", type=int, default=6)
    p.add_argument("--max-steps", type=int, help="cap every variant's steps (a smoke test)")
    args = p.parse_args()
    torch.backends.cudnn.benchmark = True
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"
    print(device, torch.__version__, L.__version__, flush=True)
    results = []
    for name in VARIANTS:
        if any(part in name for part in args.only):
            for seed in args.seeds:
                try:
                    results.append(run(name, args.data_root, seed, args.workers, args.max_steps))
                except Exception as exc:  # one broken variant must not cost the rest of the sweep
                    print(f"{name} seed {seed}: {type(exc).__name__}: {exc}", flush=True)
                doc = {"device": device, "machine": machine_info(), "results": results}
                args.json.write_text(json.dumps(doc, indent=1))


if __name__ == "__main__":
    main()
