"""GPU throughput and model-FLOP utilisation of the PyTorch twin, and tiled inference of one large
image: the ``--gpu`` and ``--large`` modes of ``benchmarks/throughput.py`` (run that script)."""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import time
from pathlib import Path

import numpy as np
from workloads import ADAM_EPS, LR, make_inputs, peak_rss_mb

from unet_runtime import machine_info, machine_line
from unet_spec import DEFAULT_SIZES, get_preset, random_weights

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
            x_np, y_np = make_inputs(spec, size, batch)
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
        "peak_rss_mb": peak_rss_mb(),
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
