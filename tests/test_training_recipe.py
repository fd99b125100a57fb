"""The training recipe on Lightning's terms: the optimiser and schedule as injected callables, the
warm-up + cosine schedule, and the TTA views a run records with its weights."""

from __future__ import annotations

import math
from functools import partial

import lightning as L
import pytest
import torch
from lightning.pytorch.cli import instantiate_module

from unet_train.data import SyntheticDataModule
from unet_train.datasets import Augmentation
from unet_train.schedules import WarmupCosine
from unet_train.system import SegmentationSystem

SMALL = {"preset": "modern-small", "spec": {"depth": 2, "base_filters": 4}, "num_classes": 3}


def _fit(system: SegmentationSystem, tmp_path, augment: Augmentation | None = None) -> L.Trainer:
    data = SyntheticDataModule(num_train=4, num_val=2, image_size=32, num_classes=3, crop_size=32,
                               batch_size=2, val_batch_size=2, augment=augment)  # fmt: skip
    trainer = L.Trainer(
        default_root_dir=tmp_path, accelerator="cpu", devices=1, max_epochs=2, logger=False,
        enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
    )  # fmt: skip
    trainer.fit(system, datamodule=data)
    return trainer


@pytest.mark.parametrize(("total", "fraction"), [(10, 0.2), (120, 0.05), (7, 0.0), (1000, 0.03)])
def test_warmup_cosine_is_linear_then_half_cosine(total, fraction):
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
    (factor,) = WarmupCosine(opt, total, fraction).lr_lambdas
    warmup = max(1, int(fraction * total))
    for step in range(total + 2):
        if step < warmup:
            expected = (step + 1) / warmup
        else:
            done = min(1.0, (step - warmup) / max(1, total - warmup))
            expected = 0.5 * (1.0 + math.cos(math.pi * done))
        assert factor(step) == expected
    assert factor(warmup - 1) == 1.0 and factor(total) == 0.0
    with pytest.raises(ValueError, match="total_steps >= 1"):
        WarmupCosine(opt, None)
    with pytest.raises(ValueError, match="warmup_fraction must be in"):
        WarmupCosine(opt, 10, 1.0)


def test_a_schedule_that_takes_total_steps_is_sized_by_the_run_and_stepped_per_batch(tmp_path):
    system = SegmentationSystem(**SMALL, optimizer=partial(torch.optim.SGD, lr=0.1))
    trainer = _fit(system, tmp_path)
    (config,) = trainer.lr_scheduler_configs
    assert config.interval == "step" and isinstance(config.scheduler, WarmupCosine)
    assert config.scheduler.total_steps == trainer.estimated_stepping_batches == 4
    # The last step's rate is the cosine's end, one step short of zero.
    assert trainer.optimizers[0].param_groups[0]["lr"] == pytest.approx(0.0, abs=1e-12)


def test_any_other_schedule_steps_per_epoch(tmp_path):
    step_lr = partial(torch.optim.lr_scheduler.StepLR, step_size=1, gamma=0.5)
    system = SegmentationSystem(**SMALL, optimizer=partial(torch.optim.SGD, lr=0.1),
                                scheduler=step_lr)  # fmt: skip
    trainer = _fit(system, tmp_path)
    (config,) = trainer.lr_scheduler_configs
    assert config.interval == "epoch"
    assert trainer.optimizers[0].param_groups[0]["lr"] == pytest.approx(0.1 * 0.5**2)


def test_a_config_names_the_classes_and_a_checkpoint_stays_plain(tmp_path):
    model = {**SMALL, "optimizer": {"class_path": "torch.optim.SGD",
                                    "init_args": {"lr": 0.05, "momentum": 0.9, "nesterov": True}},
             "scheduler": None}  # fmt: skip
    system = instantiate_module(SegmentationSystem, model)  # how LightningCLI builds it
    trainer = _fit(system, tmp_path)
    (opt,) = trainer.optimizers
    assert isinstance(opt, torch.optim.SGD) and opt.defaults["nesterov"]
    assert opt.param_groups[0]["lr"] == 0.05 and not trainer.lr_scheduler_configs
    path = tmp_path / "system.ckpt"
    trainer.save_checkpoint(path)
    # Callables given in Python are code: left out, so the checkpoint loads with weights_only.
    hparams = torch.load(path, map_location="cpu", weights_only=True)["hyper_parameters"]
    assert "optimizer" not in hparams and hparams["spec"] == system.spec.to_dict()


@pytest.mark.parametrize(
    ("flips", "rot90", "mode"),
    [(True, True, "d4"), (True, False, "flips"), ("horizontal", False, "hflip"),
     ("horizontal", True, "d4"), ("vertical", True, "d4"), (False, False, "none"),
     (False, True, "none"), ("vertical", False, "none")],
)  # fmt: skip
def test_the_augmentation_names_the_views_it_draws(flips, rot90, mode):
    # Quarter turns alone or vertical flips alone are no mode of the vocabulary: no TTA for them.
    assert Augmentation(flips=flips, rot90=rot90).symmetries() == mode


def test_fit_records_the_trained_views_and_tta_true_uses_them(tmp_path):
    system = SegmentationSystem(**SMALL)
    assert system.views(True) == "d4"  # nothing recorded: all eight views, as before
    _fit(system, tmp_path, Augmentation(flips="horizontal", rot90=False))
    assert system.hparams["symmetries"] == "hflip" and system.views(True) == "hflip"
    assert system.views("d4") == "d4" and system.views(False) is None
    path = tmp_path / "hflip.ckpt"
    system.trainer.save_checkpoint(path)
    restored = SegmentationSystem.load_from_checkpoint(path, map_location="cpu").eval()
    assert restored.views(True) == "hflip"
    x = torch.rand(1, 3, 20, 28)
    torch.testing.assert_close(restored.predict_probs(x, tta=True),
                               restored.predict_probs(x, tta="hflip"))  # fmt: skip
    untrained = SegmentationSystem(**SMALL, symmetries="none").eval()
    torch.testing.assert_close(untrained.predict_probs(x, tta=True), untrained.predict_probs(x))


@pytest.mark.parametrize(("recorded", "views"), [("hflip", "hflip"), ("none", False), (None, True)])
def test_unet_predict_tta_defaults_to_the_views_of_the_training_run(tmp_path, recorded, views):
    import json

    from unet_bridge import trained_views

    run = tmp_path / "version_0"
    (run / "checkpoints").mkdir(parents=True)
    (run / "metrics.json").write_text(json.dumps({"tta_views": recorded}))
    # The canonical file beside metrics.json, and a checkpoint one folder down.
    assert trained_views(run / "model.safetensors") == views
    assert trained_views(run / "checkpoints" / "best.ckpt") == views
    assert trained_views(tmp_path / "elsewhere.safetensors") is True  # no run: all 8 views


def test_samples_in_memory_answer_as_files_do(tmp_path):
    import numpy as np
    from PIL import Image

    from unet_data import IGNORE_INDEX, FileSamples, as_samples, expand_pairs

    masks = [np.array([[0, 2], [2, IGNORE_INDEX]]), np.zeros((3, 2), np.int64)]
    pairs = []
    for i, mask in enumerate(masks):
        image, target = tmp_path / f"i{i}.png", tmp_path / f"m{i}.png"
        Image.fromarray(np.zeros((*mask.shape, 3), np.uint8)).save(image)
        Image.fromarray(mask.astype(np.uint8)).save(target)
        pairs.append((image, target))
    refs, sizes = expand_pairs(pairs)
    options = {"num_classes": 3, "encoding": "index", "ignore_value": IGNORE_INDEX}
    files = FileSamples(refs, sizes, 3, options)
    memory = as_samples([files[i] for i in range(len(files))], num_classes=3)
    assert as_samples(files) is files and as_samples(memory) is memory
    assert memory.names == files.names and (memory.sizes == files.sizes).all()
    np.testing.assert_array_equal(memory.class_counts(), files.class_counts())
    np.testing.assert_array_equal(memory.presence(), [[True, False, True], [True, False, False]])
    # Without a class count: up to the highest label present.
    assert as_samples(list(memory)).presence().shape == (2, 3)
