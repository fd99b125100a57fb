"""Memory and speed of folder datasets read when used, through ``train.py fit`` (the user's path).

Generates 512² RGB PNG pairs once (low-entropy shapes, so 20,000 pairs stay small on disk), then
runs ``train.py fit`` for a few steps on 400, 4,000 and 20,000 of them and records the peak memory
of the whole process tree (the trainer and its data-loader workers: the largest single RSS and the
largest sum of PSS, which counts pages shared by forked workers once) and the steps per second
after warm-up. The in-memory path (``data.preload: true``, every sample decoded in setup, as before
files were read when used) runs on the smallest size for comparison.

    python benchmarks/data_memory.py --data /tmp/unet-mem --sizes 400 4000 20000
    python benchmarks/data_memory.py --plot-only     # redraw the plot from the JSON

Results: ``benchmarks/results-data-memory.json``, ``.md`` and ``.png``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from multiprocessing import Pool
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
SIZE = 512


def _pair(i: int, folder: Path) -> None:
    from PIL import Image

    img_path, mask_path = folder / "images" / f"p{i:05d}.png", folder / "masks" / f"p{i:05d}.png"
    if img_path.exists() and mask_path.exists():
        return
    rng = np.random.default_rng(i)
    image = np.empty((SIZE, SIZE, 3), np.uint8)
    image[:] = rng.integers(0, 256, 3, dtype=np.uint8)
    mask = np.zeros((SIZE, SIZE), np.uint8)
    for c in (1, 2, 1, 2):
        y, x = rng.integers(0, SIZE - 96, 2)
        h, w = rng.integers(24, 96, 2)
        image[y : y + h, x : x + w] = rng.integers(0, 256, 3, dtype=np.uint8)
        mask[y : y + h, x : x + w] = c
    Image.fromarray(image).save(img_path, compress_level=1)
    Image.fromarray(mask).save(mask_path, compress_level=1)


def _pair_star(args: tuple[int, Path]) -> None:
    _pair(*args)


def generate(root: Path, sizes: list[int]) -> None:
    """``root/all/{train,val}`` with max(sizes) training pairs and 8 validation pairs; one folder
    per size whose train/ links to the first N pairs (no copies)."""
    full = root / "all"
    for part, n, offset in (("train", max(sizes), 0), ("val", 8, 10**6)):
        for sub in ("images", "masks"):
            (full / part / sub).mkdir(parents=True, exist_ok=True)
        with Pool(2) as pool:
            pool.map(_pair_star, [(offset + i, full / part) for i in range(n)], chunksize=64)
    for n in sizes:
        dst = root / f"n{n}"
        if (dst / "train" / "images").is_dir():
            continue
        for sub in ("images", "masks"):
            (dst / "train" / sub).mkdir(parents=True, exist_ok=True)
            names = sorted(os.listdir(full / "train" / sub))[:n]
            for name in names:
                os.symlink(full / "train" / sub / name, dst / "train" / sub / name)
        if not (dst / "val").exists():
            os.symlink(full / "val", dst / "val")


# -- memory of a process tree -------------------------------------------------------------------
def _tree(pid: int) -> list[int]:
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        try:
            for task in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{task}/children") as f:
                    todo.extend(int(c) for c in f.read().split())
        except OSError:
            pass
    return out


def _field(path: str, key: str) -> int:
    try:
        with open(path) as f:
            for line in f:
                if line.startswith(key):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


class TreeMemory(threading.Thread):
    """Peak largest RSS and peak sum of PSS over a process tree, sampled every ``period`` s."""

    def __init__(self, pid: int, period: float = 0.25) -> None:
        super().__init__(daemon=True)
        self.pid, self.period = pid, period
        self.peak_rss = self.peak_pss_sum = 0
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            pids = _tree(self.pid)
            rss = max((_field(f"/proc/{p}/status", "VmRSS:") for p in pids), default=0)
            pss = sum(_field(f"/proc/{p}/smaps_rollup", "Pss:") for p in pids)
            self.peak_rss, self.peak_pss_sum = max(self.peak_rss, rss), max(self.peak_pss_sum, pss)
            time.sleep(self.period)


# -- one run --------------------------------------------------------------------------------------
def run(root: Path, steps: int, workers: int, preload: bool, out: Path) -> dict:
    times = out / "steps.json"
    cmd = [sys.executable, str(REPO / "train.py"), "fit", "--seed_everything", "0",
           "--model.preset", "modern-small",
           "--data", "unet_train.folder.FolderDataModule", "--data.in_channels", "3", "--data.root", str(root),
           "--data.num_classes", "3", "--data.crop_size", "128", "--data.batch_size", "8",
           "--data.num_workers", str(workers), "--data.preload", str(preload).lower(),
           "--trainer.max_steps", str(steps), "--trainer.accelerator", "cpu",
           "--trainer.logger", "false", "--trainer.enable_progress_bar", "false",
           "--trainer.num_sanity_val_steps", "0", "--trainer.default_root_dir", str(out),
           "--artifacts.keras_export", "false", "--artifacts.overlays", "0",
           "--trainer.callbacks+=data_memory.StepTimes", f"--trainer.callbacks.path={times}"]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": f"{HERE}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, cwd=out)  # fmt: skip
    watch = TreeMemory(proc.pid)
    watch.start()
    log, _ = proc.communicate()
    watch.done.set()
    watch.join()
    if proc.returncode != 0:
        raise SystemExit(f"train.py failed ({proc.returncode}):\n{log[-3000:]}")
    stamps = json.loads(times.read_text())
    warm = 5  # the first steps start the workers and fill their queues
    rate = (len(stamps) - 1 - warm) / (stamps[-1] - stamps[warm])
    return {"wall_s": round(time.perf_counter() - start, 1), "steps_per_s": round(rate, 3),
            "peak_rss_gb": round(watch.peak_rss / 1e9, 3),
            "peak_pss_sum_gb": round(watch.peak_pss_sum / 1e9, 3)}  # fmt: skip


try:  # the step timer is loaded by train.py from this file (PYTHONPATH=benchmarks)
    import lightning as L

    class StepTimes(L.Callback):
        """Writes the wall-clock time of each finished training step to ``path`` (JSON)."""

        def __init__(self, path: str) -> None:
            self.path, self.stamps = path, []

        def on_train_batch_end(self, *args, **kwargs) -> None:
            self.stamps.append(time.perf_counter())

        def on_train_end(self, *args, **kwargs) -> None:
            Path(self.path).write_text(json.dumps(self.stamps))
except ModuleNotFoundError:  # the parent process needs no torch
    pass


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lazy = [r for r in results["runs"] if not r["preload"]]
    mem = [r for r in results["runs"] if r["preload"]]
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot([r["pairs"] for r in lazy], [r["peak_pss_sum_gb"] for r in lazy], "o-",
            label="read when used (PSS sum, all processes)")  # fmt: skip
    ax.plot([r["pairs"] for r in lazy], [r["peak_rss_gb"] for r in lazy], "s--",
            label="read when used (largest process RSS)")  # fmt: skip
    if mem:
        ax.plot([r["pairs"] for r in mem], [r["peak_pss_sum_gb"] for r in mem], "x", ms=10,
                label="in memory (preload, PSS sum)")  # fmt: skip
    if results.get("before"):
        b = results["before"]
        ax.plot(b["pairs"], b["rss_gb"], "^:", label="before (in memory, measured in the issue)")
    ax.set_xscale("log")
    ax.set_xlabel("training pairs (512² RGB PNG)")
    ax.set_ylabel("peak memory (GB)")
    ax.set_title("train.py fit, 20 steps")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def table(results: dict) -> str:
    rows = [f"Machine: {results['machine']} (CPU shared with another job during the runs)", "",
            "| pairs | path | workers | peak PSS sum (GB) | largest RSS (GB) | steps/s | wall (s) |",
            "|---:|---|---:|---:|---:|---:|---:|"]  # fmt: skip
    for r in results["runs"]:
        path = "in memory (preload)" if r["preload"] else "read when used"
        rows.append(f"| {r['pairs']:,} | {path} | {r['workers']} | {r['peak_pss_sum_gb']:.2f} | "
                    f"{r['peak_rss_gb']:.2f} | {r['steps_per_s']:.2f} | {r['wall_s']:.0f} |")  # fmt: skip
    return "\n".join(rows) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=Path("/tmp/unet-mem"))
    parser.add_argument("--sizes", type=int, nargs="+", default=[400, 4000, 20000])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--out", type=Path, default=HERE / "results-data-memory")
    parser.add_argument("--plot-only", action="store_true")
    args = parser.parse_args()
    json_path = args.out.with_suffix(".json")
    if args.plot_only:
        plot(json.loads(json_path.read_text()), args.out.with_suffix(".png"))
        return
    sys.path.insert(0, str(REPO))
    from unet_runtime import atomic_write_bytes, machine_line

    generate(args.data, args.sizes)
    results = {"machine": machine_line(), "steps": args.steps, "runs": [],
               "before": {"pairs": [400, 3000], "rss_gb": [3.09, 17.8]}}  # fmt: skip
    plan = [(n, False) for n in args.sizes] + [(min(args.sizes), True), (min(args.sizes), False)]
    for n, preload in plan:
        out = args.data / "runs" / f"n{n}-{'mem' if preload else 'lazy'}-{time.time_ns()}"
        out.mkdir(parents=True)
        r = run(args.data / f"n{n}", args.steps, args.workers, preload, out)
        r.update(pairs=n, preload=preload, workers=args.workers)
        print(json.dumps(r), flush=True)
        results["runs"].append(r)
        atomic_write_bytes(json_path, (json.dumps(results, indent=2) + "\n").encode())
    atomic_write_bytes(args.out.with_suffix(".md"), table(results).encode())
    plot(results, args.out.with_suffix(".png"))


if __name__ == "__main__":
    main()
