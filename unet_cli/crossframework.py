"""Run the PyTorch and the Keras twin side by side: the one module that imports both frameworks.

``unet parity``, ``unet port``'s verification and the parity tests all go through here:

- :func:`import_frameworks` imports the torch stack before Keras/TensorFlow (TensorFlow followed by
  triton crashes the interpreter);
- :func:`environment_guard` turns TF32 off on both sides (on a GPU both would otherwise round
  matmul and convolution inputs to 10-bit mantissas) and records what the numbers depend on:
  framework versions, oneDNN settings, devices, threads;
- :func:`run_parity` runs both models with a tap on every plan block, measures PyTorch's fp32
  noise against a float64 run of the same weights and input, and judges Keras block by block by
  that noise (:class:`ParityReport`, :func:`unet_spec.check_against_noise`);
- :func:`load_any_weights` / :func:`save_any_weights` read and write every weight format by suffix.

Framework imports happen inside functions, so importing this module stays cheap.
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from unet_spec import (
    PRESETS,
    NoiseCheck,
    NoiseTolerance,
    UNetSpec,
    build_plan,
    check_against_noise,
    keras_name,
)
from unet_spec.machine import machine_info

#: Suffixes ``unet port`` and ``unet parity`` read and write.
SUFFIXES = (".ckpt", ".pt", ".safetensors", ".keras", ".weights.h5")


def import_frameworks() -> None:
    """Import the torch stack, then Keras (the only safe order; see ``unet_keras._imports``)."""
    # isort: off
    import unet_torch  # noqa: F401
    import unet_keras  # noqa: F401
    # isort: on


def environment_guard() -> dict[str, Any]:
    """Make both frameworks compute in true fp32 and describe the environment.

    TF32 is turned off for PyTorch (matmul and cuDNN) and TensorFlow. oneDNN is left as configured
    (``TF_ENABLE_ONEDNN_OPTS``; on by default on x86 Linux) but recorded, since it changes
    TensorFlow's accumulation order on CPUs.

    Returns:
        Versions, devices, threads and numeric settings, for reports.
    """
    import_frameworks()
    import keras
    import torch

    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.set_float32_matmul_precision("highest")
    info: dict[str, Any] = {
        **machine_info(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "torch": torch.__version__,
        "keras": keras.__version__,
        "keras_backend": keras.backend.backend(),
        "torch_threads": torch.get_num_threads(),
        "torch_mkldnn": bool(torch.backends.mkldnn.is_available()),
        "torch_cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "torch_tf32": False,
        "TF_ENABLE_ONEDNN_OPTS": os.environ.get("TF_ENABLE_ONEDNN_OPTS", "default (on)"),
    }
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        tf.config.experimental.enable_tensor_float_32_execution(False)
        info["tensorflow"] = tf.__version__
        info["tf_tf32"] = bool(tf.config.experimental.tensor_float_32_execution_enabled())
        info["tf_gpus"] = [d.name for d in tf.config.list_physical_devices("GPU")]
        info["tf_intra_op_threads"] = tf.config.threading.get_intra_op_parallelism_threads()
    return info


# -- weight files -------------------------------------------------------------------------------
def suffix_of(path: str | os.PathLike[str]) -> str:
    """The weight-format suffix of ``path`` (``.weights.h5`` counts as one).

    Raises:
        ValueError: An extension no reader knows.
    """
    name = Path(path).name
    for suffix in SUFFIXES:
        if name.endswith(suffix) and len(name) > len(suffix):
            return suffix
    raise ValueError(
        f"{path}: unknown extension {Path(path).suffix or '(none)'!r}; "
        f"weight files end in {', '.join(SUFFIXES)}"
    )


def load_any_weights(
    path: str | os.PathLike[str], spec: UNetSpec | None = None
) -> tuple[dict[str, np.ndarray], UNetSpec, Any]:
    """Canonical weights and spec from any supported file.

    Returns:
        ``(weights, spec, keras_model)``; ``keras_model`` is the model loaded from a ``.keras``
        file (possibly one this project did not build), ``None`` for other formats.
    """
    suffix = suffix_of(path)
    import_frameworks()
    if suffix in (".keras", ".weights.h5"):
        from unet_keras.foreign import load_keras_weights

        return load_keras_weights(path, spec)
    from unet_torch.io import load_any

    weights, spec = load_any(path, spec)
    return weights, spec, None


def save_any_weights(
    weights: Mapping[str, np.ndarray],
    spec: UNetSpec,
    path: str | os.PathLike[str],
    input_size: int | Sequence[int] | None = None,
) -> Path:
    """Write ``weights`` in the format named by ``path``'s suffix, atomically.

    ``input_size`` fixes the input of a ``.keras`` model (default: :func:`default_size`).
    """
    suffix = suffix_of(path)
    import_frameworks()
    if suffix == ".keras":
        from unet_keras.io import export_keras

        size = input_size if input_size is not None else model_size(spec)
        export_keras(weights, spec, path, size)
        return Path(path)
    if suffix == ".weights.h5":
        from unet_keras.foreign import save_weights_h5

        return save_weights_h5(weights, spec, path, input_size)
    from unet_torch.io import save_any

    return save_any(weights, spec, path)


def preset_name(spec: UNetSpec) -> str | None:
    """The registered name of ``spec``, if it is a preset."""
    return next((name for name, s in PRESETS.items() if s == spec), None)


def default_size(spec: UNetSpec) -> int:
    """The preset's natural input size, or the valid size nearest 256."""
    from unet_spec import DEFAULT_SIZES

    name = preset_name(spec)
    if name in DEFAULT_SIZES:
        return DEFAULT_SIZES[name]
    return build_plan(spec).nearest_valid_size(256)


def model_size(spec: UNetSpec) -> int | None:
    """The input size a saved Keras model is built for: ``None`` (any) when the spec allows it."""
    return None if spec.skip_merge == "none" else default_size(spec)


def check_size(spec: UNetSpec, size: int) -> int:
    """``size`` if the spec takes it (raises ``ValueError`` naming the nearest valid sizes)."""
    build_plan(spec).check_size(size)
    return size


def small_size(spec: UNetSpec) -> int:
    """A small valid input size, for quick checks such as a port's verification."""
    return build_plan(spec).nearest_valid_size(12 * 2**spec.depth, direction="up")


def random_input(spec: UNetSpec, size: int, batch: int = 1, seed: int = 0) -> np.ndarray:
    """An NCHW float32 batch uniform in [0, 1), like a scaled image."""
    rng = np.random.default_rng(seed)
    return rng.random((batch, spec.in_channels, size, size), dtype=np.float32)


def image_input(
    path: str | os.PathLike[str], spec: UNetSpec, size: int, batch: int = 1
) -> np.ndarray:
    """An image file as an NCHW float32 batch in [0, 1], resized to ``size``×``size``."""
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such image")
    modes = {1: "L", 3: "RGB", 4: "RGBA"}
    if spec.in_channels not in modes:
        raise ValueError(
            f"{path}: images give 1, 3 or 4 channels; the spec needs "
            f"in_channels={spec.in_channels} (use --random)"
        )
    try:
        with Image.open(path) as img:
            img = img.convert(modes[spec.in_channels]).resize((size, size), Image.BILINEAR)
            array = np.asarray(img, dtype=np.float32) / 255.0
    except (UnidentifiedImageError, OSError) as err:
        raise ValueError(f"{path}: not a readable image ({err})") from None
    array = array.reshape(size, size, spec.in_channels).transpose(2, 0, 1)
    return np.repeat(array[None], batch, axis=0)


# -- models ---------------------------------------------------------------------------------------
def torch_model(spec: UNetSpec, weights: Mapping[str, np.ndarray], device: str = "cpu"):  # noqa: ANN201
    """``UNet(spec)`` with ``weights``, in eval mode, on ``device``."""
    import_frameworks()
    from unet_torch import UNet, load_canonical

    return load_canonical(UNet(spec), weights).eval().to(device)


def keras_model(  # noqa: ANN201
    spec: UNetSpec, weights: Mapping[str, np.ndarray], size: int | None, dtype: str = "float32"
):
    """``build_unet(spec, size)`` with ``weights`` (logits out); ``dtype="float64"`` builds it
    under Keras' float64 dtype policy (variables and computation in double precision)."""
    import_frameworks()
    import keras

    from unet_keras import build_unet, from_canonical

    if dtype == "float32":
        return from_canonical(build_unet(spec, size), weights, spec)
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(dtype)
    try:
        return from_canonical(build_unet(spec, size), weights, spec)
    finally:
        keras.config.set_dtype_policy(previous)


def tapped_blocks(spec: UNetSpec) -> list[str]:
    """Every block after the input, in plan order."""
    return [b.name for b in build_plan(spec).blocks[1:]]


def torch_taps(
    model: Any, x: np.ndarray, names: Sequence[str], device: str = "cpu"
) -> dict[str, np.ndarray]:
    """Outputs of the blocks ``names`` of a :class:`~unet_torch.UNet` on NCHW ``x``, in the
    model's own precision (float64 for a model in ``double()``)."""
    import torch

    dtype = next(model.parameters()).dtype
    taps: dict[str, np.ndarray] = {}

    def hook(name: str):  # noqa: ANN202
        # Copy now: the next block may be an in-place ReLU that overwrites this output.
        def save(_module, _inputs, output) -> None:  # noqa: ANN001
            taps[name] = output.detach().to("cpu").numpy().copy()

        return save

    handles = [model.get_submodule(n).register_forward_hook(hook(n)) for n in names]
    try:
        with torch.no_grad():
            model(torch.from_numpy(x).to(device, dtype))
    finally:
        for handle in handles:
            handle.remove()
    return taps


def reference_taps(
    spec: UNetSpec, weights: Mapping[str, np.ndarray], x: np.ndarray, names: Sequence[str]
) -> dict[str, np.ndarray]:
    """The float64 reference: the PyTorch model run in double precision on the CPU."""
    return torch_taps(torch_model(spec, weights).double(), x, names)


def keras_taps(model: Any, x: np.ndarray, names: Sequence[str]) -> dict[str, np.ndarray]:
    """Outputs (NCHW) of the layers ``names`` of a Keras model on NCHW ``x``."""
    import keras

    from unet_keras import to_nchw, to_nhwc

    tap_model = keras.Model(model.input, [model.get_layer(keras_name(n)).output for n in names])
    # A direct call runs eagerly, op by op, like PyTorch (no XLA fusion that reorders sums).
    outputs = tap_model(to_nhwc(x), training=False)
    outputs = outputs if isinstance(outputs, (list, tuple)) else [outputs]
    return {n: to_nchw(np.asarray(keras.ops.convert_to_numpy(o), dtype=np.float32))
            for n, o in zip(names, outputs, strict=True)}  # fmt: skip


def head(logits: np.ndarray, activation: str) -> np.ndarray:
    """A spec's head activation on NCHW logits, in float64 numpy."""
    z = np.asarray(logits, dtype=np.float64)
    if activation == "sigmoid":
        return 1.0 / (1.0 + np.exp(-z))
    if activation == "softmax":
        e = np.exp(z - z.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)
    return z


def parity_labels(spec: UNetSpec, probabilities: bool) -> str:
    """How the parity check turns ``spec``'s outputs into labels, by the rule of
    :func:`unet_spec.tiling.labels_from_probs`: the argmax over several channels; one channel is
    thresholded at 0.5 as a sigmoid probability, else at 0 as a logit. (The check needs the rule
    by name, to measure each pixel's float64 margin from its threshold.)"""
    if spec.num_classes > 1:
        return "argmax"
    return "half" if probabilities and spec.head == "sigmoid" else "sign"


def check_finite(
    weights: Mapping[str, np.ndarray] | None = None, x: np.ndarray | None = None, what: str = ""
) -> None:
    """Raise ``ValueError`` naming the first non-finite weight tensor or the input.

    A parity check on NaN or infinite values has no answer (every comparison fails), so it is bad
    input, not a result out of tolerance.
    """
    prefix = f"{what}: " if what else ""
    for name, value in (weights or {}).items():
        bad = int(np.size(value) - np.isfinite(np.asarray(value, dtype=np.float64)).sum())
        if bad:
            raise ValueError(
                f"{prefix}weight {name} holds {bad} non-finite value(s) (NaN or inf); "
                "parity needs finite weights"
            )
    if x is not None and not np.isfinite(x).all():
        bad = int(x.size - np.isfinite(x).sum())
        raise ValueError(f"{prefix}the input holds {bad} non-finite value(s) (NaN or inf)")


# -- parity ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class LayerRow:
    """One block's comparison (Keras against the PyTorch reference and its fp32 noise)."""

    name: str
    kind: str
    check: NoiseCheck

    @property
    def passed(self) -> bool:
        return self.check.passed

    @property
    def shape(self) -> tuple[int, ...]:
        return self.check.shape

    @property
    def max_abs(self) -> float:
        return self.check.max_abs

    @property
    def rel(self) -> float:
        return self.check.rel


@dataclass
class ParityReport:
    """Everything ``unet parity`` prints or writes as JSON."""

    spec: UNetSpec
    input_shape: tuple[int, ...]
    tolerance: NoiseTolerance
    layers: list[LayerRow]
    logits: NoiseCheck
    output: NoiseCheck
    versions: dict[str, Any] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def first_failure(self) -> str | None:
        return next((row.name for row in self.layers if not row.passed), None)

    @property
    def passed(self) -> bool:
        return self.first_failure is None and self.logits.passed and self.output.passed

    def to_json_dict(self) -> dict[str, Any]:
        """The ``--json`` document of ``unet parity``."""
        return {
            "passed": self.passed,
            "max_abs": self.logits.max_abs,
            "rel": self.logits.rel,
            "noise_rel": self.logits.noise_rel,
            "rel_limit": self.logits.rel_limit,
            "logits": self.logits.to_dict(),
            "output": self.output.to_dict(),
            "first_failure": self.first_failure,
            "tolerance": asdict(self.tolerance),
            "versions": self.versions,
            "input_shape": list(self.input_shape),
            "spec": self.spec.to_dict(),
            "seconds": self.seconds,
            "layers": [{"name": r.name, "kind": r.kind, **r.check.to_dict()} for r in self.layers],
        }


def compare_taps(
    spec: UNetSpec,
    reference: Mapping[str, np.ndarray],
    reference64: Mapping[str, np.ndarray],
    candidate: Mapping[str, np.ndarray],
    tolerance: NoiseTolerance | None = None,
) -> list[LayerRow]:
    """Rows for the blocks all three tap sets hold, in plan order."""
    rows = []
    for block in build_plan(spec).blocks[1:]:
        if not all(block.name in taps for taps in (reference, reference64, candidate)):
            continue
        check = check_against_noise(
            candidate[block.name], reference[block.name], reference64[block.name], tolerance
        )
        rows.append(LayerRow(block.name, block.kind, check))
    return rows


def check_outputs(
    spec: UNetSpec,
    candidate: np.ndarray,
    reference: np.ndarray,
    reference64: np.ndarray,
    tolerance: NoiseTolerance | None = None,
) -> tuple[NoiseCheck, NoiseCheck]:
    """Logits and final outputs (through ``spec.head``) of a candidate, with the label check."""
    logits = check_against_noise(
        candidate, reference, reference64, tolerance, labels=parity_labels(spec, False)
    )
    output = check_against_noise(
        head(candidate, spec.head), head(reference, spec.head), head(reference64, spec.head),
        tolerance, labels=parity_labels(spec, spec.head != "none"),
    )  # fmt: skip
    return logits, output


def run_parity(
    spec: UNetSpec,
    weights: Mapping[str, np.ndarray],
    x: np.ndarray,
    tolerance: NoiseTolerance | None = None,
    device: str = "cpu",
    per_layer: bool = True,
    loaded_keras: Any = None,
) -> ParityReport:
    """Build both twins from ``weights``, run them on NCHW ``x`` and compare every block.

    PyTorch in fp32 is the reference, PyTorch in float64 (on the CPU) measures its fp32 noise, and
    Keras is judged against both (see :func:`unet_spec.check_against_noise`). Models are built for
    ``x``'s size and freed before returning; ``loaded_keras`` replaces the Keras twin built from
    ``weights`` (a model loaded from a file).

    Raises:
        ValueError: Non-finite weights or input, or a size the spec does not take.
    """
    tolerance = tolerance or NoiseTolerance()
    check_finite(weights, x)
    versions = environment_guard()
    size = x.shape[-1] if x.shape[-1] == x.shape[-2] else tuple(x.shape[-2:])
    build_plan(spec).check_size(size)
    out_name = build_plan(spec).output.name
    names = tapped_blocks(spec) if per_layer else [out_name]
    seconds: dict[str, float] = {}
    start = time.perf_counter()
    model = torch_model(spec, weights, device)
    ref = torch_taps(model, x, names, device)
    del model
    seconds["torch"] = time.perf_counter() - start
    start = time.perf_counter()
    ref64 = reference_taps(spec, weights, x, names)
    seconds["float64"] = time.perf_counter() - start
    start = time.perf_counter()
    kmodel = loaded_keras if loaded_keras is not None else keras_model(spec, weights, size)
    got = keras_taps(kmodel, x, names)
    del kmodel
    seconds["keras"] = time.perf_counter() - start
    logits, output = check_outputs(spec, got[out_name], ref[out_name], ref64[out_name], tolerance)
    rows = compare_taps(spec, ref, ref64, got, tolerance)
    return ParityReport(spec, tuple(x.shape), tolerance, rows, logits, output, versions, seconds)


# -- Keras on another backend ---------------------------------------------------------------------
def keras_backend_taps(
    cases: Sequence[tuple[UNetSpec, Mapping[str, np.ndarray], np.ndarray]],
    backend: str = "torch",
    timeout: float = 300.0,
) -> tuple[list[dict[str, np.ndarray]], dict[str, Any]]:
    """Run Keras twins on Keras backend ``backend`` in one subprocess (the backend is fixed per
    process) and return each case's block outputs (NCHW) and that process's environment report.

    Args:
        cases: ``(spec, weights, x)`` triples; ``x`` is NCHW.
        backend: A Keras backend name (``torch``, ``tensorflow``, ``jax``).
        timeout: Seconds before the subprocess is stopped.
    """
    import json

    from unet_spec import save_weights

    with tempfile.TemporaryDirectory(prefix="unet-keras-") as tmp:
        folder = Path(tmp)
        for i, (spec, weights, x) in enumerate(cases):
            save_weights(weights, spec, folder / f"{i}.safetensors")
            np.save(folder / f"{i}.npy", x)
        (folder / "cases.json").write_text(json.dumps(len(cases)))
        env = {**os.environ, "KERAS_BACKEND": backend}
        proc = subprocess.run(
            [sys.executable, "-m", "unet_cli.crossframework", "keras-taps", str(folder)],
            env=env, capture_output=True, text=True, timeout=timeout,
        )  # fmt: skip
        if proc.returncode != 0:
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
            raise RuntimeError(
                f"Keras on backend {backend!r} failed (exit {proc.returncode}): {tail[0]}"
            )
        taps = []
        for i in range(len(cases)):
            with np.load(folder / f"{i}.taps.npz") as data:
                taps.append({n: data[n] for n in data.files})
        info = json.loads((folder / "env.json").read_text())
    return taps, info


def _keras_taps_worker(folder: Path) -> None:
    import json

    from unet_spec import load_weights

    info = environment_guard()
    for i in range(json.loads((folder / "cases.json").read_text())):
        weights, spec = load_weights(folder / f"{i}.safetensors")
        x = np.load(folder / f"{i}.npy")
        size = x.shape[-1] if x.shape[-1] == x.shape[-2] else tuple(x.shape[-2:])
        taps = keras_taps(keras_model(spec, weights, size), x, tapped_blocks(spec))
        np.savez(folder / f"{i}.taps.npz", **taps)
    (folder / "env.json").write_text(json.dumps(info))


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "keras-taps":
        _keras_taps_worker(Path(sys.argv[2]))
    else:
        sys.exit("usage: python -m unet_cli.crossframework keras-taps FOLDER")
