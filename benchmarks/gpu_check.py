"""Training on a GPU: the demo recipe's learning curve, mixed precision, channels-last and compile.

    python benchmarks/gpu_check.py

Runs in-process (no CLI), so it needs only torch, lightning, torchmetrics and torchvision. Prints
one line per run with the validation Dice per epoch and the wall time.
"""

from __future__ import annotations

import functools
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import lightning as L
import torch

from unet_runtime import keep_freed_memory
from unet_train.callbacks import FiniteLossGuard, RunArtifacts
from unet_train.data import SyntheticDataModule
from unet_train.system import SegmentationSystem


def run(
    name: str, epochs: int, precision: str = "32", data: dict | None = None, lr: float = 1e-3,
    **model,
) -> None:  # fmt: skip
    L.seed_everything(0, verbose=False)
    dm_args = {"num_train": 96, "num_val": 16, "image_size": 96, "num_classes": 5, "crop_size": 96,
               "batch_size": 8, "val_batch_size": 8, **(data or {})}  # fmt: skip
    adamw = functools.partial(torch.optim.AdamW, lr=lr, weight_decay=1e-4, fused=True)
    system = SegmentationSystem(
        **{"preset": "modern-small", "num_classes": 5, "optimizer": adamw, **model}
    )
    artifacts = RunArtifacts(keras_export=False, overlays=0)
    trainer = L.Trainer(
        accelerator="gpu", devices=1, precision=precision, max_epochs=epochs, logger=False,
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
        callbacks=[FiniteLossGuard(), artifacts], default_root_dir=f"/tmp/gpu_check/{name}",
    )  # fmt: skip
    start = time.monotonic()
    trainer.fit(system, datamodule=SyntheticDataModule(**dm_args))
    dice = [round(r.get("val/dice", float("nan")), 3) for r in artifacts.history]
    per_class = [round(system.last_val.get(f"val/dice_{k}", 0), 2) for k in range(5)]
    print(f"{name}: {time.monotonic() - start:.1f}s dice/epoch={dice} last per-class={per_class}",
          flush=True)  # fmt: skip


if __name__ == "__main__":
    keep_freed_memory()  # the process setting every entry point makes (docs/architecture.md)
    torch.backends.cudnn.benchmark = True
    print(torch.cuda.get_device_name(), torch.__version__, L.__version__, flush=True)
    run("demo", 40, lr=0.001)  # configs/demo.yaml's recipe
    if sys.argv[1:] == ["demo"]:
        sys.exit(0)
    run("bf16-mixed", 3, precision="bf16-mixed")
    run("16-mixed", 3, precision="16-mixed")
    run("channels_last+compile", 3, channels_last=True, compile=True)
    run("paper-small-valid", 3, preset="paper-small", spec={"norm": "batch", "dropout": 0.0},
        in_channels=1, data={"image_size": 128, "crop_size": 252})  # fmt: skip
