"""Argument helpers shared by subcommands (framework-free)."""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from unet_spec import UNetSpec, get_preset


def add_spec_arguments(parser: argparse.ArgumentParser, required: bool = False) -> None:
    group = parser.add_mutually_exclusive_group(required=required)
    group.add_argument("--preset", help="a registered preset (see `unet summary --list`)")
    group.add_argument("--spec", type=Path, help="a JSON file with UNetSpec fields")


def spec_from_args(args: argparse.Namespace) -> UNetSpec | None:
    """The spec named by ``--preset`` or ``--spec``; ``None`` when neither was given."""
    if getattr(args, "preset", None):
        return get_preset(args.preset)
    if getattr(args, "spec", None):
        path: Path = args.spec
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no such spec file")
        try:
            return UNetSpec.from_json(path.read_text())
        except ValueError as err:
            raise ValueError(f"{path}: {err}") from None
    return None


# Numeric options. argparse turns the ArgumentTypeError of a ``type=`` callable into one line naming
# the option ("argument --size: must be a positive integer. Received: '0'") and exit code 2, before
# any subcommand runs, so every subcommand validates its numbers the same way by using these.


def _number(text: str, kind: type, low: float | None, high: float | None, what: str) -> int | float:
    try:
        value = kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be {what}. Received: {text!r}") from None
    if not math.isfinite(value) or (low is not None and value < low):
        raise argparse.ArgumentTypeError(f"must be {what}. Received: {text!r}")
    if high is not None and value >= high:
        raise argparse.ArgumentTypeError(f"must be {what}. Received: {text!r}")
    return value


def positive_int(text: str) -> int:
    """An integer ≥ 1: sizes, batch sizes, tile sizes, worker counts, opsets."""
    return _number(text, int, 1, None, "a positive integer")


def non_negative_int(text: str) -> int:
    """An integer ≥ 0: seeds."""
    return _number(text, int, 0, None, "an integer >= 0")


def non_negative_float(text: str) -> float:
    """A finite number ≥ 0: noise floors."""
    return _number(text, float, 0.0, None, "a finite number >= 0")


def fraction(text: str) -> float:
    """A number in [0, 1): shares such as a tile overlap."""
    return _number(text, float, 0.0, 1.0, "a number in [0, 1)")


def at_least_one(text: str) -> float:
    """A finite number ≥ 1: margins (multiples of a measured noise)."""
    return _number(text, float, 1.0, None, "a finite number >= 1")


def byte_size(text: str) -> int:
    """A positive size in bytes: ``1000000``, ``256MB``, ``2GiB`` (:func:`unet_data.parse_bytes`)."""
    from unet_data import parse_bytes  # numpy-only; imported here so `unet --help` stays light

    try:
        value = parse_bytes(text, "the size")
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(
            f"must be a positive size such as 256MB or 2GB. Received: {text!r}"
        )
    return value


def add_device_argument(parser: argparse.ArgumentParser) -> None:
    """``--device``, read by :func:`unet_torch.predict.resolve_device` for every subcommand."""
    parser.add_argument(
        "--device", default="cpu",
        help="where PyTorch runs: auto, cpu, cuda or cuda:N (Keras places its ops itself; "
        "default: cpu)",
    )  # fmt: skip
