"""Where a CPU training step goes: the torch step convolution by convolution, and Keras' step as a whole.

    python benchmarks/step_profile.py                       # seed at 572², batch 1
    python benchmarks/step_profile.py --presets seed-small --size 252 --json out.json

The torch side times the training step of ``unet_train.system.SegmentationSystem`` (the workload of
``benchmarks/throughput.py``) in NCHW, the default, and with ``model.channels_last`` (alternating),
then runs one NCHW step under ``torch.profiler`` and prints, for every convolution, its forward
and backward time and their GFLOP/s (forward 2·MACs, backward 4·MACs: the input gradient and the
weight gradient); the first convolution's input needs no gradient, so its backward counts 2·MACs.
The Keras side times ``model(x)`` and ``train_on_batch`` of the same model with TensorFlow's
inter-op pool at one thread and at its default, one per core (the intra-op pool keeps
``--threads``): with more than one inter-op thread TensorFlow runs independent kernels at once, such
as a convolution's input gradient and its weight gradient. Each side runs in its own process, one
after the other. Both report the minor page faults of one step: memory that ``malloc`` handed back
to the system and the kernel had to map in and zero again (``--malloc system`` shows glibc's
default; the default is ``unet_runtime.keep_freed_memory()``, as ``train.py`` and ``unet`` run).
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

from throughput import add_malloc_option, apply_malloc_option

from unet_runtime import machine_line


def torch_side(preset: str, size: int, batch: int, rounds: int) -> dict:
    import torch
    from torch.profiler import ProfilerActivity, profile
    from workloads import TorchBench

    bench = TorchBench(preset, size, batch)
    model = bench.system.model
    # The plan's convolutions in the order the model runs them, with their MACs at this size.
    convs = [info for info in bench.spec.layout(size) if info.macs]

    def memory_format(channels_last: bool) -> None:
        # What ``model.channels_last: true`` does: the weights and each batch in NHWC order.
        fmt = torch.channels_last if channels_last else torch.contiguous_format
        model.to(memory_format=fmt)
        bench.system.hparams["channels_last"] = channels_last

    steps: dict[bool, list[float]] = {False: [], True: []}
    for r in range(1 + rounds):  # the first round warms both formats up
        for channels_last in (False, True):
            memory_format(channels_last)
            t = time.perf_counter()
            bench.train()
            if r:
                steps[channels_last].append(time.perf_counter() - t)
    memory_format(False)  # the profile is of the default: NCHW
    faults = minor_faults()
    bench.train()
    faults = minor_faults() - faults
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        bench.train()
    # The profiler's rows in call order; backward runs the convolutions in reverse order.
    events = [
        e for e in prof.events() if e.name in ("aten::convolution", "aten::convolution_backward")
    ]
    forward = [e for e in events if e.name == "aten::convolution"]
    backward = [e for e in events if e.name == "aten::convolution_backward"][::-1]  # reverse order
    if not (len(forward) == len(backward) == len(convs)):
        raise SystemExit(
            f"profiler rows ({len(forward)} forward, {len(backward)} backward) do not match the "
            f"{len(convs)} convolutions"
        )
    layers = []
    for info, f, b in zip(convs, forward, backward, strict=True):
        macs = batch * info.macs
        fwd_s, bwd_s = f.cpu_time_total / 1e6, b.cpu_time_total / 1e6
        # No input gradient where the convolution reads the network's input.
        bwd_flops = (2 if info.block.inputs == ("input",) else 4) * macs
        layers.append({
            "layer": info.block.name, "gmacs": macs / 1e9,
            "forward_s": fwd_s, "backward_s": bwd_s,
            "forward_gflops": 2 * macs / fwd_s / 1e9,
            "backward_gflops": bwd_flops / bwd_s / 1e9,
        })  # fmt: skip
    return {
        "step_s": statistics.median(steps[False]),
        "channels_last_step_s": statistics.median(steps[True]),
        "threads": torch.get_num_threads(),
        "page_faults": faults,
        "machine": machine_line(),  # this process's, with its malloc setting
        "conv_forward_s": sum(r["forward_s"] for r in layers),
        "conv_backward_s": sum(r["backward_s"] for r in layers),
        "layers": layers,
    }


def minor_faults() -> int:
    """Minor page faults of this process so far: pages the kernel had to map in and zero."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def keras_side(preset: str, size: int, batch: int, rounds: int, threads: int, inter: int) -> dict:
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(inter)
    from workloads import KerasBench

    bench = KerasBench(preset, size, batch)
    bench.call()
    bench.train()
    faults = minor_faults()
    bench.train()
    faults = minor_faults() - faults
    calls, steps = [], []
    for _ in range(rounds):
        t = time.perf_counter()
        bench.call()
        calls.append(time.perf_counter() - t)
        t = time.perf_counter()
        bench.train()
        steps.append(time.perf_counter() - t)
    return {
        "inter_op": inter,
        "page_faults": faults,
        "forward_s": statistics.median(calls),
        "step_s": statistics.median(steps),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--presets", default="seed")
    p.add_argument("--size", type=int, default=572)
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    p.add_argument("--json", type=Path)
    add_malloc_option(p)
    p.add_argument("--worker", choices=["torch", "keras"], help=argparse.SUPPRESS)
    p.add_argument("--inter", type=int, default=0, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    apply_malloc_option(args, "keras" if args.worker == "keras" else "torch")
    if args.worker == "torch":
        import torch

        torch.set_num_threads(args.threads)
        print(json.dumps(torch_side(args.presets, args.size, args.batch, args.rounds)))
        return 0
    if args.worker == "keras":
        res = keras_side(args.presets, args.size, args.batch, args.rounds, args.threads, args.inter)
        print(json.dumps(res))
        return 0

    def run(*extra: str) -> dict:
        cmd = [sys.executable, __file__, "--presets", args.presets, "--size", str(args.size),
               "--batch", str(args.batch), "--rounds", str(args.rounds),
               "--threads", str(args.threads), *extra]  # fmt: skip
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            raise SystemExit(proc.stderr[-3000:])
        return json.loads(proc.stdout.strip().splitlines()[-1])

    report = {"preset": args.presets, "size": args.size, "batch": args.batch,
              "threads": args.threads}  # fmt: skip
    report["torch"] = run("--worker", "torch")
    report["machine"] = report["torch"]["machine"]
    # 0: TensorFlow's own choice (one inter-op thread per core), what a Keras user gets.
    report["keras"] = [run("--worker", "keras", "--inter", str(n)) for n in (1, 0)]
    t = report["torch"]
    print(f"{report['machine']}; {args.presets} {args.size}², batch {args.batch}")
    print(f"torch training step {t['step_s']:.3f} s: convolutions forward {t['conv_forward_s']:.3f} s, "
          f"backward {t['conv_backward_s']:.3f} s "
          f"({t['conv_backward_s'] / t['conv_forward_s']:.2f}× forward); "
          f"with model.channels_last: {t['channels_last_step_s']:.3f} s; "
          f"{t['page_faults']} page faults per step")  # fmt: skip
    print(
        "| convolution | GMACs | forward s | GFLOP/s | backward s | GFLOP/s | backward / forward |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    for r in t["layers"]:
        print(f"| {r['layer']} | {r['gmacs']:.2f} | {r['forward_s']:.3f} | {r['forward_gflops']:.0f} "
              f"| {r['backward_s']:.3f} | {r['backward_gflops']:.0f} "
              f"| {r['backward_s'] / r['forward_s']:.2f} |")  # fmt: skip
    for k in report["keras"]:
        print(
            f"Keras, inter-op threads {k['inter_op']}: model(x) {k['forward_s']:.3f} s, "
            f"training step {k['step_s']:.3f} s ({k['step_s'] / k['forward_s']:.2f}× forward), "
            f"{k['page_faults']} page faults per step"
        )
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
