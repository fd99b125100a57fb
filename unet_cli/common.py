"""Argument helpers shared by subcommands (framework-free)."""

from __future__ import annotations

import argparse
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
