"""The training command line: LightningCLI over :class:`~unet_train.system.SegmentationSystem`.

``train.py`` at the repository root calls :func:`main`; see its docstring for examples.

One run, one folder: the run's folder is its first logger's ``log_dir``,
``<save_dir>/<name>/version_<n>/``, where logs, checkpoints, the config and the artifacts go. The
CSV and TensorBoard loggers each pick the next free version of their folder themselves
(``Logger.version``); the run takes the highest of their picks and gives it to every one of them
as an explicit ``version``, once, before anything is built, so they share it. The run claims that
folder at once with ``mkdir``, which one process only can do (:mod:`unet_train.runs`): a run
started at the same moment takes the next number. A command given a
``--ckpt_path`` inside such a folder (``runs/demo/version_3/checkpoints/last.ckpt``) works in that
folder instead: a resumed ``fit`` continues ``version_3``, and ``validate``, ``test`` and
``predict`` log (and write their masks) beside the run they score. A run without a logger gets a
``version_<n>`` folder of its own under ``default_root_dir``, numbered by the same rule. The rows
of ``metrics.csv`` that are already there are kept (Lightning's CSV logger would start the file
afresh). Every checkpoint is written atomically through
:class:`~unet_train.callbacks.AtomicCheckpointIO`.

Settings that belong together are groups of keys (``model.loss.name``, ``model.inference.tta``,
``data.init_args.masks.encoding``; :mod:`unet_train.settings`). A config, a command line or a
checkpoint written with the flat keys of older versions is read through
:class:`~unet_train.settings.SettingsParser`, which moves each such key into its group and says so
in one line, once.

A logger ``name`` holding ``{root}`` is given the data folder's name (``configs/folder.yaml`` files
its runs under ``runs/<folder>/``). What the data measures (``in_channels``, ``num_classes``) is
linked to the model. A run that fails before its first checkpoint (a data check, a bad option)
removes the folder it created, so the next run takes its number. The saved ``config.yaml`` quotes
every string that the config reader would take for a number (a group name such as ``0016E5``), so
it loads again.
"""

from __future__ import annotations

import contextlib
import csv
import importlib
import os
import re
import shutil
import sys
import warnings
from pathlib import Path
from typing import Any

from lightning.fabric.utilities.exceptions import MisconfigurationException
from lightning.pytorch import Trainer
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.cli import LightningCLI, SaveConfigCallback
from lightning.pytorch.loggers import CSVLogger, Logger, TensorBoardLogger
from lightning.pytorch.plugins.io import CheckpointIO
from lightning.pytorch.utilities import rank_zero_info

from unet_train.callbacks import (
    AtomicCheckpointIO,
    FiniteLossGuard,
    MaskWriter,
    NonFiniteLossError,
    ParityError,
    RunArtifacts,
)
from unet_train.data import SegmentationDataModule
from unet_train.runs import claim_version
from unet_train.settings import SettingsParser
from unet_train.system import SegmentationSystem

#: Loggers whose ``version`` argument names a ``version_<n>`` folder under ``save_dir/name``.
VERSIONED_LOGGERS = (CSVLogger, TensorBoardLogger)


def shared_version(loggers: list[Logger], resumed: Path | None = None) -> int | str:
    """The version every one of ``loggers`` is given, so that they share one run folder.

    Args:
        loggers: The run's loggers, built without a version: each one's ``version`` is then the
            next free one in its own folder.
        resumed: The run folder of the checkpoint the command starts from, if any.

    Returns:
        The checkpoint's folder name when it lies in the first logger's folder (where the
        checkpoints go, Lightning's rule), as a string version names that folder itself; else the
        highest of the loggers' own versions, free in every folder.
    """
    if resumed is not None and Path(loggers[0].root_dir).resolve() == resumed.parent:
        return resumed.name
    return max(logger.version for logger in loggers)


def checkpoint_run(ckpt_path: Any) -> Path | None:
    """The run folder of a checkpoint file stored as ``<run>/checkpoints/<file>.ckpt``."""
    if not isinstance(ckpt_path, str | os.PathLike) or not Path(ckpt_path).is_file():
        return None  # also "last", "best" and "hpc", which Lightning resolves itself
    folder = Path(ckpt_path).resolve().parent
    return folder.parent if folder.name == "checkpoints" else None


def start_from_checkpoint(config: Any) -> None:
    """Build a fine-tuned run's model from its checkpoint's spec, not from ``model.init_from``.

    A command given a checkpoint of a fine-tuned run (``fit`` resuming it, ``validate``, ``test``,
    ``predict`` with its ``config.yaml``) loads the checkpoint's weights over whatever the model
    starts with; the checkpoint also holds the run's resolved spec (``spec``) and its base model's
    provenance (restored by the system), so the base model is not read, nor proven, again and
    need not be at hand.
    """
    model = config.get("model")
    ckpt_path = config.get("ckpt_path")
    if model is None or not model.get("init_from") or checkpoint_file(ckpt_path) is None:
        return
    import torch

    # Memory-mapped: only the hyper-parameters are read, not the weights.
    state = torch.load(ckpt_path, map_location="cpu", weights_only=True, mmap=True)
    spec = (state.get("hyper_parameters") or {}).get("spec")
    if not isinstance(spec, dict):
        return
    rank_zero_info(f"model.init_from {model['init_from']}: not read, the checkpoint holds the "
                   "run's spec and weights")  # fmt: skip
    for key in ("init_from", "init_source_model", "init_source_args", "preset"):
        model[key] = None
    model["spec"] = spec


def checkpoint_file(ckpt_path: Any) -> Path | None:
    """``ckpt_path`` when it names a checkpoint file (not ``last``, ``best`` or ``hpc``)."""
    if isinstance(ckpt_path, str | os.PathLike) and Path(ckpt_path).is_file():
        return Path(ckpt_path)
    return None


def _data_root(data: Any) -> str | None:
    """The name of the data folder (or URL) of a data config, for logger names with ``{root}``."""
    init_args = data.get("init_args") if hasattr(data, "get") else None
    root = init_args.get("root") if hasattr(init_args, "get") else None
    if not root:
        return None
    root = str(root).rstrip("/")
    return root.rsplit("/", 1)[-1] if "://" in root else Path(root).resolve().name


def _logger_class(entry: Any) -> type | None:
    class_path = entry.get("class_path") if hasattr(entry, "get") else None
    if not class_path:
        return None
    module, _, name = class_path.rpartition(".")
    return getattr(importlib.import_module(module), name, None)


def _as_kwargs(init_args: Any) -> dict[str, Any]:
    """A logger's ``init_args`` (a jsonargparse namespace) as keyword arguments."""
    return init_args.as_dict() if hasattr(init_args, "as_dict") else dict(init_args)


class StageConfig(SaveConfigCallback):
    """Saves ``config.yaml`` for ``fit`` and ``config-<stage>.yaml`` for ``validate``, ``test`` and
    ``predict``, which may run in a training run's folder and must not replace its config."""

    def setup(self, trainer: Trainer, pl_module: Any, stage: str) -> None:
        name = str(getattr(stage, "value", stage))  # the trainer passes a ``TrainerFn``
        if name != "fit":
            self.config_filename = f"config-{name}.yaml"
        super().setup(trainer, pl_module, stage)


class TrainCLI(LightningCLI):
    """LightningCLI with the project's callbacks always present and the data's measures linked."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._new_runs: list[Path] = []
        kwargs.setdefault("parser_class", SettingsParser)
        try:
            super().__init__(*args, **kwargs)
        except BaseException:
            self._remove_new_runs()
            raise

    def _remove_new_runs(self) -> None:
        """Remove the run folders this command created, unless a checkpoint made it there."""
        for folder in self._new_runs:
            if folder.is_dir() and not any(folder.rglob("*.ckpt")):
                shutil.rmtree(folder, ignore_errors=True)
                # The run's name folder, when this run made it too and no other run is in it.
                with contextlib.suppress(OSError):
                    folder.parent.rmdir()

    def add_arguments_to_parser(self, parser) -> None:
        parser.add_lightning_class_args(ModelCheckpoint, "checkpoint")
        # ``last.ckpt`` is the end of every epoch, what a resumed run continues from. Lightning's
        # ``save_last`` only copies a checkpoint when the monitored one is saved, so after the
        # best epoch it would go stale; a second, unmonitored checkpoint keeps the latest instead.
        parser.add_lightning_class_args(ModelCheckpoint, "last_checkpoint")
        parser.set_defaults(
            {
                "checkpoint.monitor": "val/dice",
                "checkpoint.mode": "max",
                "checkpoint.filename": "best",
                "checkpoint.auto_insert_metric_name": False,
                "checkpoint.save_last": False,
                "last_checkpoint.monitor": None,
                "last_checkpoint.filename": "last",
                "last_checkpoint.save_top_k": 1,
                "last_checkpoint.save_on_train_epoch_end": True,
                "last_checkpoint.enable_version_counter": False,
            }
        )
        parser.add_lightning_class_args(RunArtifacts, "artifacts")
        parser.add_lightning_class_args(FiniteLossGuard, "loss_guard")
        parser.add_lightning_class_args(MaskWriter, "predict_writer")
        # The channels and the classes are properties of the data (measured when not given);
        # the model follows.
        parser.link_arguments("data.num_classes", "model.num_classes", apply_on="instantiate")
        parser.link_arguments("data.in_channels", "model.in_channels", apply_on="instantiate")

    # -- one folder per run ----------------------------------------------------------------------
    def before_instantiate_classes(self) -> None:
        config = self.config[self.subcommand] if self.subcommand else self.config
        start_from_checkpoint(config)
        trainer = config["trainer"]
        resumed = checkpoint_run(config.get("ckpt_path"))
        logger = trainer.get("logger")
        if logger is False:
            # Without a logger, Lightning writes the checkpoints and the config straight into
            # ``default_root_dir`` (and so would the artifacts): the next run would overwrite them.
            # Give such a run its own ``version_<n>`` folder: the one a CSV logger writing straight
            # into ``default_root_dir`` (no name) would have, or the resumed checkpoint's.
            root = trainer.get("default_root_dir") or "runs"
            version = self._claim([CSVLogger(save_dir=root, name="")], resumed)
            trainer["default_root_dir"] = CSVLogger(save_dir=root, name="", version=version).log_dir
            return
        entries = logger if isinstance(logger, list) else [logger]
        versioned = [
            e
            for e in entries
            if isinstance(_logger_class(e), type)
            and issubclass(_logger_class(e), VERSIONED_LOGGERS)
        ]
        if not versioned:
            return  # Lightning's default logger, or loggers with versions of their own
        data_root = _data_root(config.get("data"))
        for entry in versioned:
            name = entry["init_args"].get("name")
            if isinstance(name, str) and "{root}" in name:
                if data_root is None:
                    raise ValueError(f"logger name {name!r} needs data.root (a data folder)")
                entry["init_args"]["name"] = name.replace("{root}", data_root)
        # Each logger as configured but without a version (building one writes nothing) says
        # which version it would pick on its own; they all get the one shared_version chooses.
        classes = [_logger_class(e) for e in versioned]
        unversioned = [
            cls(**{**_as_kwargs(e["init_args"]), "version": None})
            for cls, e in zip(classes, versioned, strict=True)
        ]
        given = [e["init_args"].get("version") is None for e in versioned]
        version = self._claim(unversioned, resumed, given)
        for cls, entry, gets in zip(classes, versioned, given, strict=True):
            if gets:
                entry["init_args"]["version"] = version
            self._note_new_run(cls(**_as_kwargs(entry["init_args"])))

    def _claim(
        self, loggers: list[Logger], resumed: Path | None, given: list[bool] | None = None
    ) -> int | str:
        """The shared version, its ``version_<n>`` folder created (atomically: see
        :mod:`unet_train.runs`) in the folder of every logger ``given`` it, unless resumed."""
        version = shared_version(loggers, resumed)
        if isinstance(version, int):
            given = given or [True] * len(loggers)
            roots = [log.root_dir for log, gets in zip(loggers, given, strict=True) if gets]
            version, made = claim_version(roots, version)
            self._new_runs.extend(made)
        return version

    def _note_new_run(self, logger: Logger) -> None:
        """Remember ``logger``'s folder for removal if this command fails, unless it exists."""
        folder = Path(logger.log_dir)
        if not folder.exists():
            self._new_runs.append(folder)

    def instantiate_trainer(self, **kwargs: Any) -> Trainer:
        # Atomic checkpoints unless the config names a checkpoint plugin of its own.
        config = self.config_init[self.subcommand] if self.subcommand else self.config_init
        plugins = kwargs.pop("plugins", None) or config["trainer"].get("plugins") or []
        plugins = list(plugins) if isinstance(plugins, list | tuple) else [plugins]
        if not any(isinstance(p, CheckpointIO) for p in plugins):
            plugins.append(AtomicCheckpointIO())
        return super().instantiate_trainer(plugins=plugins, **kwargs)

    # -- subcommands -----------------------------------------------------------------------------
    def before_fit(self) -> None:
        self._keep_csv_rows(resume=True)

    def before_validate(self) -> None:
        self._keep_csv_rows()

    def before_test(self) -> None:
        self._keep_csv_rows()

    def before_predict(self) -> None:
        self._keep_csv_rows()
        # The masks are on disk; do not also hold every image's labels in memory.
        config = self.config_init["predict"]
        if config.get("return_predictions") is None:
            config["return_predictions"] = False

    def _keep_csv_rows(self, resume: bool = False) -> None:
        """Keep the rows of an existing ``metrics.csv``; when resuming, only those up to the
        checkpoint.

        Lightning's CSV logger has no way to add to a version's ``metrics.csv``: when it opens a
        folder that holds one (a resumed ``fit``, or ``validate``/``test``/``predict`` beside a
        run), it deletes the file and starts afresh, even given that ``version``. Without this,
        the rows of the run a command continues or scores would be lost; they are read first and
        logged again through the logger's own writer.
        """
        if not self.trainer.is_global_zero:
            return
        ckpt_path = self.config_init[self.subcommand].get("ckpt_path")
        step = None
        if resume and checkpoint_run(ckpt_path) is not None:
            import torch

            # Memory-mapped: only the step is read, not the weights.
            state = torch.load(ckpt_path, map_location="cpu", weights_only=True, mmap=True)
            step = state.get("global_step")
        for logger in self.trainer.loggers:
            if not isinstance(logger, CSVLogger):
                continue
            path = Path(logger.log_dir) / "metrics.csv"
            if not path.is_file():
                continue
            with path.open(newline="") as f:
                rows = list(csv.DictReader(f))
            with warnings.catch_warnings():
                # "Previous log files in this directory will be deleted": the rows come back below.
                warnings.filterwarnings("ignore", message="Experiment logs directory")
                writer = logger.experiment  # opens the folder: the old file is gone from here on
            for row in rows:
                values = {
                    k: float(v) for k, v in row.items() if k != "step" and v not in ("", None)
                }
                at = int(float(row.get("step") or 0))
                # Rows logged at the checkpoint's step or later came after it was written: the
                # resumed run logs those steps again.
                if step is None or at < step:
                    writer.log_metrics(values, at)
            logger.save()


def _config_dumper() -> Any:
    """A YAML dumper that quotes every string jsonargparse's reader would take for a number.

    jsonargparse reads ``1e5`` and ``0016E5`` as floats (YAML 1.2's rule) but dumps with PyYAML's
    YAML 1.1 rule, which leaves ``0016E5`` unquoted; the saved ``config.yaml`` then held
    ``1600000.0`` where a group name was. The dumper learns the reader's float pattern.
    """
    import yaml

    class Dumper(yaml.SafeDumper):
        pass

    Dumper.add_implicit_resolver(
        "tag:yaml.org,2002:float",
        re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?(?:[eE][-+]?[0-9]+)$"),
        list("-+0123456789"),
    )

    def dump(data: Any) -> str:
        return yaml.dump(data, Dumper=Dumper, default_flow_style=False, allow_unicode=True,
                         sort_keys=False)  # fmt: skip

    return dump


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; returns the exit status (2 for bad input or a failed run)."""
    from jsonargparse import set_dumper

    set_dumper("yaml", _config_dumper())
    try:
        TrainCLI(
            SegmentationSystem,
            SegmentationDataModule,
            subclass_mode_data=True,
            args=argv,
            save_config_callback=StageConfig,
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
