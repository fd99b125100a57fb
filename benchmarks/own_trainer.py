"""A user's own Lightning ``Trainer``, with and without ``KeepFreedMemory``, against Keras.

    python benchmarks/own_trainer.py                     # seed at 572², batch 1
    python benchmarks/own_trainer.py --preset seed-small --size 252 --steps 3

``train.py`` makes glibc's ``malloc`` keep freed memory before anything runs
(:func:`unet_runtime.keep_freed_memory`); a script of the user's own that builds a ``Trainer`` and
calls ``fit`` does not, unless it gives the trainer :class:`unet_train.process.KeepFreedMemory`.
This times that script's training step both ways, each in a process of its own that makes no
process setting itself (unlike the other benchmarks, which are entry points and make it), and
Keras' ``train_on_batch`` of the same model in a third (the workload of
``benchmarks/throughput.py``).

The torch model is ``SegmentationSystem`` built from ``configs/seed.yaml``'s model settings, as
``train.py`` builds it, fed one fixed batch by a ``DataLoader`` through ``Trainer.fit``; a
callback times each training batch (forward, loss, backward, optimiser step) from
``on_train_batch_start`` to ``on_train_batch_end``. The three processes stay up and take turns,
one step each, so a slow spell of a shared machine falls on all of them alike; after ``--warmup``
turns, the report is the median step of each and the Keras / torch ratios (above 1: torch is
faster), with the minor page faults of a step.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from unet_runtime import ENV_VAR, machine_line

KINDS = ("torch", "torch+callback", "keras")


def _faults() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def _answer(**fields) -> None:
    print(json.dumps(fields), flush=True)


def torch_worker(preset: str, size: int, batch: int, steps: int, callback: bool) -> None:
    """Train through ``Trainer.fit``; each step waits for a line on stdin and answers its time."""
    import torch
    from lightning.pytorch import Callback, Trainer
    from torch.utils.data import DataLoader, Dataset
    from workloads import TorchBench, make_inputs

    from unet_runtime import freed_memory_kept
    from unet_spec import get_preset
    from unet_train.process import KeepFreedMemory

    x, y = make_inputs(get_preset(preset), size, 1)
    sample = (torch.from_numpy(x[0]), torch.from_numpy(y[0, 0] > 0.5).long())

    class Repeat(Dataset):
        def __len__(self) -> int:
            return steps * batch

        def __getitem__(self, i: int):
            return sample

    class Turns(Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
            if batch_idx == 0:
                _answer(ready=True, kept=freed_memory_kept(), machine=machine_line())
            sys.stdin.readline()
            self.t, self.f = time.perf_counter(), _faults()

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
            _answer(s=time.perf_counter() - self.t, faults=_faults() - self.f)

    trainer = Trainer(
        accelerator="cpu",
        devices=1,
        max_steps=steps,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
        callbacks=[Turns(), *([KeepFreedMemory()] if callback else [])],
    )
    system = TorchBench._system(preset, ())  # configs/seed.yaml's model settings, as train.py
    trainer.fit(system, DataLoader(Repeat(), batch_size=batch))


def keras_worker(preset: str, size: int, batch: int, steps: int) -> None:
    from workloads import KerasBench

    bench = KerasBench(preset, size, batch)
    _answer(ready=True, kept=None, machine=machine_line())
    for _ in range(steps):
        sys.stdin.readline()
        t, f = time.perf_counter(), _faults()
        bench.train()
        _answer(s=time.perf_counter() - t, faults=_faults() - f)


class _Worker:
    def __init__(self, kind: str, args: argparse.Namespace, env: dict[str, str]) -> None:
        cmd = [sys.executable, __file__, "--worker", kind, "--preset", args.preset,
               "--size", str(args.size), "--batch", str(args.batch),
               "--steps", str(args.warmup + args.steps)]  # fmt: skip
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     text=True, env=env)  # fmt: skip
        self.ready = self._read()

    def _read(self) -> dict:
        while line := self.proc.stdout.readline():
            if line.startswith("{"):
                return json.loads(line)
        raise SystemExit(f"a worker exited ({self.proc.wait()})")

    def step(self) -> dict:
        self.proc.stdin.write("\n")
        self.proc.stdin.flush()
        return self._read()

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--preset", default="seed")
    p.add_argument("--size", type=int, default=572)
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--warmup", type=int, default=2, help="untimed turns")
    p.add_argument("--steps", type=int, default=8, help="timed turns")
    p.add_argument("--json", type=Path)
    p.add_argument("--worker", choices=KINDS, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker == "keras":
        keras_worker(args.preset, args.size, args.batch, args.steps)
        return 0
    if args.worker:
        callback = args.worker == "torch+callback"
        torch_worker(args.preset, args.size, args.batch, args.steps, callback)
        return 0

    # The workers inherit no allocator choice: what a plain `python my_script.py` gets.
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("MALLOC_") and k not in ("GLIBC_TUNABLES", ENV_VAR)}  # fmt: skip
    workers = {kind: _Worker(kind, args, env) for kind in KINDS}
    samples: dict[str, list[dict]] = {kind: [] for kind in KINDS}
    try:
        for turn in range(args.warmup + args.steps):
            for kind, worker in workers.items():
                answer = worker.step()
                if turn >= args.warmup:
                    samples[kind].append(answer)
    finally:
        for worker in workers.values():
            worker.close()
    step = {k: statistics.median(a["s"] for a in samples[k]) for k in KINDS}
    report = {
        "machine": workers["torch+callback"].ready["machine"],
        "preset": args.preset,
        "size": args.size,
        "batch": args.batch,
        "step_s": step,
        "keras_over_torch": {k: step["keras"] / step[k] for k in KINDS[:2]},
        "kept": {k: w.ready["kept"] for k, w in workers.items()},
        "samples": samples,
    }
    print(f"{report['machine']}; {args.preset} {args.size}², batch {args.batch}, "
          f"median of {args.steps} steps, the three processes taking turns")  # fmt: skip
    print("| training step | malloc keeps freed memory | median s | page faults | Keras / torch |")
    print("|---|---|---:|---:|---:|")
    for kind in KINDS:
        kept = {True: "yes", False: "no", None: "–"}[report["kept"][kind]]
        ratio = f"{report['keras_over_torch'][kind]:.2f}×" if kind != "keras" else "1"
        faults = statistics.median(a["faults"] for a in samples[kind])
        print(f"| {kind} | {kept} | {step[kind]:.3f} | {faults:.0f} | {ratio} |")
    if args.json:
        args.json.write_text(json.dumps(report, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
