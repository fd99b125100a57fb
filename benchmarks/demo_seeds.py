"""Run the embedded demo (``make train``) for several seeds and check that every one of them learns.

    python benchmarks/demo_seeds.py                       # seeds 0-4; JSON to results-demo-seeds.json
    python benchmarks/demo_seeds.py --isa AVX2            # oneDNN capped at AVX2 (-avx2.json)
    python benchmarks/demo_seeds.py --seeds 0 7 --out /tmp/r.json -- --trainer.max_epochs 10

Each seed is the user's path, ``train.py fit --config configs/demo.yaml``, in a subprocess with
``--seed_everything S --data.init_args.seed S`` (so both the initialisation and the generated images
change) and anything after ``--`` appended. The figures come from the run's ``metrics.json``: the best
epoch by mean validation Dice, its per-class Dice, and ``wall_time_s`` (from the start of ``fit`` to
the end of the run's artifacts, Keras export included). The load average before and after each run
is recorded beside it, because the demo's wall time is only meaningful with the load it ran under.

Prints a Markdown table headed by :func:`unet_runtime.machine_line` and exits with status 1 if any
seed misses the goal (``--min-dice`` mean, ``--min-class`` for every class, ``--max-minutes``).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from unet_runtime.machine import machine_info, machine_line  # noqa: E402


def run_seed(seed: int, config: Path, workdir: Path, extra: list[str], env: dict) -> dict:
    """Train ``config`` with ``seed`` in ``workdir``; return the figures of its best epoch."""
    cwd = workdir / f"seed_{seed}"
    cwd.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, str(REPO / "train.py"), "fit", "--config", str(config),
           "--seed_everything", str(seed), "--data.init_args.seed", str(seed),
           "--trainer.enable_progress_bar", "false", *extra]  # fmt: skip
    load_before = os.getloadavg()[0]
    cpu_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.monotonic()
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    process_s = time.monotonic() - start
    cpu_after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu_s = sum(getattr(cpu_after, f) - getattr(cpu_before, f) for f in ("ru_utime", "ru_stime"))
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr[-4000:])
        raise SystemExit(f"seed {seed}: train.py exited with status {proc.returncode}")
    found = re.search(r"Results in (\S+?)/? ", proc.stdout)
    if not found:
        raise SystemExit(f"seed {seed}: train.py finished but printed no results folder")
    metrics = json.loads((cwd / found.group(1) / "metrics.json").read_text())
    best = metrics["best"]
    dice = [best[f"val/dice_{k}"] for k in range(sum(1 for k in best if k.startswith("val/dice_")))]
    return {
        "seed": seed,
        "dice": best["val/dice"],
        "dice_per_class": dice,
        "worst_class": min(range(len(dice)), key=dice.__getitem__),
        "miou": best.get("val/miou"),
        "best_epoch": best.get("epoch"),
        "epochs": metrics["epochs"],
        "global_step": metrics["global_step"],
        "wall_time_s": metrics["wall_time_s"],
        "process_s": round(process_s, 1),
        # CPU seconds of the whole process (both threads, start-up and export included): less
        # sensitive than the wall time to other work on the machine.
        "cpu_s": round(cpu_s, 1),
        "load_before": round(load_before, 2),
        "load_after": round(os.getloadavg()[0], 2),
    }


def passes(row: dict, args: argparse.Namespace) -> bool:
    return (
        row["dice"] >= args.min_dice
        and min(row["dice_per_class"]) >= args.min_class
        and row["wall_time_s"] <= 60 * args.max_minutes
    )


def table(rows: list[dict], names: list[str], args: argparse.Namespace) -> str:
    head = ["seed", "best mean Dice", *names, "worst class", "training", "CPU time", "load (1 min)",
            "goal"]  # fmt: skip
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        minutes, seconds = divmod(round(r["wall_time_s"]), 60)
        cells = [
            str(r["seed"]),
            f"{r['dice']:.3f}",
            *(f"{d:.3f}" for d in r["dice_per_class"]),
            f"{names[r['worst_class']]} {min(r['dice_per_class']):.3f}",
            f"{minutes} min {seconds:02d} s, {r['global_step']} steps",
            f"{r['cpu_s']:.0f} s" if "cpu_s" in r else "-",
            f"{r['load_before']:.1f} → {r['load_after']:.1f}",
            "met" if passes(r, args) else "**missed**",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    extra: list[str] = []
    if "--" in argv:
        cut = argv.index("--")
        argv, extra = argv[:cut], argv[cut + 1 :]
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--config", type=Path, default=REPO / "configs" / "demo.yaml")
    parser.add_argument("--isa", help="ONEDNN_MAX_CPU_ISA for the runs, e.g. AVX2")
    parser.add_argument("--out", type=Path, help="JSON results (default: benchmarks/results-demo-seeds[-<isa>].json)")  # fmt: skip
    parser.add_argument("--workdir", type=Path, help="where the runs go (default: a temporary folder)")  # fmt: skip
    parser.add_argument("--min-dice", type=float, default=0.85, help="goal: best mean Dice")
    parser.add_argument("--min-class", type=float, default=0.6, help="goal: Dice of every class")
    parser.add_argument("--max-minutes", type=float, default=3.0, help="goal: training wall time")
    parser.add_argument("--show", type=Path, help="print the table of a saved results file, run nothing")  # fmt: skip
    args = parser.parse_args(argv)
    if args.show:
        saved = json.loads(args.show.read_text())
        for key, value in saved["goal"].items():
            setattr(args, key, value)
        print(f"Machine: {machine_line(saved['machine'])}; {saved['date'][:10]}\n")
        print(table(saved["runs"], saved["class_names"], args))
        return 0 if saved["all_met"] else 1

    env = {**os.environ, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "3"}
    if args.isa:
        # Set here too, so the machine line names the cap the runs use.
        os.environ["ONEDNN_MAX_CPU_ISA"] = env["ONEDNN_MAX_CPU_ISA"] = args.isa
    from unet_data.synthetic import CLASS_NAMES

    config = args.config.resolve()
    info = machine_info()
    print(f"Machine: {machine_line(info)}", flush=True)
    rows = []
    with tempfile.TemporaryDirectory(prefix="demo-seeds-") as tmp:
        workdir = args.workdir or Path(tmp)
        for seed in args.seeds:
            rows.append(run_seed(seed, config, workdir, extra, env))
            r = rows[-1]
            print(f"seed {seed}: mean Dice {r['dice']:.3f}, worst class {min(r['dice_per_class']):.3f}, "
                  f"{r['wall_time_s']:.0f} s", flush=True)  # fmt: skip
    names = list(CLASS_NAMES[: len(rows[0]["dice_per_class"])])
    print()
    print(f"Machine: {machine_line(info)}; {datetime.now(timezone.utc):%Y-%m-%d}")
    print()
    print(table(rows, names, args))
    ok = all(passes(r, args) for r in rows)
    suffix = f"-{args.isa.lower()}" if args.isa else ""
    out = args.out or REPO / "benchmarks" / f"results-demo-seeds{suffix}.json"
    result = {
        "machine": info,
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "config": str(config.relative_to(REPO) if config.is_relative_to(REPO) else config),
        "extra_args": extra,
        "goal": {
            "min_dice": args.min_dice,
            "min_class": args.min_class,
            "max_minutes": args.max_minutes,
        },
        "class_names": names,
        "all_met": ok,
        "runs": rows,
    }
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\n{'every seed met the goal' if ok else 'goal missed'}; results in {out}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
