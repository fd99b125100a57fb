"""Throughput and memory of the PyTorch twin against the Keras twin, on the same model and input.

CPU mode (default) measures, for every preset and batch size:

- inference: torch NCHW, torch channels_last (both under ``inference_mode``), Keras ``model(x)``
  and Keras ``model.predict``;
- one training step (forward, backward, Adam update; the same logits loss on both sides);
- peak resident memory of inference and of a training step, each framework in its own subprocess.

Each framework is timed in its own subprocess (the two together crash on the full seed model),
its variants alternating round by round so background load hits them alike; the median of the
rounds is reported. On a shared machine run it more than once and compare the ratios. It prints a table with torch/Keras ratios and writes JSON.

GPU mode (``--gpu``, torch only) measures images/s and model-FLOP utilisation (from the spec's MAC
count, FLOPs = 2 × MACs, training = 3 × forward) with bf16 autocast, channels_last and
``torch.compile``.

    python benchmarks/throughput.py                      # seed 572² batch 1 and 4, seed-small
    python benchmarks/throughput.py --quick              # smoke test in about a minute
    python benchmarks/throughput.py --gpu --batch 8      # on a CUDA machine
"""

from __future__ import annotations

import argparse
import datetime as dt
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

import numpy as np

from unet_spec import (
    DEFAULT_SIZES,
    UNetSpec,
    get_preset,
    machine_info,
    machine_line,
    random_weights,
)

LR = 1e-4
ADAM_EPS = 1e-7  # Keras' default; torch gets the same so both optimisers do the same update


# -- workloads ------------------------------------------------------------------------------------
def _inputs(spec: UNetSpec, size: int, batch: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    x = rng.random((batch, spec.in_channels, size, size), dtype=np.float32)
    oh, ow = spec.plan().layout(size).output_size
    y = (rng.random((batch, spec.num_classes, oh, ow)) > 0.5).astype(np.float32)
    return x, y


class TorchBench:
    """Torch inference and training step for one spec, size and batch."""

    def __init__(
        self, spec: UNetSpec, size: int, batch: int, device: str = "cpu", recompute: tuple = ()
    ) -> None:
        import torch

        from unet_torch import UNet, load_canonical

        self.torch = torch
        self.device = torch.device(device)
        self.spec = spec
        x, y = _inputs(spec, size, batch)
        self.x = torch.from_numpy(x).to(self.device)
        self.y = torch.from_numpy(y).to(self.device)
        model = UNet(spec, recompute=recompute)
        self.model = load_canonical(model, random_weights(spec)).to(self.device)
        self.x_cl = self.x.contiguous(memory_format=torch.channels_last)
        self.opt = None

    def _sync(self) -> None:
        if self.device.type == "cuda":
            self.torch.cuda.synchronize()

    def infer(self, channels_last: bool) -> None:
        torch = self.torch
        fmt = torch.channels_last if channels_last else torch.contiguous_format
        self.model.eval().to(memory_format=fmt)
        with torch.inference_mode():
            self.model(self.x_cl if channels_last else self.x)
        self._sync()

    def train_step(self) -> None:
        torch = self.torch
        if self.opt is None:
            # NCHW for training: on this CPU (AVX2, oneDNN) channels_last convolution backward
            # takes 1.6-2x longer than NCHW (seed 572², batch 1: 15.7-19.6 s against 9.9 s),
            # while channels_last wins for inference. The inference variants set their own format.
            self.model.train().to(memory_format=torch.contiguous_format)
            self.opt = torch.optim.Adam(self.model.parameters(), lr=LR, eps=ADAM_EPS)
            self.loss = torch.nn.BCEWithLogitsLoss()
        self.model.train().to(memory_format=torch.contiguous_format)  # infer() leaves it in eval
        self.opt.zero_grad(set_to_none=True)
        loss = self.loss(self.model(self.x), self.y)
        loss.backward()
        self.opt.step()
        self._sync()


class KerasBench:
    """Keras inference and training step for the same spec, size, batch, weights and loss."""

    def __init__(self, spec: UNetSpec, size: int, batch: int) -> None:
        import keras

        from unet_keras import build_unet, from_canonical, to_nhwc  # orders triton before TF

        self.keras = keras
        x, y = _inputs(spec, size, batch)
        self.x = to_nhwc(x)
        self.y = to_nhwc(y)
        self.batch = batch
        self.model = from_canonical(build_unet(spec, size), random_weights(spec), spec)
        self.compiled = False

    def call(self) -> None:
        self.keras.ops.convert_to_numpy(self.model(self.x, training=False))

    def predict(self) -> None:
        self.model.predict(self.x, batch_size=self.batch, verbose=0)

    def train_step(self) -> None:
        keras = self.keras
        if not self.compiled:
            self.model.compile(
                optimizer=keras.optimizers.Adam(learning_rate=LR, epsilon=ADAM_EPS),
                loss=keras.losses.BinaryCrossentropy(from_logits=True),
            )
            self.compiled = True
        self.model.train_on_batch(self.x, self.y)


def _timed(fn, rounds: int, warmup: int) -> list[float]:
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(rounds):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return out


def time_one(
    framework: str,
    spec_name: str,
    size: int,
    batch: int,
    rounds: int,
    warmup: int,
    recompute: tuple = (),
) -> dict:
    """Median seconds per call of one framework's variants, round-robin within the process."""
    spec = get_preset(spec_name)
    if framework == "torch":
        tb = TorchBench(spec, size, batch)
        variants = {
            "torch_nchw": lambda: tb.infer(False),
            "torch_channels_last": lambda: tb.infer(True),
            "torch_train": tb.train_step,
        }
        if recompute:
            variants["torch_train_recompute"] = TorchBench(
                spec, size, batch, recompute=recompute
            ).train_step
    else:
        kb = KerasBench(spec, size, batch)
        variants = {
            "keras_call": kb.call,
            "keras_predict": kb.predict,
            "keras_train": kb.train_step,
        }
    for fn in variants.values():
        _timed(fn, 0, warmup)
    samples: dict[str, list[float]] = {k: [] for k in variants}
    for _ in range(rounds):  # slow spells of the shared machine spread over all variants
        for name, fn in variants.items():
            samples[name] += _timed(fn, 1, 0)
    return {"median": {k: statistics.median(v) for k, v in samples.items()}, "samples": samples}


def time_pair(
    spec_name: str, size: int, batch: int, rounds: int, warmup: int, recompute: tuple = ()
) -> dict:
    """Median seconds per call of every variant.

    Each framework runs in its own subprocess, one after the other: the full seed model crashes
    (in libc's ``free``) when PyTorch and TensorFlow train in the same process on this stack.
    """
    out: dict = {"samples": {}}
    for framework in ("torch", "keras"):
        cmd = [sys.executable, __file__, "--worker", f"time_{framework}", "--presets", spec_name,
               "--size", str(size), "--batch", str(batch), "--rounds", str(rounds),
               "--warmup", str(warmup), *_recompute_args(recompute)]  # fmt: skip
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError(
                f"{framework} timing worker failed ({proc.returncode}):\n{proc.stderr[-2000:]}"
            )
        res = json.loads(proc.stdout.strip().splitlines()[-1])
        out.update(res["median"])
        out["samples"].update(res["samples"])
    return out


def _peak_rss_mb() -> float:
    # VmHWM, not getrusage: ru_maxrss survives exec, so a worker would report its parent's peak.
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def _recompute_args(recompute: tuple) -> list[str]:
    return ["--recompute", *recompute] if recompute else []


def worker(kind: str, spec_name: str, size: int, batch: int, recompute: tuple = ()) -> dict:
    """Run one workload twice in a fresh process and report its peak RSS (and the idle baseline)."""
    spec = get_preset(spec_name)
    if kind.startswith("torch"):
        import torch  # noqa: F401

        base = _peak_rss_mb()
        bench = TorchBench(spec, size, batch, recompute=recompute if "recompute" in kind else ())
        fn = (lambda: bench.infer(True)) if kind == "torch_infer" else bench.train_step
    else:
        import unet_keras  # noqa: F401

        base = _peak_rss_mb()
        kbench = KerasBench(spec, size, batch)
        fn = kbench.call if kind == "keras_infer" else kbench.train_step
    fn()
    fn()
    return {"peak_rss_mb": _peak_rss_mb(), "import_rss_mb": base}


def memory(spec_name: str, size: int, batch: int, recompute: tuple = ()) -> dict:
    out = {}
    kinds = ["torch_infer", "keras_infer", "torch_train", "keras_train"]
    kinds += ["torch_train_recompute"] if recompute else []
    for kind in kinds:
        cmd = [sys.executable, __file__, "--worker", kind, "--presets", spec_name,
               "--size", str(size), "--batch", str(batch), *_recompute_args(recompute)]  # fmt: skip
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError(f"{kind} worker failed:\n{proc.stderr[-2000:]}")
        out[kind] = json.loads(proc.stdout.strip().splitlines()[-1])
    return out


# -- CPU report -----------------------------------------------------------------------------------
def cpu(args: argparse.Namespace) -> dict:
    import torch

    results = []
    for name in args.presets:
        size = args.size or DEFAULT_SIZES[name]
        for batch in args.batch:
            t0 = time.perf_counter()
            row = {"preset": name, "size": size, "batch": batch}
            recompute = tuple(args.recompute)
            row["time_s"] = time_pair(name, size, batch, args.rounds, args.warmup, recompute)
            if recompute:
                row["recompute"] = list(recompute)
            if not args.no_memory:
                row["memory"] = memory(name, size, batch, recompute)
            results.append(row)
            print(f"  measured {name} {size}² batch {batch} in {time.perf_counter() - t0:.0f} s",
                  file=sys.stderr)  # fmt: skip
    import keras

    return {
        "mode": "cpu",
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": machine_line(),
        "machine_info": machine_info(),
        "torch": torch.__version__,
        "keras": keras.__version__,
        "threads": torch.get_num_threads(),
        "rounds": args.rounds,
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "results": results,
    }


def print_cpu(report: dict) -> None:
    print(f"# {report['machine']} · torch {report['torch']} · keras {report['keras']} · "
          f"{report['threads']} threads · median of {report['rounds']} rounds")  # fmt: skip
    head = (f"| {'preset':11s} | {'size':>4s} | {'batch':>5s} | {'torch NCHW':>10s} | "
            f"{'torch CL':>8s} | {'keras call':>10s} | {'keras pred':>10s} | {'infer ×':>7s} | "
            f"{'torch train':>11s} | {'keras train':>11s} | {'train ×':>7s} |")  # fmt: skip
    print(head)
    print("|" + "|".join("-" * (len(c)) for c in head.split("|")[1:-1]) + "|")
    for r in report["results"]:
        t = r["time_s"]
        best_keras = min(t["keras_call"], t["keras_predict"])
        print(f"| {r['preset']:11s} | {r['size']:>4d} | {r['batch']:>5d} | {t['torch_nchw']:>9.3f}s | "
              f"{t['torch_channels_last']:>7.3f}s | {t['keras_call']:>9.3f}s | "
              f"{t['keras_predict']:>9.3f}s | {best_keras / t['torch_channels_last']:>6.2f}× | "
              f"{t['torch_train']:>10.3f}s | {t['keras_train']:>10.3f}s | "
              f"{t['keras_train'] / t['torch_train']:>6.2f}× |")  # fmt: skip
    if any("memory" in r for r in report["results"]):
        print()
        print(
            "| preset      | size | batch | torch infer | keras infer | ratio | torch train | keras train | ratio |"
        )
        print(
            "|-------------|------|-------|-------------|-------------|-------|-------------|-------------|-------|"
        )
        for r in report["results"]:
            m = r.get("memory")
            if not m:
                continue
            p = {k: v["peak_rss_mb"] for k, v in m.items()}
            print(f"| {r['preset']:11s} | {r['size']:>4d} | {r['batch']:>5d} | {p['torch_infer']:>8.0f} MB | "
                  f"{p['keras_infer']:>8.0f} MB | {p['torch_infer'] / p['keras_infer']:.2f} | "
                  f"{p['torch_train']:>8.0f} MB | {p['keras_train']:>8.0f} MB | "
                  f"{p['torch_train'] / p['keras_train']:.2f} |")  # fmt: skip
    rows = [r for r in report["results"] if "torch_train_recompute" in r["time_s"]]
    if rows:
        print(
            "\n| preset | size | batch | recompute | torch train | train × | torch train peak | ratio |"
        )
        print("|---|---|---|---|---|---|---|---|")
        for r in rows:
            t, m = r["time_s"], r.get("memory", {})
            peak = m.get("torch_train_recompute", {}).get("peak_rss_mb")
            keras_peak = m.get("keras_train", {}).get("peak_rss_mb")
            mem = f"{peak:.0f} MB | {peak / keras_peak:.2f}" if peak and keras_peak else "- | -"
            print(f"| {r['preset']} | {r['size']} | {r['batch']} | {' '.join(r['recompute'])} | "
                  f"{t['torch_train_recompute']:.3f}s | "
                  f"{t['keras_train'] / t['torch_train_recompute']:.2f}× | {mem} |")  # fmt: skip
    print("\nratios: infer × = fastest Keras / torch channels_last; train × = Keras / torch; "
          "memory ratio = torch / Keras peak RSS")  # fmt: skip


# -- GPU ------------------------------------------------------------------------------------------
# Dense bf16 tensor-core peaks (TFLOP/s, no sparsity) from the vendors' data sheets.
_PEAK_BF16 = {"H100 PCIe": 756.0, "H100 NVL": 835.0, "H100": 989.4, "H200": 989.4, "A100": 312.0,
              "L40S": 362.0, "L4": 121.0}  # fmt: skip


def gpu(args: argparse.Namespace) -> dict:
    import torch

    from unet_torch import UNet, load_canonical

    if not torch.cuda.is_available():
        raise SystemExit("--gpu needs a CUDA device")
    name = torch.cuda.get_device_name()
    peak = args.peak_tflops or next((v for k, v in _PEAK_BF16.items() if k in name), None)
    torch.backends.cudnn.benchmark = True
    results = []
    for preset in args.presets:
        spec = get_preset(preset)
        size = args.size or DEFAULT_SIZES[preset]
        macs = spec.plan().layout(size).macs
        for batch in args.batch:
            x_np, y_np = _inputs(spec, size, batch)
            x = torch.from_numpy(x_np).cuda().contiguous(memory_format=torch.channels_last)
            y = torch.from_numpy(y_np).cuda()
            model = load_canonical(UNet(spec), random_weights(spec)).cuda()
            model = model.to(memory_format=torch.channels_last)
            row = {
                "preset": preset,
                "size": size,
                "batch": batch,
                "gflop_per_image": 2 * macs / 1e9,
            }
            for compiled in (mode == "compiled" for mode in args.modes):
                net = torch.compile(model) if compiled else model
                tag = "compiled" if compiled else "eager"

                def infer(net=net, x=x) -> None:
                    with torch.inference_mode(), torch.autocast("cuda", torch.bfloat16):
                        net(x)

                model.train()
                opt = torch.optim.Adam(model.parameters(), lr=LR, eps=ADAM_EPS, fused=True)
                loss_fn = torch.nn.BCEWithLogitsLoss()

                def train(net=net, opt=opt, x=x, y=y, loss_fn=loss_fn) -> None:
                    opt.zero_grad(set_to_none=True)
                    with torch.autocast("cuda", torch.bfloat16):
                        loss = loss_fn(net(x).float(), y)
                    loss.backward()
                    opt.step()

                for label, fn, flops in (("train", train, 6 * macs), ("infer", infer, 2 * macs)):
                    model.train(label == "train")
                    torch.cuda.reset_peak_memory_stats()
                    t = _gpu_time(fn, args.rounds, args.warmup)
                    ips = batch / t
                    row[f"{tag}_{label}"] = {
                        "s_per_batch": t,
                        "img_per_s": ips,
                        "tflops": flops * ips / 1e12,
                        "mfu": flops * ips / 1e12 / peak if peak else None,
                        "peak_mem_gb": torch.cuda.max_memory_allocated() / 1e9,
                    }
                    print(f"  {preset} b{batch} {tag} {label}: {ips:.1f} img/s, "
                          f"{flops * ips / 1e12:.0f} TFLOP/s", file=sys.stderr)  # fmt: skip
                if args.profile and not compiled:
                    model.train()
                    row["eager_train_kernels"] = _gpu_kernels(train)
            results.append(row)
    return {
        "mode": "gpu",
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "device": name,
        "peak_bf16_tflops": peak,
        "torch": torch.__version__,
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "results": results,
    }


def _gpu_time(fn, rounds: int, warmup: int) -> float:
    import torch

    for _ in range(max(warmup, 3)):  # compile and autotune happen here
        fn()
    torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(rounds):
        fn()
    end.record()
    torch.cuda.synchronize()
    return start.elapsed_time(end) / 1000 / rounds


# Kernel-name fragments (cuDNN, CUTLASS, ATen) → what the kernel does; the first match wins.
_KERNEL_KINDS = (
    ("conv dgrad", ("dgrad",)),
    ("conv wgrad", ("wgrad",)),
    ("conv fprop", ("fprop", "implicit_convolve", "conv2d", "convolution", "xmma", "cudnn")),
    ("gemm", ("gemm", "cutlass")),
    ("layout change", ("nchwtonhwc", "nhwctonchw", "transpose", "permute")),
    ("resize", ("upsample", "interp")),
    ("pool", ("pool",)),
    ("cat / copy", ("cat", "copy")),
    ("reduce", ("reduce",)),
    ("optimizer", ("adam", "foreach", "multi_tensor")),
    ("elementwise", ("elementwise", "vectorized", "threshold", "relu")),
)


def _gpu_kernels(fn, steps: int = 3) -> dict:
    """Where one training step's GPU time goes: self time per kernel kind, and the top kernels."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    fn()
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(steps):
            fn()
        torch.cuda.synchronize()
    times: dict[str, float] = {}
    for e in prof.key_averages():
        t = getattr(e, "self_device_time_total", None) or getattr(e, "self_cuda_time_total", 0)
        if t > 0 and e.device_type == torch.autograd.DeviceType.CUDA:
            times[e.key] = times.get(e.key, 0.0) + t / 1e3 / steps  # ms per step
    kinds: dict[str, float] = {}
    for name, ms in times.items():
        low = name.lower()
        kind = next((k for k, keys in _KERNEL_KINDS if any(f in low for f in keys)), "other")
        kinds[kind] = kinds.get(kind, 0.0) + ms
    total = sum(times.values())
    top = sorted(times.items(), key=lambda kv: -kv[1])[:12]
    print(f"    kernel time per step {total:.1f} ms: "
          + ", ".join(f"{k} {100 * v / total:.0f} %" for k, v in
                      sorted(kinds.items(), key=lambda kv: -kv[1])), file=sys.stderr)  # fmt: skip
    return {
        "ms_per_step": total,
        "by_kind_ms": dict(sorted(kinds.items(), key=lambda kv: -kv[1])),
        "top_kernels_ms": [[name[:120], ms] for name, ms in top],
    }


def _percent(v: float | None) -> str:
    return f"{100 * v:.1f} %" if v is not None else "n/a"


# -- one large image ------------------------------------------------------------------------------
def large(args: argparse.Namespace) -> dict:
    """Tiled inference of one ``--large``² random image with the torch backend: wall time, peak RSS."""
    import torch

    from unet_torch.predict import TorchPredictor

    preset = args.presets[0]
    spec = get_preset(preset)
    n = args.large
    image = np.random.default_rng(0).random((spec.in_channels, n, n), dtype=np.float32)
    predictor = TorchPredictor(spec, random_weights(spec), "cuda" if args.gpu else "cpu")
    t = time.perf_counter()
    probs = predictor.predict(image, tile=args.tile, batch_size=args.batch[0])
    wall = time.perf_counter() - t
    report = {
        "mode": "large",
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": machine_line(),
        "machine_info": machine_info(),
        "torch": torch.__version__,
        "preset": preset,
        "image": [spec.in_channels, n, n],
        "output": list(probs.shape),
        "tile": args.tile,
        "wall_s": wall,
        "peak_rss_mb": _peak_rss_mb(),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
    }
    print(f"{preset} {n}×{n}: {wall:.1f} s, peak RSS {report['peak_rss_mb']:.0f} MB")
    return report


def print_gpu(report: dict) -> None:
    peak = report["peak_bf16_tflops"]
    print(f"# {report['device']} · torch {report['torch']} · bf16 autocast, channels_last · "
          f"dense bf16 peak {peak} TFLOP/s")  # fmt: skip
    print(
        "| preset | size | batch | mode | infer img/s | infer MFU | train img/s | train TFLOP/s | train MFU | peak mem |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in report["results"]:
        for tag in ("eager", "compiled"):
            if f"{tag}_train" not in r:
                continue
            i, t = r[f"{tag}_infer"], r[f"{tag}_train"]
            mfu = _percent
            print(f"| {r['preset']} | {r['size']} | {r['batch']} | {tag} | {i['img_per_s']:.1f} | "
                  f"{mfu(i['mfu'])} | {t['img_per_s']:.1f} | {t['tflops']:.0f} | {mfu(t['mfu'])} | "
                  f"{t['peak_mem_gb']:.1f} GB |")  # fmt: skip


# -- entry point ----------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--presets", type=lambda s: s.split(","), default=None,
                   help="comma-separated presets (default: seed,seed-small)")  # fmt: skip
    p.add_argument("--size", type=int, help="input size (default: each preset's own)")
    p.add_argument("--batch", type=int, nargs="+", default=None, help="batch sizes (default: 1 4)")
    p.add_argument("--rounds", type=int, default=3, help="timed rounds (median reported)")
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--quick", action="store_true", help="seed-small at 188², batch 1, 2 rounds")
    p.add_argument("--no-memory", action="store_true", help="skip the peak-memory subprocesses")
    p.add_argument("--gpu", action="store_true", help="torch on CUDA: img/s and MFU (bf16)")
    p.add_argument("--peak-tflops", type=float, help="dense bf16 peak of the card, for MFU")
    p.add_argument(
        "--modes",
        nargs="+",
        choices=["eager", "compiled"],
        default=["eager", "compiled"],
        help="with --gpu: eager and/or torch.compile",
    )
    p.add_argument("--profile", action="store_true",
                   help="with --gpu: break the eager training step's GPU time down by kernel kind")  # fmt: skip
    p.add_argument("--large", type=int, help="tiled inference of one N×N image (torch), e.g. 4096")
    p.add_argument("--tile", type=int, help="tile size for --large (default: the engine's)")
    p.add_argument("--json", type=Path, default=Path("benchmarks/results.json"))
    p.add_argument("--recompute", nargs="+", default=[], metavar="LEVEL",
                   help="also time a torch training step that recomputes these plan levels "
                        "(activation checkpointing), e.g. enc1 enc2 enc3")  # fmt: skip
    p.add_argument("--worker", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        if args.worker.startswith("time_"):
            res = time_one(args.worker[5:], args.presets[0], args.size, args.batch[0], args.rounds,
                           args.warmup, tuple(args.recompute))  # fmt: skip
        else:
            res = worker(args.worker, args.presets[0], args.size, args.batch[0],
                         tuple(args.recompute))  # fmt: skip
        print(json.dumps(res))
        return 0
    if args.quick:
        args.presets, args.size, args.batch = args.presets or ["seed-small"], args.size or 188, [1]
        args.rounds, args.warmup = 2, 1
    args.presets = args.presets or (["seed"] if args.gpu else ["seed", "seed-small"])
    args.batch = args.batch or ([8, 16] if args.gpu else [1, 4])
    if args.large:
        args.presets = args.presets if args.presets != ["seed", "seed-small"] else ["seed"]
        report = large(args)
    elif args.gpu:
        report = gpu(args)
        print_gpu(report)
    else:
        report = cpu(args)
        print_cpu(report)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2))
    print(f"\nwrote {args.json}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
