"""The parity runner: both twins on the same weights and input, judged block by block.

:func:`run_parity` builds the PyTorch and the Keras twin, taps every plan block, measures PyTorch's
fp32 noise against a float64 run of the same weights and input, and judges Keras by that noise
(:class:`ParityReport`, :func:`unet_spec.check_against_noise`). The model builders and taps are
public so that tests and benchmarks compare the same things the runner does; :func:`run_parity`
looks :func:`keras_model` up in this module, so a test can plant a defect by patching it here.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from unet_bridge.frameworks import environment_guard, import_frameworks
from unet_spec import (
    NoiseCheck,
    NoiseTolerance,
    UNetSpec,
    build_plan,
    check_against_noise,
    keras_name,
    label_rule,
)


# -- models and taps ------------------------------------------------------------------------------
def torch_model(spec: UNetSpec, weights: Mapping[str, np.ndarray], device: str = "cpu"):
    """``UNet(spec)`` with ``weights``, in eval mode, on ``device`` (PyTorch only: no Keras is
    loaded, so torch-only installs can use it)."""
    from unet_torch import UNet, load_canonical

    return load_canonical(UNet(spec), weights).eval().to(device)


def keras_model(
    spec: UNetSpec, weights: Mapping[str, np.ndarray], size: int | None, dtype: str = "float32"
):
    """``build_unet(spec, size)`` with ``weights`` (logits out), built under the Keras dtype policy
    ``dtype``: ``"float64"`` computes in double precision, ``"mixed_bfloat16"`` in bf16 with float32
    variables."""
    import_frameworks()
    import keras

    from unet_keras import build_unet, from_canonical

    if dtype == "float32":
        return from_canonical(build_unet(spec, size, kernel_initializer="zeros"), weights, spec)
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(dtype)
    try:
        return from_canonical(build_unet(spec, size, kernel_initializer="zeros"), weights, spec)
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

    def hook(name: str):
        # Copy now: the next block may be an in-place ReLU that overwrites this output.
        def save(_module, _inputs, output) -> None:
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


def twin_taps(
    spec: UNetSpec,
    weights: Mapping[str, np.ndarray],
    xs: Sequence[np.ndarray],
    names: Sequence[str],
    *,
    float64: bool = False,
    device: str = "cpu",
) -> list[dict[str, np.ndarray]]:
    """The PyTorch twin built once, in fp32 on ``device`` or as the float64 reference on the CPU
    (:func:`unet_torch.adapters.to_float64`), its blocks ``names`` tapped on each NCHW input."""
    from unet_torch.adapters import to_float64

    model = torch_model(spec, weights, "cpu" if float64 else device)
    if float64:
        model = to_float64(model)
    return [torch_taps(model, x, names, "cpu" if float64 else device) for x in xs]


def reference_taps(
    spec: UNetSpec, weights: Mapping[str, np.ndarray], x: np.ndarray, names: Sequence[str]
) -> dict[str, np.ndarray]:
    """The float64 reference: the PyTorch twin run in double precision on the CPU."""
    return twin_taps(spec, weights, [x], names, float64=True)[0]


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


def check_finite(
    weights: Mapping[str, np.ndarray] | None = None, x: np.ndarray | None = None, what: str = ""
) -> None:
    """Raise ``ValueError`` naming the first non-finite weight tensor or the input.

    A parity check on NaN or infinite values has no answer (every comparison fails), so it is bad
    input, not a result out of tolerance.
    """
    prefix = f"{what}: " if what else ""
    for name, value in (weights or {}).items():
        bad = int(np.size(value) - np.count_nonzero(np.isfinite(value)))
        if bad:
            raise ValueError(
                f"{prefix}weight {name} holds {bad} non-finite value(s) (NaN or inf); "
                "parity needs finite weights"
            )
    if x is not None and not np.isfinite(x).all():
        bad = int(x.size - np.count_nonzero(np.isfinite(x)))
        raise ValueError(f"{prefix}the input holds {bad} non-finite value(s) (NaN or inf)")


# -- the report and the runner --------------------------------------------------------------------
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

    def lines(self) -> list[str]:
        """The report as ``unet parity`` prints it: one row per block, the outputs, the verdict."""
        out = [
            f"{'block':18s} {'kind':10s} {'shape':>16s} {'max|Δ|':>9s} {'rel':>9s} "
            f"{'noise':>9s} {'limit':>9s} {'×noise':>7s}  status"
        ]
        for row in self.layers:
            c = row.check
            shape = "×".join(map(str, c.shape[1:]))
            out.append(
                f"{row.name:18s} {row.kind:10s} {shape:>16s} {c.max_abs:9.3g} {c.rel:9.3g} "
                f"{c.noise_rel:9.3g} {c.rel_limit:9.3g} {c.noise_ratio:7.2f}  "
                f"{'ok' if c.passed else 'OUT'}"
            )
        out.append(f"logits: {self.logits}")
        out.append(f"output ({self.spec.head}): {self.output}")
        out.append(f"first block out of tolerance: {self.first_failure or 'none'}")
        v, t = self.versions, self.seconds
        out.append(
            f"machine: {v.get('cpu')}, torch {v.get('cpu_capability')}, oneDNN ISA "
            f"{v.get('onednn_max_cpu_isa')}, {v.get('torch_threads')} threads; torch "
            f"{v.get('torch')}, keras {v.get('keras')} on {v.get('keras_backend')} "
            f"{v.get('tensorflow', '')}; TF32 off; time torch {t.get('torch', 0):.1f}s, "
            f"float64 {t.get('float64', 0):.1f}s, keras {t.get('keras', 0):.1f}s"
        )
        tol = self.tolerance
        limits = f"each block within {tol.margin:g}× the fp32 noise (floor {tol.floor:.3g})"
        out.append(f"verdict: {'PASS' if self.passed else 'FAIL'} ({limits})")
        return out

    def plot_png(self) -> bytes:
        """Per-block max |Δ| and relative error beside the noise and the limit, as PNG bytes."""
        import io

        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        rows = self.layers
        tol = self.tolerance
        floor = 1e-12  # exact zeros have no place on a log axis
        xs = range(len(rows))
        fig, ax = plt.subplots(figsize=(max(8, 0.18 * len(rows)), 4.5), dpi=100)
        ax.semilogy(xs, [max(r.max_abs, floor) for r in rows], ".-", label="max |Δ|")
        ax.semilogy(xs, [max(r.rel, floor) for r in rows], ".-", label="relative error")
        ax.semilogy(xs, [max(r.check.noise_rel, floor) for r in rows], ":", color="C2",
                    label="fp32 noise (PyTorch vs float64)")  # fmt: skip
        ax.semilogy(xs, [r.check.rel_limit for r in rows], "--", color="C1", lw=0.8,
                    label=f"limit ({tol.margin:g}× noise)")  # fmt: skip
        failed = [i for i, r in enumerate(rows) if not r.passed]
        if failed:
            ax.axvline(failed[0], color="red", lw=0.8, label=f"first out: {rows[failed[0]].name}")
        ax.set_xticks(list(xs))
        ax.set_xticklabels([r.name for r in rows], rotation=90, fontsize=6)
        ax.set_ylabel("Keras vs PyTorch")
        ax.set_title(f"per-block parity — {'PASS' if self.passed else 'FAIL'}")
        ax.legend(fontsize=7)
        fig.tight_layout()
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png")
        plt.close(fig)
        return buffer.getvalue()

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
    *,
    output: str = "logits",
    candidate64: np.ndarray | None = None,
) -> tuple[NoiseCheck, NoiseCheck]:
    """The noise rule and the label rule on a candidate's outputs against the twin's logits.

    Args:
        spec: The spec (its head and class count pick the label rule).
        candidate: The candidate's fp32 output, NCHW.
        reference: The twin's fp32 logits on the same input.
        reference64: The twin's float64 logits (what its fp32 noise is measured against).
        tolerance: Margin and floor (default :class:`~unet_spec.NoiseTolerance`).
        output: What the candidate gives: ``"logits"``, or probabilities through ``"sigmoid"``
            or ``"softmax"`` (the twin's logits go through the same activation).
        candidate64: The candidate's own float64 output, when it runs in float64 too: its noise
            then counts (:func:`unet_spec.check_against_noise`).

    Returns:
        ``(check, final)``: the candidate's own output judged, and the final outputs through
        ``spec.head`` (for logits: both sides through the head; for probabilities: ``check``).
    """
    act = "none" if output == "logits" else output
    check = check_against_noise(
        candidate, head(reference, act), head(reference64, act), tolerance,
        labels=label_rule(spec, act != "none"), candidate64=candidate64,
    )  # fmt: skip
    if act != "none":
        return check, check
    c64 = None if candidate64 is None else head(candidate64, spec.head)
    final = check_against_noise(
        head(candidate, spec.head), head(reference, spec.head), head(reference64, spec.head),
        tolerance, labels=label_rule(spec, spec.head != "none"), candidate64=c64,
    )  # fmt: skip
    return check, final


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
    ref = twin_taps(spec, weights, [x], names, device=device)[0]
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
