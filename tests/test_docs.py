"""The commands and code of README.md and docs/*.md run (doc-snippet test), so none can rot.

Each fenced block is read from the page and run for real, in a scratch folder that holds the few
files the pages start from (see :func:`workdir`):

- ``bash`` blocks: one command per line (``\\`` continues a line, ``#`` starts a comment,
  ``NAME=value`` sets a variable for the lines after it). ``unet …`` runs the command in this
  process; ``python train.py …`` and ``make train`` run the training CLI in this process.
- ``python`` blocks: executed, one namespace per page, so a later block may use an earlier one's names.
- a ``text`` block right after a ``bash`` block is that block's expected output: every line of it
  must appear in what the commands printed.

A block that needs data, other machines or hours is marked in the page, on the line above its
fence: ``<!-- skip-test: why -->``. The test counts those and prints why. Anything else it cannot
run fails with the page and line, so a new command is either cheap enough to run or says why not.

The one substitution rule (:func:`fast`), so that the whole file runs in about a minute on two
cores: training runs 2 optimiser steps and 1 validation batch without the Keras export
(``--trainer.max_steps 2 --trainer.limit_val_batches 1 --artifacts.keras_export false``), and
``make train`` is the command it runs (``python train.py fit --config configs/demo.yaml``).
Nothing else is changed: sizes and options are the page's own, and the weight files the pages name
(``model.safetensors``, …) hold a small spec.
"""

from __future__ import annotations

import contextlib
import io
import re
import shlex
import shutil
import string
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
SKIP = re.compile(r"<!--\s*skip-test:\s*(.*?)\s*-->")
FENCE = re.compile(r"^```(\S*)\s*$")

#: Training in a doc snippet: 2 steps, 1 validation batch, no Keras export (the rule above).
FAST_TRAINING = [
    "--trainer.max_steps", "2", "--trainer.limit_val_batches", "1",
    "--artifacts.keras_export", "false",
]  # fmt: skip


@dataclass
class Block:
    page: Path
    line: int  # 1-based line of the opening fence
    lang: str
    code: str
    skip: str | None  # the reason, when the page marks the block skip-test
    output: str | None = None  # a ``text`` block right after a ``bash`` block

    @property
    def where(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"


def blocks(page: Path) -> list[Block]:
    """The fenced blocks of one page, with their skip-test reasons and expected outputs."""
    lines = page.read_text().split("\n")
    found: list[Block] = []
    i = 0
    while i < len(lines):
        match = FENCE.match(lines[i])
        if match is None:
            i += 1
            continue
        end = next(j for j in range(i + 1, len(lines)) if lines[j].startswith("```"))
        previous = next((lines[j] for j in range(i - 1, -1, -1) if lines[j].strip()), "")
        skip = SKIP.search(previous)
        lang, code = match.group(1), "\n".join(lines[i + 1 : end])
        prior = found[-1] if found else None
        if lang == "text" and prior is not None and prior.lang == "bash" and previous == "```":
            prior.output = code
        else:
            found.append(Block(page, i + 1, lang, code, skip.group(1) if skip else None))
        i = end + 1
    return found


ALL = [b for page in PAGES for b in blocks(page) if b.lang in ("bash", "python")]


def commands(code: str) -> list[str]:
    """The command lines of a shell block: continuations joined, comments and blanks dropped."""
    joined = re.sub(r"\\\n\s*", " ", code)
    out = []
    for line in joined.split("\n"):
        words = shlex.split(line, comments=True)
        if words:
            out.append(shlex.join(words))
    return out


def fast(argv: list[str]) -> list[str]:
    """The substitution rule of this test (module docstring): training shortened, nothing else."""
    if argv[:2] == ["make", "train"]:
        argv = ["python", "train.py", "fit", "--config", "configs/demo.yaml"]
    if argv[:3] == ["python", "train.py", "fit"] and "--print_config" not in argv:
        argv = [*argv, *FAST_TRAINING]
    return argv


def run_command(line: str, env: dict[str, str]) -> tuple[int, str]:
    """Run one command line in this process; (exit code, what it printed)."""
    if re.fullmatch(r"[A-Z_]+=\S+", line):
        name, value = line.split("=", 1)
        env[name] = value
        return 0, ""
    argv = fast([string.Template(w).safe_substitute(env) for w in shlex.split(line)])
    if argv[0] in ("unet", ".venv/bin/unet"):
        from unet_cli.main import main as unet_main

        run, args = unet_main, argv[1:]
    elif argv[:2] == ["python", "train.py"]:
        from unet_train.cli import main as train_main

        run, args = train_main, argv[2:]
    else:
        pytest.fail(f"cannot run {line!r}; mark its block <!-- skip-test: why --> if it is slow")
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = run(args)
        except SystemExit as exit_:  # LightningCLI exits after --print_config
            code = exit_.code or 0
    return int(code or 0), out.getvalue() + err.getvalue()


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    """A scratch folder with the files the pages start from: ``model.safetensors`` (a small
    same-padding spec, 3 → 2 classes), ``images/`` and ``cells/`` with two PNGs each, ``cells.png``,
    and the repository's ``configs/``, ``train.py`` and ``hubconf.py``."""
    from PIL import Image

    from unet_spec import UNetSpec, random_weights, save_weights

    folder = tmp_path_factory.mktemp("docs")
    spec = UNetSpec(
        in_channels=3, depth=2, base_filters=4, padding="same", skip_merge="none", norm="batch"
    )
    save_weights(random_weights(spec, seed=0), spec, folder / "model.safetensors")
    rng = np.random.default_rng(0)
    for sub in ("images", "cells"):
        (folder / sub).mkdir()
        for name in ("a", "b"):
            pixels = rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(folder / sub / f"{name}.png")
    shutil.copy(folder / "cells" / "a.png", folder / "cells.png")
    shutil.copytree(ROOT / "configs", folder / "configs")
    shutil.copy(ROOT / "train.py", folder / "train.py")
    shutil.copy(ROOT / "hubconf.py", folder / "hubconf.py")  # torch.hub.load(".", ...)
    return folder


def test_pages_have_blocks() -> None:
    readme = [b for b in ALL if b.page.name == "README.md"]
    assert len([b for b in readme if b.skip is None]) >= 5, "README.md lost its runnable examples"


def test_skipped_blocks_say_why(capsys) -> None:
    skipped = [b for b in ALL if b.skip is not None]
    assert all(b.skip for b in skipped), [b.where for b in skipped if not b.skip]
    with capsys.disabled():
        print(f"\n{len(skipped)} of {len(ALL)} doc blocks marked skip-test:")
        for b in skipped:
            print(f"  {b.where}: {b.skip}")


@pytest.mark.parametrize("block", [b for b in ALL if b.skip is None], ids=lambda b: b.where)
def test_block_runs(block: Block, workdir: Path, monkeypatch) -> None:
    monkeypatch.chdir(workdir)
    if block.lang == "python":
        exec(compile(block.code, block.where, "exec"), {"__name__": "__doc_snippet__"})
        return
    env: dict[str, str] = {}
    printed = []
    for line in commands(block.code):
        code, output = run_command(line, env)
        assert code == 0, f"{block.where}: `{line}` exited {code}:\n{output[-2000:]}"
        printed.append(output)
    for expected in (block.output or "").split("\n"):
        assert expected.strip() in "".join(printed), f"{block.where}: no line {expected!r}"


def presets_table() -> str:
    """The README's presets table, computed from the registry (numbers are never typed in)."""
    from unet_spec import DEFAULT_SIZES, PRESETS

    def upsampling(s) -> str:
        if s.upsample == "transpose":
            return "2×2 transpose"
        name = "bilinear, aligned corners" if s.align_corners else s.upsample
        k = s.up_conv_kernel
        return f"{name} + {k}×{k} conv" if k else name

    rows = [
        "| preset | channels | padding | skips | merge | upsampling | norm | head | size | params |",
        "|---|---|---|---|---|---|---|---|---|---:|",
    ]
    for name, s in PRESETS.items():
        size = DEFAULT_SIZES[name]
        layout = s.plan().layout(size)
        _, h, _ = layout.output_shape
        rows.append(
            f"| `{name}` | {s.in_channels}→{s.num_classes} | {s.padding} | {s.skip_source} | "
            f"{s.skip_merge} | {upsampling(s)} | {s.norm} | {s.head} | {size}² → {h}² | "
            f"{layout.params:,} |"
        )
    return "\n".join(rows)


def test_readme_presets_table_is_the_registry() -> None:
    table = presets_table()
    assert table in (ROOT / "README.md").read_text(), f"README.md's presets table is now:\n{table}"
