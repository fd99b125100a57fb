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
import functools
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

from unet_runtime import keep_freed_memory, machine_info, machine_line
from unet_runtime.allocator import ENV_VAR as ALLOCATOR_ENV
from unet_spec import DEFAULT_SIZES, UNetSpec, get_preset, random_weights

LR = 1e-4
ADAM_EPS = 1e-7  # Keras' default; torch gets the same so both optimisers do the same update


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


# -- workloads ------------------------------------------------------------------------------------
SEED_CONFIG = Path(__file__).resolve().parents[1] / "configs" / "seed.yaml"


def _inputs(spec: UNetSpec, size: int, batch: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    x = rng.random((batch, spec.in_channels, size, size), dtype=np.float32)
    oh, ow = spec.plan().layout(size).output_size
    y = (rng.random((batch, spec.num_classes, oh, ow)) > 0.5).astype(np.float32)
    return x, y


def _set_threads(framework: str, threads: int | None) -> None:
    if not threads:
        return
    if framework == "torch":
        import torch

        torch.set_num_threads(threads)
    else:
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)


class TorchBench:
    """The paths a torch user takes without tuning, for one spec, size and batch.

    - ``unet``: ``UNet(spec)`` on an NCHW tensor under ``inference_mode`` (the model picks its
      own memory format);
    - ``predict``: ``TorchPredictor.forward`` on a numpy batch, as ``unet predict`` runs each batch
      of tiles (``unet_bridge.load_predictor`` builds this predictor);
    - ``train``: one Lightning training step of ``unet_train.system.SegmentationSystem`` with the
      model settings of ``configs/seed.yaml`` (its loss, optimiser, learning rate): the system's
      ``training_step``, backward, and the optimiser from its ``configure_optimizers``.
    """

    def __init__(self, spec_name: str, size: int, batch: int, recompute: tuple = ()) -> None:
        import torch

        from unet_torch import load_canonical

        self.torch = torch
        self.spec = spec = get_preset(spec_name)
        self.weights = weights = random_weights(spec)
        x, y = _inputs(spec, size, batch)
        self.x_np = x
        self.x = torch.from_numpy(x)
        self.labels = torch.from_numpy(y[:, 0] > 0.5).long()  # class ids for the system's loss
        self.system = self._system(spec_name, recompute)
        load_canonical(self.system.model, weights)
        self.opt = None

    @functools.cached_property
    def predictor(self):
        """Built when first used: a memory worker measures only the model its workload needs."""
        from unet_torch.predict import TorchPredictor

        return TorchPredictor(self.spec, self.weights)

    @staticmethod
    def _system(spec_name: str, recompute: tuple):
        import yaml
        from lightning.pytorch.cli import instantiate_module

        from unet_train.system import SegmentationSystem

        settings = yaml.safe_load(SEED_CONFIG.read_text())["model"]
        settings.update(preset=spec_name, recompute=list(recompute) or None)
        # As train.py builds it: the config's optimiser and schedule classes injected.
        return instantiate_module(SegmentationSystem, settings)

    def unet(self) -> None:
        from unet_torch import UNet  # noqa: F401  (the same module the system wraps)

        with self.torch.inference_mode():
            self.system.model.eval()(self.x)

    def predict(self) -> None:
        self.predictor.forward(self.x_np)

    def train(self) -> None:
        import warnings

        system = self.system
        if self.opt is None:
            # configure_optimizers reads the trainer's step count only for the scheduler; a
            # scheduler changes the learning rate, not the work of a step.
            system.trainer = _NoTrainer()  # the public setter
            opt = system.configure_optimizers()
            system.trainer = None  # self.log then only warns
            self.opt = opt["optimizer"] if isinstance(opt, dict) else opt
        system.train()
        self.opt.zero_grad(set_to_none=True)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # self.log without a running trainer
            loss = system.training_step((self.x, self.labels), 0)
        loss.backward()
        self.opt.step()


class _NoTrainer:
    """The one attribute ``configure_optimizers`` reads from a trainer."""

    estimated_stepping_batches = float("inf")


class KerasBench:
    """Keras inference and training step for the same spec, size, batch, weights and loss."""

    def __init__(self, spec_name: str, size: int, batch: int) -> None:
        import keras

        from unet_keras import build_unet, from_canonical, to_nhwc  # orders triton before TF

        spec = get_preset(spec_name)
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

    def train(self) -> None:
        keras = self.keras
        if not self.compiled:
            self.model.compile(
                optimizer=keras.optimizers.Adam(learning_rate=LR, epsilon=ADAM_EPS),
                loss=keras.losses.BinaryCrossentropy(from_logits=True),
            )
            self.compiled = True
        self.model.train_on_batch(self.x, self.y)


# Timed variants, in the order they alternate: each torch path next to the Keras call it is
# compared with, so a slow spell of the shared machine hits both sides of a ratio.
VARIANTS = (
    ("torch", "unet"),
    ("keras", "call"),
    ("torch", "predict"),
    ("keras", "predict"),
    ("torch", "train"),
    ("keras", "train"),
)


def serve(framework: str, spec_name: str, size: int, batch: int, threads: int | None) -> None:
    """Worker loop: build the bench, then run one named variant per line read from stdin and answer
    with its wall time. Both frameworks live in separate processes (the full seed model crashed in
    libc's ``free`` when PyTorch and TensorFlow trained in one process) but take turns, so their
    runs interleave one by one."""
    _set_threads(framework, threads)
    bench = (TorchBench if framework == "torch" else KerasBench)(spec_name, size, batch)
    # The worker's own machine line: whether malloc keeps freed memory is this process's state.
    print(json.dumps({"ready": True, "machine": machine_info()}), flush=True)
    for line in sys.stdin:
        name = line.strip()
        t = time.perf_counter()
        getattr(bench, name)()
        print(json.dumps({"s": time.perf_counter() - t}), flush=True)


class _Worker:
    def __init__(self, framework: str, spec_name: str, size: int, batch: int, threads) -> None:
        cmd = [sys.executable, __file__, "--worker", f"serve_{framework}", "--presets", spec_name,
               "--size", str(size), "--batch", str(batch)]  # fmt: skip
        cmd += ["--threads", str(threads)] if threads else []
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.machine = self._read()["machine"]

    def _read(self) -> dict:
        while line := self.proc.stdout.readline():
            if line.startswith("{"):
                return json.loads(line)
        raise RuntimeError(f"timing worker exited ({self.proc.wait()})")

    def run(self, name: str) -> float:
        self.proc.stdin.write(name + "\n")
        self.proc.stdin.flush()
        return self._read()["s"]

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait()


def time_pair(
    spec_name: str, size: int, batch: int, rounds: int, warmup: int, threads=None, variants=VARIANTS
) -> dict:
    """Median seconds per call of every variant, torch and Keras alternating call by call."""
    workers = {fw: _Worker(fw, spec_name, size, batch, threads) for fw in ("torch", "keras")}
    try:
        samples: dict[str, list[float]] = {f"{fw}_{v}": [] for fw, v in variants}
        for r in range(warmup + rounds):
            for fw, v in variants:
                t = workers[fw].run(v)
                if r >= warmup:
                    samples[f"{fw}_{v}"].append(t)
    finally:
        for w in workers.values():
            w.close()
    return {
        "median": {k: statistics.median(v) for k, v in samples.items()},
        "samples": samples,
        "machine": {fw: w.machine for fw, w in workers.items()},
    }


def _peak_rss_mb() -> float:
    # VmHWM, not getrusage: ru_maxrss survives exec, so a worker would report its parent's peak.
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def worker(kind: str, spec_name: str, size: int, batch: int, recompute: tuple = ()) -> dict:
    """Run one workload twice in a fresh process and report its peak RSS (and the idle baseline)."""
    if kind.startswith("torch"):
        import torch  # noqa: F401

        base = _peak_rss_mb()
        bench = TorchBench(spec_name, size, batch, recompute if "recompute" in kind else ())
        fn = bench.unet if kind == "torch_infer" else bench.train
    else:
        import unet_keras  # noqa: F401

        base = _peak_rss_mb()
        kbench = KerasBench(spec_name, size, batch)
        fn = kbench.call if kind == "keras_infer" else kbench.train
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


def _recompute_args(recompute: tuple) -> list[str]:
    return ["--recompute", *recompute] if recompute else []


# -- the CPU's FP32 peak --------------------------------------------------------------------------
# A dependent chain of integer adds retires one add per cycle on every x86 core, so its rate is the
# clock the core actually runs at (the boost clock, which /proc/cpuinfo does not show). Twelve
# independent FMA chains keep every FMA pipe busy (latency 4 × 2 pipes < 12), so their rate is the
# core's FMA throughput, which checks the FMA-units assumption of the peak formula.
_PEAK_C = r"""
#include <immintrin.h>
#include <stdio.h>
#include <time.h>
static double now(void){struct timespec t;clock_gettime(CLOCK_MONOTONIC,&t);return t.tv_sec+t.tv_nsec*1e-9;}
#define CH(M,T,P) T M##0=P##_set1_ps(0),M##1=P##_set1_ps(1),M##2=P##_set1_ps(2),M##3=P##_set1_ps(3),\
 M##4=P##_set1_ps(4),M##5=P##_set1_ps(5),M##6=P##_set1_ps(6),M##7=P##_set1_ps(7),M##8=P##_set1_ps(8),\
 M##9=P##_set1_ps(9),M##10=P##_set1_ps(10),M##11=P##_set1_ps(11);
#define ST(M,P) M##0=P##_fmadd_ps(M##0,b,c);M##1=P##_fmadd_ps(M##1,b,c);M##2=P##_fmadd_ps(M##2,b,c);\
 M##3=P##_fmadd_ps(M##3,b,c);M##4=P##_fmadd_ps(M##4,b,c);M##5=P##_fmadd_ps(M##5,b,c);\
 M##6=P##_fmadd_ps(M##6,b,c);M##7=P##_fmadd_ps(M##7,b,c);M##8=P##_fmadd_ps(M##8,b,c);\
 M##9=P##_fmadd_ps(M##9,b,c);M##10=P##_fmadd_ps(M##10,b,c);M##11=P##_fmadd_ps(M##11,b,c);
#define SUM(M,P) P##_add_ps(P##_add_ps(P##_add_ps(M##0,M##1),P##_add_ps(M##2,M##3)),\
 P##_add_ps(P##_add_ps(P##_add_ps(M##4,M##5),P##_add_ps(M##6,M##7)),\
 P##_add_ps(P##_add_ps(M##8,M##9),P##_add_ps(M##10,M##11))))
volatile float sink;
__attribute__((target("avx512f"))) double fma512(long n){
  __m512 b=_mm512_set1_ps(1.0000001f),c=_mm512_set1_ps(1e-9f); CH(a,__m512,_mm512)
  double t=now(); for(long k=0;k<n;k++){ST(a,_mm512)} t=now()-t;
  float o[16]; _mm512_storeu_ps(o,SUM(a,_mm512)); sink=o[0]; return n*12.0*16*2/t/1e9;}
__attribute__((target("avx2,fma"))) double fma256(long n){
  __m256 b=_mm256_set1_ps(1.0000001f),c=_mm256_set1_ps(1e-9f); CH(a,__m256,_mm256)
  double t=now(); for(long k=0;k<n;k++){ST(a,_mm256)} t=now()-t;
  float o[8]; _mm256_storeu_ps(o,SUM(a,_mm256)); sink=o[0]; return n*12.0*8*2/t/1e9;}
double clock_ghz(long n){ long x=0; double t=now();
  for(long k=0;k<n;k++){ __asm__ volatile("add $1,%0\n\tadd $1,%0\n\tadd $1,%0\n\tadd $1,%0\n\t"
     "add $1,%0\n\tadd $1,%0\n\tadd $1,%0\n\tadd $1,%0":"+r"(x)); }
  t=now()-t; return n*8.0/t/1e9; }
int main(int argc,char**argv){ double c=0,f5=0,f2=0,v; int avx512=argc>1;
  for(int r=0;r<25;r++){ v=clock_ghz(10000000); if(v>c)c=v;
    if(avx512){v=fma512(5000000); if(v>f5)f5=v;}
    v=fma256(5000000); if(v>f2)f2=v; }
  printf("{\"clock_ghz\": %.3f, \"fma512_gflops_core\": %.1f, \"fma256_gflops_core\": %.1f}\n",c,f5,f2);
  return 0; }
"""

FMA_UNITS_PER_CORE = 2  # Zen 4/5 and Intel server cores since Skylake-SP have two FMA pipes


def _cpuinfo_mhz() -> float | None:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("cpu MHz"):
                return float(line.split(":")[1])
    except (OSError, ValueError):
        pass
    return None


def cpu_peak(threads: int) -> dict:
    """FP32 peak of ``threads`` cores at the ISA oneDNN may use: cores × FMA units × lanes × 2 ×
    clock, with the clock measured (falls back to /proc/cpuinfo's, the base clock, without a C
    compiler). The lanes follow ``ONEDNN_MAX_CPU_ISA``: 16 with AVX-512, 8 under an AVX2 cap."""
    import shutil
    import tempfile

    info = machine_info()
    isa_cap = (os.environ.get("ONEDNN_MAX_CPU_ISA") or "").upper()
    flags = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    avx512 = " avx512f" in flags and (not isa_cap or "AVX512" in isa_cap or isa_cap == "ALL")
    out: dict = {"cpuinfo_mhz": _cpuinfo_mhz(), "fma_units_per_core": FMA_UNITS_PER_CORE,
                 "lanes": 16 if avx512 else 8, "cores": threads, "isa": info.get("isa")}  # fmt: skip
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc:
        with tempfile.TemporaryDirectory() as d:
            src, exe = Path(d) / "peak.c", Path(d) / "peak"
            src.write_text(_PEAK_C)
            build = subprocess.run([cc, "-O2", "-o", str(exe), str(src)], capture_output=True)
            if build.returncode == 0:
                run = subprocess.run([str(exe), *(["512"] if " avx512f" in flags else [])],
                                     capture_output=True, text=True)  # fmt: skip
                out.update(json.loads(run.stdout))
    clock = out.get("clock_ghz") or (out["cpuinfo_mhz"] or 0) / 1000
    out["clock_used_ghz"] = clock
    out["peak_gflops"] = threads * FMA_UNITS_PER_CORE * out["lanes"] * 2 * clock
    return out


def gemm_gflops(threads: int, n: int = 4096, reps: int = 5) -> dict:
    """A large FP32 GEMM two ways: ``torch.mm`` (MKL) and a 1×1 convolution (oneDNN, the library
    the convolutions run in), best of ``reps``."""
    import torch
    import torch.nn.functional as F

    torch.set_num_threads(threads)
    a, b = torch.rand(n, n), torch.rand(n, n)
    x = torch.rand(1, n, 64, 64).contiguous(memory_format=torch.channels_last)  # M = 64², K = n
    w = torch.rand(n, n, 1, 1)
    out = {}
    for name, fn, flops in (("mkl_mm", lambda: torch.mm(a, b), 2 * n**3),
                            ("onednn_1x1_conv", lambda: F.conv2d(x, w), 2 * n * n * 64 * 64)):  # fmt: skip
        fn()
        best = min(_timed(fn) for _ in range(reps))
        out[name] = flops / best / 1e9
    return out


def _timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


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
                   *_recompute_args(tuple(args.recompute))]  # fmt: skip
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
        _set_threads("torch" if args.worker.startswith("torch") else "keras", args.threads)
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
