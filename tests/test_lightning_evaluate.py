"""``benchmarks/evaluate.py`` scores a run through Lightning (``trainer.validate``/``test`` on the
best checkpoint) and through a real ``unet predict`` run, and the two agree."""

from __future__ import annotations

import importlib.util
from functools import partial
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
import yaml
from lightning.pytorch.callbacks import ModelCheckpoint
from PIL import Image

from unet_data.synthetic import make_sample
from unet_train.callbacks import AtomicCheckpointIO
from unet_train.data import FolderDataModule
from unet_train.system import SegmentationSystem

REPO = Path(__file__).resolve().parents[1]
SIZES = {"train": [(48, 48)] * 4, "val": [(40, 52), (44, 36)], "test": [(36, 44)]}


def _evaluate_module():
    spec = importlib.util.spec_from_file_location("evaluate", REPO / "benchmarks" / "evaluate.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    """A run folder as ``train.py`` leaves it: ``config.yaml`` and ``checkpoints/best.ckpt``."""
    root = tmp_path_factory.mktemp("evaluate")
    start = 0
    for split, sizes in SIZES.items():
        for sub in ("images", "masks"):
            (root / "data" / split / sub).mkdir(parents=True)
        for i, size in enumerate(sizes, start):
            image, mask = make_sample(i, size, 3, 3, seed=2)
            pixels = np.moveaxis((image * 255).round().astype(np.uint8), 0, -1)
            Image.fromarray(pixels).save(root / "data" / split / "images" / f"{split}{i}.png")
            Image.fromarray(mask.astype(np.uint8)).save(root / "data" / split / "masks" / f"{split}{i}.png")  # fmt: skip
        start += len(sizes)
    data_args = {"root": str(root / "data"), "num_classes": 3, "mask_encoding": "index",
                 "crop_size": 32, "batch_size": 4, "val_batch_size": 1}  # fmt: skip
    run = root / "run"
    (run / "checkpoints").mkdir(parents=True)
    config = {"data": {"class_path": "unet_train.data.FolderDataModule", "init_args": data_args}}
    (run / "config.yaml").write_text(yaml.safe_dump(config))
    L.seed_everything(0, verbose=False)
    system = SegmentationSystem(
        preset="modern-small", spec={"depth": 2, "base_filters": 8}, num_classes=3,
        optimizer=partial(torch.optim.AdamW, lr=1e-2, weight_decay=1e-4), scheduler=None,
    )  # fmt: skip
    ckpt = ModelCheckpoint(
        dirpath=run / "checkpoints", filename="best", monitor="val/dice", mode="max"
    )
    last = ModelCheckpoint(dirpath=run / "checkpoints", filename="last", monitor=None)
    # One step an epoch (4 images, batch 4): validating every 4th epoch leaves the best checkpoint
    # picked among 4 validations, not 16, and the tests score whichever it is.
    trainer = L.Trainer(
        accelerator="cpu", devices=1, logger=False, callbacks=[ckpt, last], max_steps=16,
        enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
        check_val_every_n_epoch=4, plugins=[AtomicCheckpointIO()], default_root_dir=root,
    )  # fmt: skip
    trainer.fit(system, datamodule=FolderDataModule(**data_args))
    assert (run / "checkpoints" / "best.ckpt").is_file()
    return run


@pytest.mark.parametrize("split", ["val", "test"])
def test_lightning_scores_agree_with_unet_predict(run, split):
    evaluate = _evaluate_module()
    scores = evaluate.evaluate(run, tta="hflip", split=split)
    plain = scores["plain"]
    assert len(plain["dice"]) == len(plain["iou"]) == 3
    assert plain["mean_iou"] == pytest.approx(np.mean(plain["iou"]), abs=1e-4)
    assert plain["mean_dice_fg"] == pytest.approx(np.mean(plain["dice"][1:]), abs=1e-4)
    assert 0 <= plain["pixel_error"] < 1 and set(scores) == {"plain", "tta", "global_step"}
    assert max(plain["iou"]) > 0, "no class found at all: the comparison would be empty"
    predicted = evaluate.evaluate_predict(run, "torch", split)
    assert (run / f"predict-{split}-torch").is_dir()
    assert abs(predicted["mean_iou"] - plain["mean_iou"]) <= 0.002
    assert predicted["dice"] == pytest.approx(plain["dice"], abs=0.01)


def test_the_last_checkpoint_is_scored_too(run):
    evaluate = _evaluate_module()
    last = evaluate.evaluate(run, tta=False, split="val", checkpoint="last")
    assert last["global_step"] == 16 and set(last) == {"plain", "global_step"}
    assert 0 <= last["plain"]["pixel_error"] < 1
