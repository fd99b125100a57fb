"""Every numeric option of the ``unet`` command is checked by one of ``unet_cli.common``'s types:
nonsense is one line on stderr naming the option, and exit code 2, before any subcommand runs.

The types are reached through the options the subcommands register (by name), so the tests drive
the CLI as its parser does and import nothing of it but the entry point."""

from __future__ import annotations

import argparse
import importlib
import subprocess
import sys

import pytest

from unet_cli.main import SUBCOMMANDS, build_parser, main

# Nonsense for each checked type, by the type's name.
CHECKED_TYPES = {
    "positive_int": ["0", "-1", "2.5", "x"],
    "non_negative_int": ["-1", "1e3", "x"],
    "non_negative_float": ["-0.1", "nan", "inf", "x"],
    "fraction": ["-0.1", "1", "nan", "x"],
    "at_least_one": ["0.5", "nan", "inf", "x"],
    "byte_size": ["0", "-5MB", "12 parsecs"],
}


class _Recording(argparse.ArgumentParser):
    """A parser that keeps the actions its options create (argparse lists them only privately)."""

    def __init__(self, *args, **kwargs) -> None:
        self.recorded: list[argparse.Action] = []  # before __init__, which adds --help
        self.children: dict[str, _Recording] = {}
        super().__init__(*args, **kwargs)

    def add_argument(self, *args, **kwargs) -> argparse.Action:
        action = super().add_argument(*args, **kwargs)
        self.recorded.append(action)
        return action

    def add_mutually_exclusive_group(self, **kwargs):
        group = super().add_mutually_exclusive_group(**kwargs)
        add = group.add_argument

        def recording_add(*args, **kw) -> argparse.Action:
            action = add(*args, **kw)
            self.recorded.append(action)
            return action

        group.add_argument = recording_add
        return group

    def add_subparsers(self, **kwargs):
        subparsers = super().add_subparsers(**kwargs)
        add_parser = subparsers.add_parser

        def recording_add_parser(name: str, **kw):
            child = add_parser(name, **kw)
            self.children[name] = child
            return child

        subparsers.add_parser = recording_add_parser
        return subparsers


def _options() -> list[tuple[list[str], argparse.Action]]:
    """(subcommand words, action) for every option of every subcommand, nested ones included."""
    found = []

    def walk(parser: _Recording, words: list[str]) -> None:
        found.extend((words, action) for action in parser.recorded if action.option_strings)
        for name, child in parser.children.items():
            walk(child, [*words, name])

    for name, module_name in SUBCOMMANDS.items():
        parser = _Recording(prog=f"unet {name}")
        importlib.import_module(module_name).add_arguments(parser)
        walk(parser, [name])
    return found


def test_no_option_takes_a_bare_int_or_float() -> None:
    bare = [
        f"unet {' '.join(words)} {action.option_strings[0]}"
        for words, action in _options()
        if action.type in (int, float)
    ]
    assert not bare, f"numeric options without a checked type (unet_cli.common): {bare}"


def _type_name(action: argparse.Action) -> str | None:
    return getattr(action.type, "__name__", None)


def _numeric_options() -> list[tuple[list[str], str, list[str]]]:
    return [
        (words, action.option_strings[0], CHECKED_TYPES[_type_name(action)])
        for words, action in _options()
        if _type_name(action) in CHECKED_TYPES
    ]


def test_every_checked_type_is_used() -> None:
    used = {_type_name(action) for _, action in _options()}
    assert used >= set(CHECKED_TYPES), set(CHECKED_TYPES) - used


def test_every_subcommand_with_numbers_is_covered() -> None:
    covered = {words[0] for words, _, _ in _numeric_options()}
    assert covered >= {"summary", "port", "parity", "predict", "export", "data"}


@pytest.mark.parametrize(
    ("words", "option", "bad"),
    _numeric_options(),
    ids=lambda v: v if isinstance(v, str) else "-".join(v) if isinstance(v, list) else None,
)
def test_nonsense_is_one_line_and_exit_2(words, option, bad, capsys) -> None:
    for value in bad:
        assert main([*words, f"{option}={value}"]) == 2, (option, value)
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1, err
        assert err[0].startswith(f"unet {' '.join(words)}: error: argument {option}")
        assert f"Received: {value!r}" in err[0]


@pytest.mark.parametrize(
    ("name", "text", "value"),
    [
        ("positive_int", "572", 572),
        ("non_negative_int", "0", 0),
        ("non_negative_float", "0", 0.0),
        ("fraction", "0.25", 0.25),
        ("fraction", "0", 0.0),
        ("at_least_one", "16", 16.0),
        ("byte_size", "256MB", 256_000_000),
        ("byte_size", "2GiB", 2 * 2**30),
    ],
)
def test_sensible_values_pass(name, text, value) -> None:
    types = {_type_name(action): action.type for _, action in _options()}
    assert types[name](text) == value


def test_summary_size_zero_from_the_shell() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "unet_cli", "summary", "--preset", "seed", "--size", "0"],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.strip() == (
        "unet summary: error: argument --size: must be a positive integer. Received: '0'"
    )


def test_parity_batch_keeps_its_old_spelling() -> None:
    parser = build_parser()
    new = parser.parse_args(["parity", "w.safetensors", "--batch-size", "3"])
    old = parser.parse_args(["parity", "w.safetensors", "--batch", "3"])
    assert new.batch_size == old.batch_size == 3
