"""Port time and memory for a 31 M-parameter U-Net, through the command a user runs.

    python benchmarks/port_time.py [--rows forward,source-model,graph,reverse,reverse-model,reverse-graph]
                                   [--work FOLDER] [--json FILE] [--md FILE] [--repeats N]

Each row is ``unet port ...`` in a fresh process under ``/usr/bin/time -v`` (wall time, user CPU
and peak RSS, as a user sees them, imports included), on milesial/Pytorch-UNet's full-width model
(``UNet(n_channels=3, n_classes=2)``, 31,037,698 parameters) with random weights and batch-norm
statistics, written by the suite's stand-in of its layout (``tests/peers/milesial_layout.py``):

- ``forward``: the milesial state dict to a canonical file (the twins against each other);
- ``source-model``: the same, proven against the source's own class (``--source-model``);
- ``graph``: the same state dict with the class named, read through the PyTorch graph reader
  (``--from graph``: no key names used) and proven against the class;
- ``reverse``: canonical file back to a milesial state dict (``--to milesial``);
- ``reverse-model``: the same, loaded by the class and run against the twin (``--source-model``);
- ``reverse-graph``: back to the class's own keys through its graph (``--source-model``, no
  ``--to``), loaded strictly by the class and run against the twin.

Prints a Markdown table headed by the machine line; the median of ``--repeats`` runs per row.
``--root`` runs another checkout's ``unet`` (an earlier version, for a before/after table) with
this checkout's files.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from unet_runtime import keep_freed_memory, machine_line  # noqa: E402

CLASS = ["--source-model", "tests.peers.milesial_layout:UNet",
         "--source-args", '{"n_channels": 3, "n_classes": 2}']  # fmt: skip
ROWS = {
    "forward": (["src.pth", "out.safetensors"], "reload bit-exact; PyTorch twin vs Keras twin"),
    "source-model": (
        ["src.pth", "out-model.safetensors", *CLASS],
        "and the source's own forward pass vs the twin (two sizes)",
    ),
    "graph": (
        ["src.pth", "out-graph.safetensors", "--from", "graph", *CLASS],
        "spec and mapping read from the class's traced graph; its forward pass vs the twin",
    ),
    "reverse": (
        ["ref.safetensors", "back.pth", "--to", "milesial"],
        "reload by the milesial reader",
    ),
    "reverse-model": (
        ["ref.safetensors", "back-model.pth", "--to", "milesial", *CLASS],
        "and the source's own forward pass vs the twin",
    ),
    "reverse-graph": (
        ["ref.safetensors", "back-graph.pth", *CLASS],
        "the class's own keys, loaded strictly by it; its forward pass vs the twin",
    ),
}


def make_files(work: Path, root: Path) -> None:
    """The milesial state dict (written once, reused) and its canonical twin, written by the
    checkout that runs (an earlier version may not read a later one's spec)."""
    if not (work / "src.pth").exists():
        import torch

        from tests.peers.milesial_layout import UNet, randomise

        torch.manual_seed(0)
        model = randomise(UNet(n_channels=3, n_classes=2))
        torch.save(model.state_dict(), work / "src.pth")
    (work / "ref.safetensors").unlink(missing_ok=True)
    subprocess.run(
        [sys.executable, "-m", "unet_cli", "port", str(work / "src.pth"),
         str(work / "ref.safetensors"), "--no-verify"],
        check=True, cwd=root, stdout=subprocess.DEVNULL,
    )  # fmt: skip


def timed(argv: list[str], work: Path, root: Path = ROOT) -> dict[str, float]:
    """Wall seconds, user CPU seconds and peak RSS (GB) of ``unet port ARGV`` in a new process."""
    for name in argv[1:2]:
        (work / name).unlink(missing_ok=True)
    files = [str(work / a) if i < 2 else a for i, a in enumerate(argv)]
    cmd = ["/usr/bin/time", "-v", sys.executable, "-m", "unet_cli", "port", *files]
    done = subprocess.run(cmd, cwd=root, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({done.returncode}):\n{done.stdout}{done.stderr}")
    text = done.stderr

    def field(pattern: str) -> str:
        return re.search(pattern, text).group(1)

    wall = field(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): (\S+)")
    seconds = sum(float(p) * 60**i for i, p in enumerate(reversed(wall.split(":"))))
    return {
        "wall_s": seconds,
        "user_s": float(field(r"User time \(seconds\): (\S+)")),
        "peak_gb": int(field(r"Maximum resident set size \(kbytes\): (\d+)")) * 1024 / 1e9,
        "proof": done.stdout.strip().splitlines()[-1][:300],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", default=",".join(ROWS), help="comma-separated rows")
    parser.add_argument("--work", type=Path, help="folder for the files (default: a temporary one)")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--root", type=Path, default=ROOT, help="the checkout whose unet runs")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--md", type=Path)
    args = parser.parse_args()
    # The machine line names the allocator setting the measured `unet` processes make.
    keep_freed_memory()
    rows = [r.strip() for r in args.rows.split(",") if r.strip()]
    unknown = [r for r in rows if r not in ROWS]
    if unknown:
        raise SystemExit(f"unknown rows {unknown}; known: {', '.join(ROWS)}")
    with tempfile.TemporaryDirectory() as tmp:
        work = args.work or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        make_files(work, args.root)
        results = {}
        for row in rows:
            argv, what = ROWS[row]
            runs = [timed(argv, work, args.root) for _ in range(args.repeats)]
            results[row] = {
                "command": "unet port " + " ".join(argv),
                "proves": what,
                **{
                    k: statistics.median(r[k] for r in runs)
                    for k in ("wall_s", "user_s", "peak_gb")
                },
                "proof": runs[-1]["proof"],
            }
            print(row, json.dumps(results[row]), flush=True)
    lines = [machine_line(), "", "| command | what it proves | wall | user CPU | peak RSS |",
             "|---|---|---:|---:|---:|"]  # fmt: skip
    for r in results.values():
        lines.append(f"| `{r['command']}` | {r['proves']} | {r['wall_s']:.1f} s | "
                     f"{r['user_s']:.1f} s | {r['peak_gb']:.2f} GB |")  # fmt: skip
    table = "\n".join(lines)
    print(table)
    if args.json:
        args.json.write_text(json.dumps({"machine": machine_line(), "rows": results}, indent=2))
    if args.md:
        args.md.write_text(table + "\n")


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    main()
