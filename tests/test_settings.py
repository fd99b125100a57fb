"""Settings as values: the system's loss and inference and the data modules' mask fields are
groups of keys (``model.loss.name``, ``model.inference.tta``, ``data.init_args.masks.encoding``),
and configs name each data module where it lives. What older versions wrote (flat keys in a
config, on a command line, in a checkpoint, in a call; ``unet_train.data.*`` class paths) still
loads, each move said in one line, once."""

from __future__ import annotations

import importlib
from pathlib import Path

import lightning as L
import pytest
import torch
import yaml

from unet_train import settings
from unet_train.data import FolderDataModule
from unet_train.mask_fields import MaskFields
from unet_train.settings import DATA_CLASS_PATHS, InferenceSettings, LossSettings
from unet_train.system import SegmentationSystem

REPO = Path(__file__).resolve().parents[1]

OLD = """
model:
  preset: modern-small
  loss: dice
  dice_weight: 2.0
  class_weighting: median_frequency
  tile: 64
  tta: hflip
data:
  class_path: unet_train.data.FolderDataModule
  init_args:
    root: data
    mask_encoding: palette
    value_map: {1: 0, 2: 1}
    ignore_value: 255
    palette: [[0, 0, 0], [255, 255, 255]]
"""
NEW = """
model:
  preset: modern-small
  loss: {name: dice, dice_weight: 2.0, class_weighting: median_frequency}
  inference: {tile: 64, tta: hflip}
data:
  class_path: unet_train.folder.FolderDataModule
  init_args:
    root: data
    masks:
      encoding: palette
      value_map: {1: 0, 2: 1}
      ignore_value: 255
      palette: [[0, 0, 0], [255, 255, 255]]
"""
MOVED = {
    "model.loss: dice", "model.dice_weight", "model.class_weighting", "model.tile", "model.tta",
    "data.class_path unet_train.data.FolderDataModule", "data.mask_encoding", "data.value_map",
    "data.ignore_value", "data.palette",
}  # fmt: skip


@pytest.fixture(autouse=True)
def fresh_notes(monkeypatch):
    """Each test starts as a fresh process does: no move said yet."""
    monkeypatch.setattr(settings, "_noted", set())


def _config(run_train, tmp_path: Path, text: str, *args: str) -> tuple[dict, list[str]]:
    """The config ``fit --config TEXT ARGS`` resolves to (``--print_config``: what a run saves as
    its ``config.yaml``), and the notes it printed."""
    path = tmp_path / f"config-{abs(hash(text))}.yaml"
    path.write_text(text)
    proc = run_train(tmp_path, "fit", "--config", str(path), *args, "--print_config")
    assert proc.returncode == 0, proc.stderr[-3000:]
    notes = [line for line in proc.stderr.splitlines() if line.startswith("note: ")]
    return yaml.safe_load(proc.stdout), notes


def test_an_old_config_loads_as_the_new_one_saying_each_move_once(run_train, tmp_path):
    old, notes = _config(run_train, tmp_path, OLD)
    new, quiet = _config(run_train, tmp_path, NEW)
    assert old == new and not quiet
    # A run saves the data module's real class path, whichever path its config gave.
    assert new["data"]["class_path"] == "unet_train.folder.FolderDataModule"
    assert new["model"]["loss"] == {"name": "dice", "dice_weight": 2.0, "class_weights": None,
                                    "class_weighting": "median_frequency"}  # fmt: skip
    assert new["model"]["inference"] == {"tile": 64, "tta": "hflip"}
    masks = new["data"]["init_args"]["masks"]
    assert (masks["encoding"], masks["ignore_value"], len(masks["value_map"])) == (
        "palette",
        255,
        2,
    )
    assert {n.removeprefix("note: ").split(" is now ")[0] for n in notes} == MOVED
    assert len(notes) == len(MOVED) and all(n.endswith("the old form still loads") for n in notes)
    again, twice = _config(run_train, tmp_path, OLD)
    assert again == new and not twice  # once per process
    for old_path, real in DATA_CLASS_PATHS.items():  # the old paths name the same classes
        assert _resolve(old_path) is _resolve(real) and _resolve(real).__module__ in real


def _resolve(path: str) -> type:
    module, _, name = path.rpartition(".")
    return getattr(importlib.import_module(module), name)


def test_old_command_line_keys_reach_their_groups(run_train, tmp_path):
    config, notes = _config(
        run_train,
        tmp_path, NEW, "--model.loss", "bce", "--model.tta=true", "--model.tile", "32",
        "--data.init_args.ignore_value", "7", "--data.mask_encoding", "binary",
    )  # fmt: skip
    assert config["model"]["loss"]["name"] == "bce"
    assert config["model"]["inference"] == {"tile": 32, "tta": True}
    masks = config["data"]["init_args"]["masks"]
    assert (masks["encoding"], masks["ignore_value"]) == ("binary", 7)
    assert len(notes) == 5


def test_a_checkpoint_of_an_old_run_validates(run_train, tmp_path):
    """``train.py validate --ckpt_path`` reads the checkpoint's hyper-parameters into the config
    (LightningCLI does), and ``load_from_checkpoint`` rebuilds the system from them: those of a
    run written before the groups carry the flat keys."""
    spec = {"depth": 2, "base_filters": 4}
    system = SegmentationSystem(preset="modern-small", spec=spec, num_classes=5)
    hparams = {
        "preset": "modern-small", "spec": system.spec.to_dict(), "in_channels": None,
        "num_classes": 5, "loss": "ce", "dice_weight": 1.0, "class_weights": None,
        "class_weighting": "none", "tile": None, "tta": "hflip", "symmetries": "d4",
        "_instantiator": "lightning.pytorch.cli.instantiate_module",
    }  # fmt: skip
    ckpt = tmp_path / "old.ckpt"
    torch.save({"state_dict": system.state_dict(), "hyper_parameters": hparams, "epoch": 0,
                "global_step": 0, "pytorch-lightning_version": L.__version__}, ckpt)  # fmt: skip
    tiny = ["--data.init_args.num_train", "2", "--data.init_args.num_val", "2",
            "--data.init_args.image_size", "32", "--data.init_args.crop_size", "32",
            "--trainer.limit_val_batches", "1", "--trainer.enable_progress_bar", "false",
            "--trainer.logger", "false"]  # fmt: skip
    proc = run_train(tmp_path, "validate", "--config", str(REPO / "configs/demo.yaml"), *tiny,
                     "--ckpt_path", str(ckpt))  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "val/dice" in proc.stdout
    lines = proc.stderr.splitlines()
    notes = {line.split(" is now ")[0] for line in lines if line.startswith("note: ")}
    assert {"note: model.loss: ce", "note: model.tta", "note: model.dice_weight"} <= notes
    # In Python too (Lightning rebuilds a train.py run's system through jsonargparse), with an
    # override by its old key merged into the stored group.
    restored = SegmentationSystem.load_from_checkpoint(ckpt, tile=48)
    assert restored.loss_settings.name == "ce"
    assert restored.inference == InferenceSettings(48, "hflip")
    torch.testing.assert_close(restored.state_dict(), system.state_dict())


def test_old_keyword_arguments_are_moved_and_others_refused():
    small = {"preset": "modern-small", "spec": {"depth": 2, "base_filters": 4}, "num_classes": 3}
    system = SegmentationSystem(**small, loss="dice", dice_weight=2.0, tta="hflip", tile=64)
    assert system.loss_settings == LossSettings("dice", 2.0)
    assert system.inference == InferenceSettings(64, "hflip")
    # Checkpoints hold the groups as plain mappings, and nothing under the old keys.
    assert system.hparams["loss"]["name"] == "dice" and system.hparams["inference"]["tile"] == 64
    assert not {"dice_weight", "tta", "tile"} & set(system.hparams)
    assert (
        SegmentationSystem(**small, loss=dict(system.hparams["loss"])).loss_settings.name == "dice"
    )
    with pytest.raises(TypeError, match="unexpected keyword argument 'tiles'"):
        SegmentationSystem(**small, tiles=64)
    with pytest.raises(ValueError, match="class_weights or model.loss.class_weighting"):
        LossSettings(class_weights=[1.0, 2.0], class_weighting="median_frequency")
    data = FolderDataModule("data", mask_encoding="index", ignore_value=3)
    assert data.masks == MaskFields("index", None, 3, None)
    assert FolderDataModule("data", masks={"encoding": "binary"}).masks == MaskFields("binary")
