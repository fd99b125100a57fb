"""The training command line: LightningCLI over :class:`~unet_train.system.SegmentationSystem`.

``train.py`` at the repository root calls :func:`main`; see its docstring for examples.
"""

from __future__ import annotations

import itertools
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from lightning.fabric.utilities.exceptions import MisconfigurationException
from lightning.pytorch.cli import LightningCLI

from unet_train.callbacks import (
    AtomicModelCheckpoint,
    FiniteLossGuard,
    NonFiniteLossError,
    ParityError,
    RunArtifacts,
)
from unet_train.data import SegmentationDataModule
from unet_train.system import SegmentationSystem


class TrainCLI(LightningCLI):
    """LightningCLI with the project's callbacks always present and ``num_classes`` linked."""

    def add_arguments_to_parser(self, parser) -> None:
        parser.add_lightning_class_args(AtomicModelCheckpoint, "checkpoint")
        parser.set_defaults(
            {
                "checkpoint.monitor": "val/dice",
                "checkpoint.mode": "max",
                "checkpoint.filename": "best",
                "checkpoint.auto_insert_metric_name": False,
                "checkpoint.save_last": True,
            }
        )
        parser.add_lightning_class_args(RunArtifacts, "artifacts")
        parser.add_lightning_class_args(FiniteLossGuard, "loss_guard")
        # The classes are a property of the data; the model follows.
        parser.link_arguments("data.num_classes", "model.num_classes", apply_on="instantiate")

    def before_instantiate_classes(self) -> None:
        # Without a logger, Lightning writes the checkpoints and the config straight into
        # ``default_root_dir`` (and so would the artifacts): the next run would overwrite them.
        # Give such a run its own ``version_<n>`` folder, as the loggers do.
        config = self.config[self.subcommand] if self.subcommand else self.config
        trainer = config["trainer"]
        if trainer.get("logger") is False:
            root = Path(trainer.get("default_root_dir") or "runs")
            n = next(i for i in itertools.count() if not (root / f"version_{i}").exists())
            trainer["default_root_dir"] = str(root / f"version_{n}")

    def before_fit(self) -> None:
        # CSV and TensorBoard loggers pick their version independently; share one run folder.
        loggers = self.trainer.loggers
        if len(loggers) > 1 and all(hasattr(lg, "_version") for lg in loggers):
            version = loggers[0].version
            for lg in loggers[1:]:
                lg._version = version


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; returns the exit status (2 for bad input or a failed run)."""
    try:
        TrainCLI(
            SegmentationSystem,
            SegmentationDataModule,
            subclass_mode_data=True,
            args=argv,
            save_config_kwargs={"overwrite": True},
            trainer_defaults={"default_root_dir": "runs"},
        )
    except (
        ValueError,
        FileNotFoundError,
        NonFiniteLossError,
        ParityError,
        MisconfigurationException,
    ) as err:
        message = " ".join(str(err).split("\n")).strip()
        print(f"error: {message}", file=sys.stderr)
        return 2
    return 0
