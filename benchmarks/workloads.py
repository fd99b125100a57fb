"""The workloads ``benchmarks/throughput.py`` times: the PyTorch and Keras twins' inference and
training step, each framework served in its own process, and their peak memory."""

from __future__ import annotations

import functools
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from unet_runtime import machine_info
from unet_spec import UNetSpec, get_preset, random_weights

LR = 1e-4
ADAM_EPS = 1e-7  # Keras' default; torch gets the same so both optimisers do the same update


# -- workloads ------------------------------------------------------------------------------------
SEED_CONFIG = Path(__file__).resolve().parents[1] / "configs" / "seed.yaml"
# The script whose --worker mode runs one framework in its own process.
THROUGHPUT = Path(__file__).with_name("throughput.py")


def make_inputs(spec: UNetSpec, size: int, batch: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    x = rng.random((batch, spec.in_channels, size, size), dtype=np.float32)
    oh, ow = spec.plan().layout(size).output_size
    y = (rng.random((batch, spec.num_classes, oh, ow)) > 0.5).astype(np.float32)
    return x, y


def set_threads(framework: str, threads: int | None) -> None:
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
        x, y = make_inputs(spec, size, batch)
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
        x, y = make_inputs(spec, size, batch)
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
    set_threads(framework, threads)
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
        cmd = [sys.executable, str(THROUGHPUT), "--worker", f"serve_{framework}", "--presets", spec_name,
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


def peak_rss_mb() -> float:
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

        base = peak_rss_mb()
        bench = TorchBench(spec_name, size, batch, recompute if "recompute" in kind else ())
        fn = bench.unet if kind == "torch_infer" else bench.train
    else:
        import unet_keras  # noqa: F401

        base = peak_rss_mb()
        kbench = KerasBench(spec_name, size, batch)
        fn = kbench.call if kind == "keras_infer" else kbench.train
    fn()
    fn()
    return {"peak_rss_mb": peak_rss_mb(), "import_rss_mb": base}


def memory(spec_name: str, size: int, batch: int, recompute: tuple = ()) -> dict:
    out = {}
    kinds = ["torch_infer", "keras_infer", "torch_train", "keras_train"]
    kinds += ["torch_train_recompute"] if recompute else []
    for kind in kinds:
        cmd = [sys.executable, str(THROUGHPUT), "--worker", kind, "--presets", spec_name,
               "--size", str(size), "--batch", str(batch), *recompute_args(recompute)]  # fmt: skip
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError(f"{kind} worker failed:\n{proc.stderr[-2000:]}")
        out[kind] = json.loads(proc.stdout.strip().splitlines()[-1])
    return out


def recompute_args(recompute: tuple) -> list[str]:
    return ["--recompute", *recompute] if recompute else []
