"""Training: every preset family runs, checkpoints rebuild their model, exact resume, failure modes,
atomic checkpoints through the public ``CheckpointIO`` plugin interface."""

from __future__ import annotations

import hashlib
from pathlib import Path

import lightning as L
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.plugins.io import TorchCheckpointIO

from unet_spec import get_preset
from unet_train.callbacks import AtomicCheckpointIO, FiniteLossGuard, NonFiniteLossError
from unet_train.data import SyntheticDataModule
from unet_train.system import SegmentationSystem

# Tiny runs: (preset, crop size, image size). Valid-padding presets need their smallest valid crop.
FAMILIES = {
    "seed-small": (188, 40),
    "paper-small": (188, 40),
    "modern-small": (32, 32),
    "modern-bilinear-small": (32, 32),
}


def _data(
    crop: int = 32, image: int = 32, channels_follow_model: bool = True, **kw
) -> SyntheticDataModule:
    kw = {"num_train": 4, "num_val": 2, "image_size": image, "num_classes": 3, "crop_size": crop,
          "batch_size": 2, "val_batch_size": 2, **kw}  # fmt: skip
    return SyntheticDataModule(**kw)


def _trainer(tmp_path: Path, **kw) -> L.Trainer:
    callbacks = kw.pop("callbacks", [])
    args = {
        "default_root_dir": tmp_path, "accelerator": "cpu", "devices": 1, "logger": False,
        "enable_progress_bar": False, "enable_model_summary": False, "num_sanity_val_steps": 0,
        "plugins": [AtomicCheckpointIO()], **kw,
    }  # fmt: skip
    return L.Trainer(callbacks=[FiniteLossGuard(), *callbacks], **args)


@pytest.mark.parametrize("preset", sorted(FAMILIES))
def test_fast_dev_run_each_preset(tmp_path, preset):
    crop, image = FAMILIES[preset]
    system = SegmentationSystem(preset=preset, num_classes=3)
    trainer = _trainer(tmp_path, fast_dev_run=True)
    trainer.fit(system, datamodule=_data(crop, image))
    assert trainer.global_step == 1
    assert 0.0 <= system.last_val["val/pixel_error"] <= 1.0
    assert "val/dice_2" in system.last_val
    # The foreground mean leaves class 0 out.
    fg = (system.last_val["val/dice_1"] + system.last_val["val/dice_2"]) / 2
    assert system.last_val["val/dice_fg"] == pytest.approx(fg)


def _fit(tmp_path: Path, max_epochs: int, ckpt_path: str | None = None, **kw) -> tuple:
    L.seed_everything(0, verbose=False)
    system = SegmentationSystem(preset="modern-small", spec={"depth": 2}, num_classes=3, **kw)
    ckpt = ModelCheckpoint(
        dirpath=tmp_path / "ckpt", monitor="val/dice", mode="max", filename="best", save_last=True
    )
    trainer = _trainer(tmp_path, max_epochs=max_epochs, callbacks=[ckpt], limit_train_batches=2)
    trainer.fit(system, datamodule=_data(), ckpt_path=ckpt_path)
    return system, trainer, ckpt


def test_checkpoint_is_plain_and_rebuilds_its_model(tmp_path):
    system, _, ckpt = _fit(tmp_path, 1, class_weights=[1.0, 2.0, 2.0])
    raw = torch.load(ckpt.last_model_path, map_location="cpu", weights_only=True)
    assert raw["hyper_parameters"]["spec"] == system.spec.to_dict()
    assert all(
        k.startswith(("model.", "val_metrics.", "test_metrics.", "loss_fn."))
        for k in raw["state_dict"]
    )
    assert "model.enc1.conv1.weight" in raw["state_dict"]
    restored = SegmentationSystem.load_from_checkpoint(ckpt.last_model_path, map_location="cpu")
    assert restored.spec == system.spec
    x = torch.rand(1, 3, 32, 32)
    system.eval()
    restored.eval()
    torch.testing.assert_close(restored(x), system(x))
    # Written through the plugin's temporary file, which is gone once renamed into place.
    assert sorted(p.name for p in (tmp_path / "ckpt").iterdir()) == ["best.ckpt", "last.ckpt"]


def test_resume_reaches_the_same_epoch_and_step(tmp_path):
    _, straight, _ = _fit(tmp_path / "a", 3)
    _, first, ckpt = _fit(tmp_path / "b", 2)
    _, resumed, _ = _fit(tmp_path / "b", 3, ckpt_path=ckpt.last_model_path)
    assert (resumed.current_epoch, resumed.global_step) == (
        straight.current_epoch,
        straight.global_step,
    )
    assert resumed.global_step > first.global_step
    # The scheduler continued rather than restarted (warm-up happens once).
    opt_state = resumed.optimizers[0].state_dict()["state"]
    assert int(next(iter(opt_state.values()))["step"]) == resumed.global_step


class _PoisonLoss(L.Callback):
    """Makes the loss NaN from the first step of epoch ``epoch``."""

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def on_train_epoch_start(self, trainer, pl_module):
        if trainer.current_epoch >= self.epoch:
            original = pl_module.loss_fn.forward
            pl_module.loss_fn.forward = lambda *a: original(*a) * float("nan")


def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path):
    _, _, ckpt = _fit(tmp_path, 1)
    last = Path(ckpt.last_model_path)
    digest = hashlib.sha256(last.read_bytes()).hexdigest()
    L.seed_everything(0, verbose=False)
    system = SegmentationSystem(preset="modern-small", spec={"depth": 2}, num_classes=3)
    before = {k: v.clone() for k, v in system.state_dict().items()}
    trainer = _trainer(
        tmp_path, max_epochs=3, limit_train_batches=2,
        callbacks=[ModelCheckpoint(dirpath=tmp_path / "ckpt", save_last=True), _PoisonLoss(1)],
    )  # fmt: skip
    with pytest.raises(NonFiniteLossError, match=r"training loss is nan at epoch 1"):
        trainer.fit(system, datamodule=_data(), ckpt_path=str(last))
    assert hashlib.sha256(last.read_bytes()).hexdigest() == digest
    state = torch.load(last, map_location="cpu", weights_only=True)["state_dict"]
    assert all(torch.isfinite(v).all() for v in state.values() if v.is_floating_point())
    assert set(before) <= set(system.state_dict())


def test_interrupted_checkpoint_write_leaves_the_old_file(tmp_path, monkeypatch):
    _, trainer, ckpt = _fit(tmp_path, 1)
    assert isinstance(trainer.strategy.checkpoint_io, AtomicCheckpointIO)
    last = Path(ckpt.last_model_path)
    digest = hashlib.sha256(last.read_bytes()).hexdigest()
    written = []

    def dies_halfway(self, checkpoint, path, storage_options=None):
        written.append(Path(path))
        Path(path).write_bytes(b"half a checkpoint")
        raise KeyboardInterrupt

    # The torch writer underneath the plugin dies after writing half a file.
    monkeypatch.setattr(TorchCheckpointIO, "save_checkpoint", dies_halfway)
    with pytest.raises(KeyboardInterrupt):
        trainer.save_checkpoint(last)
    assert written and written[0] != last and written[0].parent == last.parent
    assert hashlib.sha256(last.read_bytes()).hexdigest() == digest
    assert sorted(p.name for p in last.parent.iterdir()) == ["best.ckpt", "last.ckpt"]


def test_class_count_mismatch_is_named(tmp_path):
    system = SegmentationSystem(preset="modern-small", num_classes=2)
    with pytest.raises(ValueError, match="the data has 3 classes but the model has num_classes=2"):
        _trainer(tmp_path, fast_dev_run=True).fit(system, datamodule=_data())


def test_spec_overrides_and_bad_settings():
    system = SegmentationSystem(
        preset="paper-small", spec={"depth": 3}, in_channels=3, num_classes=4
    )
    assert (system.spec.depth, system.spec.in_channels, system.spec.num_classes) == (3, 3, 4)
    assert (
        system.hparams["spec"]
        == get_preset("paper-small").replace(depth=3, in_channels=3, num_classes=4).to_dict()
    )
    with pytest.raises(ValueError, match="unknown preset 'nope'"):
        SegmentationSystem(preset="nope")
    with pytest.raises(ValueError, match="no field.*'width'"):
        SegmentationSystem(spec={"width": 3})
    with pytest.raises(ValueError, match="UNetSpec.depth"):
        SegmentationSystem(spec={"depth": 0})


def test_tta_matches_plain_prediction_shape_and_is_a_distribution():
    system = SegmentationSystem(preset="modern-small", spec={"depth": 2}, num_classes=3).eval()
    x = torch.rand(1, 3, 20, 28)
    probs = system.predict_probs(x, tta=True)
    assert probs.shape == (1, 3, 20, 28)
    torch.testing.assert_close(probs.sum(1), torch.ones(1, 20, 28))


def test_hflip_tta_averages_the_image_and_its_mirror():
    system = SegmentationSystem(preset="modern-small", spec={"depth": 2}, num_classes=3).eval()
    x = torch.rand(1, 3, 20, 28)
    plain = system.predict_probs(x)
    mirrored = system.predict_probs(x.flip(-1)).flip(-1)
    torch.testing.assert_close(system.predict_probs(x, tta="hflip"), (plain + mirrored) / 2)


def test_d4_tta_is_the_mean_over_the_eight_views():
    system = SegmentationSystem(preset="modern-small", spec={"depth": 2}, num_classes=3).eval()
    x = torch.rand(1, 3, 20, 28)
    views = []
    for k in range(4):  # rotate then mirror; undo in reverse order
        for flip in (False, True):
            v = torch.rot90(x, k, (-2, -1))
            p = system.predict_probs(v.flip(-1) if flip else v)
            views.append(torch.rot90(p.flip(-1) if flip else p, -k, (-2, -1)))
    torch.testing.assert_close(system.predict_probs(x, tta=True), torch.stack(views).mean(0))


def test_recompute_reaches_the_model():
    system = SegmentationSystem(preset="modern-small", num_classes=3, recompute=["enc1", "dec1"])
    assert system.model.recompute == ("enc1", "dec1")
    with pytest.raises(ValueError, match="recompute: unknown plan level"):
        SegmentationSystem(preset="modern-small", recompute=["encoder"])
