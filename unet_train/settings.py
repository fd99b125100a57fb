"""Settings that belong together, as values: what LightningCLI shows as nested keys.

:class:`LossSettings` (``model.loss.name``, ``model.loss.dice_weight``, ...) and
:class:`InferenceSettings` (``model.inference.tile``, ``model.inference.tta``) group the system's
arguments; the data modules group their mask fields in :class:`~unet_train.mask_fields.MaskFields`
(``data.init_args.masks.encoding``, ...). jsonargparse reads a dataclass's fields as a group of
keys, so ``--print_config`` and ``--help`` show each group with its fields and their docs.

Configs, command lines, checkpoints and Python calls written before the groups existed keep
working: a key that moved (:data:`MODEL_MOVES`, :data:`DATA_MOVES`) is read into its group, a data
module named by its old public home (:data:`DATA_CLASS_PATHS`) by where it lives, and one line
says where each went, once per key and process (rank zero only). :func:`move_config` does it for a
config or a checkpoint's hyper-parameters and :func:`move_argv` for a command line (both through
:class:`SettingsParser`, the parser of ``train.py``), :func:`move_kwargs` for the keyword arguments
of the classes themselves.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, is_dataclass
from typing import Any, Literal, TypeVar, get_args

from jsonargparse import get_loader
from lightning.pytorch.cli import LightningArgumentParser
from lightning.pytorch.utilities import rank_zero_only

from unet_infer import TTAChoice
from unet_train.losses import LossName

ClassWeighting = Literal["none", "median_frequency", "sqrt_median_frequency"]


@dataclass(frozen=True)
class LossSettings:
    """The training loss (``model.loss``).

    Args:
        name: ``ce``, ``bce``, ``dice``, ``ce_dice`` or ``bce_dice``.
        dice_weight: Weight of the Dice term in ``ce_dice``/``bce_dice``.
        class_weights: One loss weight per class, or ``None``.
        class_weighting: Compute class weights from the training masks instead:
            ``median_frequency`` or its square root ``sqrt_median_frequency`` (gentler).
    """

    name: LossName = "ce_dice"
    dice_weight: float = 1.0
    class_weights: list[float] | None = None
    class_weighting: ClassWeighting = "none"

    def __post_init__(self) -> None:
        if self.class_weights is not None and self.class_weighting != "none":
            raise ValueError(
                "give model.loss.class_weights or model.loss.class_weighting, not both"
            )


@dataclass(frozen=True)
class InferenceSettings:
    """How validation, test and prediction run whole images (``model.inference``).

    Args:
        tile: Tile input size (``None``: the tiling engine chooses, as ``unet predict`` does
            without ``--tile``).
        tta: Test-time augmentation, in the vocabulary of :mod:`unet_infer.tta`: ``false``, a
            mode (``d4`` the 8 flips/rotations, ``flips`` the 4 flips, ``hflip`` the image and
            its mirror image) or ``true``: the views the model was trained with (its
            ``symmetries``; all 8 when nothing is recorded).
    """

    tile: int | None = None
    tta: TTAChoice = False


#: The system's keys that moved into a group: old key → ``group.field``.
MODEL_MOVES = {
    "dice_weight": "loss.dice_weight",
    "class_weights": "loss.class_weights",
    "class_weighting": "loss.class_weighting",
    "tile": "inference.tile",
    "tta": "inference.tta",
}
#: The system's keys whose plain value became a group's field (``loss: dice`` → ``loss.name``).
MODEL_VALUE_MOVES = {"loss": "loss.name"}
#: The data modules' keys that moved into a group.
DATA_MOVES = {
    "mask_encoding": "masks.encoding",
    "value_map": "masks.value_map",
    "ignore_value": "masks.ignore_value",
    "palette": "masks.palette",
}

#: The data modules' class paths of older configs (their public home, :mod:`unet_train.data`)
#: → where each class lives, which configs and saved runs name now.
DATA_CLASS_PATHS = {
    "unet_train.data.FolderDataModule": "unet_train.folder.FolderDataModule",
    "unet_train.data.SyntheticDataModule": "unet_train.synthetic.SyntheticDataModule",
    "unet_train.data.SegmentationDataModule": "unet_train.datamodule.SegmentationDataModule",
}

_noted: set[str] = set()


@rank_zero_only
def note_moved(old: str, new: str) -> None:
    """One line on stderr, once per key and process (rank zero only): where an old key went."""
    if old not in _noted:
        _noted.add(old)
        print(f"note: {old} is now {new}; the old form still loads", file=sys.stderr, flush=True)


def _group_dict(value: Any) -> dict[str, Any]:
    if value is None:
        return {}
    if is_dataclass(value) and not isinstance(value, type):
        return asdict(value)
    return dict(value) if isinstance(value, Mapping) else {}


def move_keys(
    values: Mapping[str, Any],
    moves: Mapping[str, str],
    prefix: str,
    value_moves: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """``values`` with every key of ``moves`` read into its group (a group given as a dataclass
    or a mapping keeps its other fields; the old key wins over the group's field), and every
    plain value of a ``value_moves`` key (a string where a group now is) made that group's field.
    ``prefix`` (``model``, ``data``) names the keys in the note."""
    out = dict(values)
    for key, target in (value_moves or {}).items():
        if isinstance(out.get(key), str):
            field = target.split(".")[1]
            note_moved(f"{prefix}.{key}: {out[key]}", f"{prefix}.{target}")
            out[key] = {field: out[key]}
    for old, target in moves.items():
        if old not in out:
            continue
        group, field = target.split(".")
        value = out.pop(old)
        note_moved(f"{prefix}.{old}", f"{prefix}.{target}")
        out[group] = {**_group_dict(out.get(group)), field: value}
    return out


def move_kwargs(
    kwargs: Mapping[str, Any], moves: Mapping[str, str], prefix: str, owner: str
) -> dict[str, dict[str, Any]]:
    """The keyword arguments of an old call (``dice_weight=2``) as group fields
    (``{"loss": {"dice_weight": 2}}``), each noted once.

    Raises:
        TypeError: A keyword that is neither a moved key nor the class's (as Python says it).
    """
    unknown = sorted(set(kwargs) - set(moves))
    if unknown:
        raise TypeError(f"{owner}() got an unexpected keyword argument {unknown[0]!r}")
    groups: dict[str, dict[str, Any]] = {}
    for old, value in kwargs.items():
        group, field = moves[old].split(".")
        note_moved(f"{prefix}.{old}", f"{prefix}.{moves[old]}")
        groups.setdefault(group, {})[field] = value
    return groups


T = TypeVar("T")


def as_settings(cls: type[T], value: Any, moved: Mapping[str, Any] | None = None) -> T:
    """``value`` as a ``cls``: a ``cls`` as it is, a mapping (a checkpoint's hyper-parameters, a
    config read without LightningCLI) as its fields, ``None`` as the defaults; ``moved`` (fields
    given under old keys) replaces fields."""
    if isinstance(value, cls) and not moved:
        return value
    fields = {**_group_dict(value), **(moved or {})}
    return cls(**fields)


def system_settings(
    loss: Any, inference: Any, moved: Mapping[str, Any]
) -> tuple[LossSettings, InferenceSettings]:
    """The system's groups from its arguments: each a group, a mapping (a checkpoint's) or
    ``None``, ``loss`` also a loss name (older configs and checkpoints), and ``moved`` the old
    keys given beside them (:data:`MODEL_MOVES`).

    Raises:
        TypeError: A keyword argument that is neither the system's nor an old key.
    """
    if isinstance(loss, str):
        note_moved(f"model.loss: {loss}", "model.loss.name")
        loss = {"name": loss}
    groups = move_kwargs(moved, MODEL_MOVES, "model", "SegmentationSystem")
    return (
        as_settings(LossSettings, loss, groups.get("loss")),
        as_settings(InferenceSettings, inference, groups.get("inference")),
    )


def move_config(config: Any) -> Any:
    """A config (``{model: ..., data: ...}``, or such configs under subcommand keys) or a
    checkpoint's hyper-parameters, with the keys that moved read into their groups. Anything
    else is returned as it is; so is a config with nothing to move."""
    if not isinstance(config, Mapping):
        return config
    out = dict(config)
    changed = False
    for key, value in config.items():
        if key == "model" and isinstance(value, Mapping):
            moved = move_keys(value, MODEL_MOVES, "model", MODEL_VALUE_MOVES)
        elif key == "data" and isinstance(value, Mapping):
            moved = _move_data(value)
        elif key in ("fit", "validate", "test", "predict") and isinstance(value, Mapping):
            moved = move_config(value)
        else:
            continue
        if moved != value:
            out[key], changed = moved, True
    return out if changed else config


def _move_data(data: Mapping[str, Any]) -> Mapping[str, Any]:
    path = data.get("class_path")
    if path in DATA_CLASS_PATHS:
        note_moved(f"data.class_path {path}", DATA_CLASS_PATHS[path])
        data = {**data, "class_path": DATA_CLASS_PATHS[path]}
    init_args = data.get("init_args")
    if isinstance(init_args, Mapping):
        moved = move_keys(init_args, DATA_MOVES, "data")
        return {**data, "init_args": moved} if moved != init_args else data
    return move_keys(data, DATA_MOVES, "data")  # keys given beside class_path


def move_argv(argv: Sequence[str]) -> list[str]:
    """A command line with the keys that moved written as their groups' (``--model.tta true`` →
    ``--model.inference.tta true``; ``--model.loss dice`` → ``--model.loss.name dice``)."""
    loss_names = get_args(LossName)
    out: list[str] = []
    for i, arg in enumerate(argv):
        flag, eq, value = arg.partition("=")
        if flag.startswith("--model."):
            key = flag.removeprefix("--model.")
            if key in MODEL_MOVES:
                note_moved(f"model.{key}", f"model.{MODEL_MOVES[key]}")
                flag = f"--model.{MODEL_MOVES[key]}"
            elif key == "loss":
                given = value if eq else (argv[i + 1] if i + 1 < len(argv) else "")
                if given in loss_names:
                    note_moved(f"model.loss: {given}", "model.loss.name")
                    flag = "--model.loss.name"
        elif flag.startswith("--data."):
            key = flag.removeprefix("--data.")
            inner = key.removeprefix("init_args.")
            if inner in DATA_MOVES:
                note_moved(f"data.{inner}", f"data.{DATA_MOVES[inner]}")
                flag = f"--data.{key[: len(key) - len(inner)]}{DATA_MOVES[inner]}"
        out.append(flag + eq + value)
    return out


def moved_checkpoint(path: Any, overrides: Mapping[str, Any]) -> tuple[Any, dict[str, Any]]:
    """What ``SegmentationSystem.load_from_checkpoint`` is given, with the keys that moved read into
    their groups: ``path``, or (when its hyper-parameters or ``overrides`` hold old keys) the
    checkpoint with its hyper-parameters moved, in memory; and the other ``overrides``.

    A checkpoint written by ``train.py`` rebuilds its system through jsonargparse, which knows
    the current keys only; one written before the groups existed carries the flat ones.
    """
    old = {k: v for k, v in overrides.items() if k in MODEL_MOVES}
    if isinstance(overrides.get("loss"), str):
        old["loss"] = overrides["loss"]
    rest = {k: v for k, v in overrides.items() if k not in old}
    if not isinstance(path, str | os.PathLike) or not os.path.isfile(path):
        return path, dict(overrides)
    import io

    import torch

    try:  # memory-mapped: only the hyper-parameters are read unless they change
        checkpoint = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except (RuntimeError, ValueError, OSError):
        return path, dict(overrides)  # Lightning's own loader says what is wrong with it
    hparams = checkpoint.get("hyper_parameters")
    if not isinstance(hparams, Mapping):
        return path, dict(overrides)
    moved = move_keys({**hparams, **old}, MODEL_MOVES, "model", MODEL_VALUE_MOVES)
    if moved == hparams:
        return path, rest
    checkpoint["hyper_parameters"] = moved
    buffer = io.BytesIO()
    torch.save(checkpoint, buffer)
    buffer.seek(0)
    return buffer, rest


class SettingsParser(LightningArgumentParser):
    """LightningCLI's parser, reading the keys that moved into groups where they are now.

    Every way a config comes in goes through one of these public parsing methods: the command
    line (:meth:`parse_args`), a config file or string (:meth:`parse_string`, which jsonargparse's
    ``--config`` calls with the file's text) and a checkpoint's hyper-parameters
    (:meth:`parse_object`, which LightningCLI calls for ``--ckpt_path``).
    """

    def parse_args(self, args: Any = None, *rest: Any, **kwargs: Any) -> Any:
        args = move_argv(sys.argv[1:] if args is None else list(args))
        return super().parse_args(args, *rest, **kwargs)

    def parse_string(self, content: str, *rest: Any, **kwargs: Any) -> Any:
        loaded = get_loader(self.parser_mode)(content)
        moved = move_config(loaded)
        if moved is not loaded:
            # As JSON (which the YAML reader reads): the values exactly as they were loaded.
            content = json.dumps(moved)
        return super().parse_string(content, *rest, **kwargs)

    def parse_object(self, cfg_obj: Any, *rest: Any, **kwargs: Any) -> Any:
        return super().parse_object(move_config(cfg_obj), *rest, **kwargs)


__all__ = [
    "DATA_CLASS_PATHS",
    "DATA_MOVES",
    "MODEL_MOVES",
    "MODEL_VALUE_MOVES",
    "ClassWeighting",
    "InferenceSettings",
    "LossSettings",
    "SettingsParser",
    "as_settings",
    "move_argv",
    "move_config",
    "move_kwargs",
    "move_keys",
    "moved_checkpoint",
    "note_moved",
    "system_settings",
]
