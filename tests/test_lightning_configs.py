"""Every config shows early stopping, commented out, watching what its checkpoint watches, keeps
freed memory the Lightning way (a callback), as a user's own Trainer would, and writes its
settings with the current keys and class paths (:mod:`unet_train.settings`)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from lightning.pytorch.callbacks import EarlyStopping

CONFIGS = sorted((Path(__file__).resolve().parents[1] / "configs").glob("*.yaml"))
BLOCK = re.compile(
    r"^\s*#\s*- class_path: lightning\.pytorch\.callbacks\.EarlyStopping\n"
    r"\s*#\s*init_args: (\{.*\})$",
    re.MULTILINE,
)


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_commented_early_stopping_matches_the_checkpoint(path):
    text = path.read_text()
    config = yaml.safe_load(text)
    (found,) = BLOCK.findall(text)
    args = yaml.safe_load(found)
    checkpoint = config.get("checkpoint") or {}
    # train.py's checkpoint defaults: the mean Dice, higher is better.
    expected = (checkpoint.get("monitor", "val/dice"), checkpoint.get("mode", "max"))
    assert (args["monitor"], args["mode"]) == expected
    assert EarlyStopping(**args).patience == args["patience"] > 0
    # Commented out: the active callbacks hold no early stopping.
    callbacks = (config.get("trainer") or {}).get("callbacks") or []
    assert all("EarlyStopping" not in c["class_path"] for c in callbacks)
    assert "unet_train.process.KeepFreedMemory" in [c["class_path"] for c in callbacks]


def test_every_config_is_checked():
    assert {p.stem for p in CONFIGS} >= {"demo", "camvid", "isbi2012", "seed"}


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_configs_use_the_current_keys_and_class_paths(path):
    from unet_train.settings import move_config

    config = yaml.safe_load(path.read_text())
    assert move_config(config) is config  # no flat key that moved, no unet_train.data.* path
    assert config["data"]["class_path"].split(".")[1] in ("folder", "synthetic", "streaming")
