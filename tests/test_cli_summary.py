"""``unet summary``: totals, JSON, and one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from unet_cli.main import main


def test_seed_totals(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["summary", "--preset", "seed", "--size", "572"]) == 0
    out = capsys.readouterr().out
    assert "total params: 31,031,810" in out
    assert "output: 388×388×2" in out
    assert "150.8 G multiply-accumulates (≈ 301.6 GFLOP)" in out
    assert "enc1.conv1" in out and "dec1.skip" in out


def test_paper_totals(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["summary", "--preset", "paper", "--size", "572"]) == 0
    assert "total params: 31,030,658" in capsys.readouterr().out


def test_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["summary", "--preset", "seed", "--size", "572", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["params"] == 31_031_810 and data["output"] == [2, 388, 388]
    assert data["flops"] == 2 * data["macs"] == sum(2 * r["macs"] for r in data["layers"])
    assert data["layers"][-1]["name"] == "head"


def test_spec_file(tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "spec.json"
    path.write_text('{"depth": 2, "base_filters": 8, "padding": "same", "skip_merge": "none"}')
    assert main(["summary", "--spec", str(path), "--size", "64"]) == 0
    assert "output: 64×64×2" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["--preset", "nope"], "unknown preset 'nope'"),
        (["--preset", "paper", "--size", "570"], "Nearest valid sizes: 540, 556, 572, 588"),
        (["--preset", "paper", "--size", "20"], "does not fit"),
        (["--spec", "missing.json", "--size", "64"], "missing.json: no such spec file"),
    ],
)
def test_bad_input_is_one_line_exit_2(argv: list[str], needle: str) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "unet_cli", "summary", *argv], capture_output=True, text=True
    )
    assert proc.returncode == 2
    assert needle in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    assert "Traceback" not in proc.stderr


def test_summary_loads_no_framework() -> None:
    code = (
        "import sys\nfrom unet_cli.main import main\n"
        "assert main(['summary', '--preset', 'seed', '--size', '572']) == 0\n"
        "print('FRAMEWORKS', [m for m in ('torch', 'tensorflow', 'keras') if m in sys.modules])\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "FRAMEWORKS []" in proc.stdout
