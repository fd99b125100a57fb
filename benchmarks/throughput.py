"""Throughput and memory of the PyTorch twin against the Keras twin, on the same model and input.

CPU mode (default) measures, for every preset and batch size:

- inference: torch NCHW, torch channels_last (both under ``inference_mode``), Keras ``model(x)``
  and Keras ``model.predict``;
- one training step (forward, backward, Adam update; the same logits loss on both sides);
- peak resident memory of inference and of a training step, each framework in its own subprocess.

The torch processes run with ``unet_runtime.keep_freed_memory()`` in force, as ``train.py`` and
``unet`` run; ``--malloc system`` leaves glibc's default instead. The tables'
machine line gives the torch worker's setting; the Keras workers never change ``malloc``.

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
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


from cpu_peak import cpu_peak, gemm_gflops
from workloads import memory, recompute_args, serve, set_threads, time_pair, worker

from unet_runtime import keep_freed_memory, machine_info, machine_line
from unet_runtime.allocator import ENV_VAR as ALLOCATOR_ENV
from unet_spec import DEFAULT_SIZES, get_preset


def add_malloc_option(parser: argparse.ArgumentParser) -> None:
    """``--malloc keep|system``, shared by the benchmarks that time torch."""
    parser.add_argument(
        "--malloc",
        choices=("keep", "system"),
        default="keep",
        help="keep: malloc keeps freed memory, as train.py and unet set it "
        "(unet_runtime.keep_freed_memory); system: glibc's default, for comparison",
    )


def apply_malloc_option(args: argparse.Namespace, framework: str) -> None:
    """Set the choice in the environment, where every worker process inherits it, and make it in
    a torch process as the entry points do (Keras processes leave ``malloc`` alone)."""
    if args.malloc == "system":
        os.environ[ALLOCATOR_ENV] = "system"
    if framework == "torch":
        keep_freed_memory()  # does nothing under UNET_MALLOC=system


# -- CPU report -----------------------------------------------------------------------------------
def cpu_config(args: argparse.Namespace) -> dict:
    """Every preset and batch at this process's ISA cap and ``args.threads``."""
    import torch

    threads = args.threads or torch.get_num_threads()
    torch.set_num_threads(threads)
    peak = cpu_peak(threads)
    gemm = gemm_gflops(threads)
    results = []
    for name in args.presets:
        size = args.size or DEFAULT_SIZES[name]
        macs = get_preset(name).plan().layout(size).macs
        for batch in args.batch:
            t0 = time.perf_counter()
            row = {"preset": name, "size": size, "batch": batch,
                   "gflop_forward": 2 * macs * batch / 1e9}  # fmt: skip
            timing = time_pair(name, size, batch, args.rounds, args.warmup, threads)
            row["time_s"], row["samples"] = timing["median"], timing["samples"]
            row["worker_machine"] = timing["machine"]
            recompute = tuple(args.recompute)
            if not args.no_memory:
                row["memory"] = memory(name, size, batch, recompute)
                row["recompute"] = list(recompute)
            results.append(row)
            print(f"  measured {name} {size}² batch {batch} in {time.perf_counter() - t0:.0f} s",
                  file=sys.stderr)  # fmt: skip
    import keras

    return {
        "mode": "cpu",
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        # As the torch worker saw it (its malloc setting included); Keras' malloc is left alone.
        "machine": machine_line(results[-1]["worker_machine"]["torch"]),
        "machine_info": machine_info(),
        "isa_cap": os.environ.get("ONEDNN_MAX_CPU_ISA") or "default",
        "threads": threads,
        "peak": peak,
        "gemm_gflops": gemm,
        "torch": torch.__version__,
        "keras": keras.__version__,
        "rounds": args.rounds,
        "load_average": os.getloadavg(),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "results": results,
    }


def cpu(args: argparse.Namespace) -> dict:
    """One configuration in this process, or with ``--matrix`` each ISA cap × thread count in its
    own child process (the ISA cap must be set before oneDNN starts)."""
    if not args.matrix:
        return {"mode": "cpu-matrix", "configs": [cpu_config(args)]}
    configs = []
    for spec in args.matrix:
        isa, threads = spec.split(":")
        env = dict(os.environ)
        env.pop("ONEDNN_MAX_CPU_ISA", None)
        if isa != "default":
            env["ONEDNN_MAX_CPU_ISA"] = isa
        batches = [str(b) for b in args.batch if threads == "2" or b == 1 or args.all_batches]
        with __import__("tempfile").NamedTemporaryFile(suffix=".json") as tmp:
            cmd = [sys.executable, __file__, "--presets", ",".join(args.presets), "--batch",
                   *batches, "--rounds", str(args.rounds), "--warmup", str(args.warmup),
                   "--threads", threads, "--json", tmp.name,
                   *(["--size", str(args.size)] if args.size else []),
                   *(["--no-memory"] if args.no_memory or configs else []),
                   *recompute_args(tuple(args.recompute))]  # fmt: skip
            subprocess.run(cmd, env=env, check=True, stdout=sys.stderr)
            configs += json.loads(Path(tmp.name).read_text())["configs"]
    return {"mode": "cpu-matrix", "configs": configs}


def _row_figures(cfg: dict, r: dict) -> list[dict]:
    """Per compared pair: seconds both sides, ratio Keras/torch, torch GFLOP/s and share of peak."""
    t, peak = r["time_s"], cfg["peak"]["peak_gflops"]
    out = []
    for what, torch_key, keras_key, factor in (
        ("UNet(spec) inference", "torch_unet", "keras_call", 1),
        ("unet predict (TorchPredictor)", "torch_predict", "keras_predict", 1),
        ("Lightning training step", "torch_train", "keras_train", 3),
    ):
        if torch_key not in t or keras_key not in t:
            continue
        flop = r["gflop_forward"] * factor
        out.append({"what": what, "torch_s": t[torch_key], "keras_s": t[keras_key],
                    "ratio": t[keras_key] / t[torch_key],
                    "torch_gflops": flop / t[torch_key], "keras_gflops": flop / t[keras_key],
                    "torch_peak_share": flop / t[torch_key] / peak,
                    "keras_peak_share": flop / t[keras_key] / peak})  # fmt: skip
    return out


def markdown_cpu(report: dict) -> str:
    lines = []
    for cfg in report["configs"]:
        pk = cfg["peak"]
        lines += [f"### {cfg['machine']}",
                  "",
                  f"ISA cap `{cfg['isa_cap']}`, {cfg['threads']} thread(s); torch {cfg['torch']}, "
                  f"Keras {cfg['keras']}; median of {cfg['rounds']} rounds, torch and Keras "
                  f"alternating call by call; load average at the end "
                  f"{', '.join(f'{v:.1f}' for v in cfg['load_average'])} (shared machine). "
                  f"FP32 peak {pk['peak_gflops']:.0f} GFLOP/s = {pk['cores']} cores × "
                  f"{pk['fma_units_per_core']} FMA × {pk['lanes']} lanes × 2 × "
                  f"{pk['clock_used_ghz']:.2f} GHz (measured clock; /proc/cpuinfo says "
                  f"{(pk['cpuinfo_mhz'] or 0) / 1000:.2f} GHz; measured FMA rate per core "
                  f"{pk.get('fma512_gflops_core', 0):.0f} GFLOP/s AVX-512, "
                  f"{pk.get('fma256_gflops_core', 0):.0f} AVX2). Large GEMM (4096): "
                  f"{cfg['gemm_gflops']['mkl_mm']:.0f} GFLOP/s `torch.mm` (MKL), "
                  f"{cfg['gemm_gflops']['onednn_1x1_conv']:.0f} GFLOP/s as a oneDNN 1×1 conv.",
                  "",
                  "| preset | size | batch | path | torch | Keras | Keras / torch | torch GFLOP/s | "
                  "torch % peak | Keras GFLOP/s | Keras % peak |",
                  "|---|---|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
        for r in cfg["results"]:
            for f in _row_figures(cfg, r):
                lines.append(
                    f"| {r['preset']} | {r['size']} | {r['batch']} | {f['what']} | "
                    f"{f['torch_s']:.3f} s | {f['keras_s']:.3f} s | **{f['ratio']:.2f}×** | "
                    f"{f['torch_gflops']:.0f} | {100 * f['torch_peak_share']:.0f} % | "
                    f"{f['keras_gflops']:.0f} | {100 * f['keras_peak_share']:.0f} % |"
                )
        mem = [r for r in cfg["results"] if "memory" in r]
        if mem:
            lines += ["", "| preset | size | batch | torch infer | Keras infer | torch train | "
                      "torch train, recompute | Keras train | train ratio (plain / recompute) |",
                      "|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
            for r in mem:
                p = {k: v["peak_rss_mb"] for k, v in r["memory"].items()}
                rec = p.get("torch_train_recompute")
                lines.append(
                    f"| {r['preset']} | {r['size']} | {r['batch']} | {p['torch_infer']:.0f} MB | "
                    f"{p['keras_infer']:.0f} MB | {p['torch_train']:.0f} MB | "
                    + (f"{rec:.0f} MB" if rec else "-")
                    + f" | {p['keras_train']:.0f} MB | "
                    f"{p['torch_train'] / p['keras_train']:.2f} / "
                    + (f"{rec / p['keras_train']:.2f}" if rec else "-")
                    + " |"
                )
        lines.append("")
    return "\n".join(lines)


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
    p.add_argument("--threads", type=int, help="CPU threads for both frameworks (default: torch's)")
    p.add_argument("--matrix", nargs="+", metavar="ISA:THREADS",
                   help="CPU configurations, each in its own process, e.g. default:2 AVX2:2 "
                        "default:1 AVX2:1 (1-thread rows at batch 1 unless --all-batches; peak "
                        "memory measured in the first configuration only)")  # fmt: skip
    p.add_argument("--all-batches", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--markdown", type=Path, help="also write the CPU tables as Markdown here")
    add_malloc_option(p)
    p.add_argument("--worker", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    apply_malloc_option(args, "keras" if args.worker and "keras" in args.worker else "torch")
    if args.worker:
        if args.worker.startswith("serve_"):
            serve(args.worker[6:], args.presets[0], args.size, args.batch[0], args.threads)
            return 0
        set_threads("torch" if args.worker.startswith("torch") else "keras", args.threads)
        res = worker(args.worker, args.presets[0], args.size, args.batch[0],
                     tuple(args.recompute))  # fmt: skip
        print(json.dumps(res))
        return 0
    if args.quick:
        args.presets, args.size, args.batch = args.presets or ["seed-small"], args.size or 188, [1]
        args.rounds, args.warmup = 2, 1
    args.presets = args.presets or (["seed"] if args.gpu else ["seed", "seed-small"])
    args.batch = args.batch or ([8, 16] if args.gpu else [1, 4])
    if args.large or args.gpu:
        from throughput_gpu import gpu, large, print_gpu  # the GPU and large-image modes

    if args.large:
        args.presets = args.presets if args.presets != ["seed", "seed-small"] else ["seed"]
        report = large(args)
    elif args.gpu:
        report = gpu(args)
        print_gpu(report)
    else:
        report = cpu(args)
        text = markdown_cpu(report)
        print(text)
        if args.markdown:
            args.markdown.write_text(text)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2))
    print(f"\nwrote {args.json}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
