"""Deployment exports: ONNX, TF SavedModel, LiteRT (``.tflite``) and ``torch.export`` (``.pt2``).

Each format is a module of :mod:`unet_bridge.artefacts` (its writer, its runtime loader, its
metadata reader), registered here as a write-only entry of the format registry
(:mod:`unet_bridge.formats`). A loaded artefact runs in its own runtime (onnxruntime, TensorFlow,
the LiteRT interpreter, ``torch.export.load``) on an NCHW float32 batch and returns NCHW logits,
converting layouts where the runtime is NHWC. :func:`export_model` writes through
:func:`unet_runtime.atomic_path` and proves the artefact like ``unet port`` proves a port: the
artefact runs in its runtime on random input (and an image when given), and its logits and final
outputs are judged against the PyTorch twin in fp32 and its float64 run by the one judge
(:func:`unet_bridge.judge.judge`). Only an artefact that passes lands
at the destination, with a model card beside it (:mod:`unet_bridge.card`).

Sizes: the batch dimension is always dynamic. Height and width are dynamic where the spec takes any
multiple of ``2**depth`` (same padding, ``skip_merge`` ``"none"`` or ``"pad"``); the rule is written into the
artefact (ONNX ``metadata_props``, the ``.pt2`` extra files, the SavedModel's ``assets.extra``).
Specs that resize or crop their skips are exported for one size.

Reduced precision (``precision``): ONNX ``fp16`` (onnxruntime's float16 conversion, float32 inputs
and outputs) and ``dynamic-int8`` (onnxruntime's dynamic quantisation of the convolutions); LiteRT
``fp16`` (float16 weights) and ``dynamic-int8`` (dynamic-range quantisation). They are judged by a
looser tolerance derived from the format's unit roundoff (:func:`precision_tolerance`), reported
with their argmax agreement, never silently passed.

Framework imports happen inside functions, so importing this module loads numpy only.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from unet_bridge import inputs
from unet_bridge.artefacts import ARTEFACTS
from unet_bridge.artefacts.common import (  # the shared parts, re-exported as the exports' API
    PRECISIONS,
    SIZES_KEY,
    SPEC_KEY,
    Artefact,
    LoadError,
    export_size,
    size_rule,
)
from unet_bridge.formats import FORMATS, Weights, format_of, register
from unet_bridge.proving import land
from unet_bridge.reads import Reference
from unet_runtime import check_destination
from unet_spec import NoiseCheck, NoiseTolerance, UNetSpec
from unet_spec.compare import FP32_EPS

#: Unit roundoff of each precision (half the spacing of numbers near 1, relative): fp32 2⁻²⁴,
#: fp16 2⁻¹¹, and for symmetric int8 with 127 levels per tensor (or channel) half a step of the
#: largest magnitude, 1/254.
UNIT_ROUNDOFF = {"fp32": FP32_EPS / 2, "fp16": 2.0**-11, "dynamic-int8": 1 / 254}

Runner = Callable[[np.ndarray], np.ndarray]


def precision_tolerance(precision: str, base: NoiseTolerance | None = None) -> NoiseTolerance:
    """The tolerance for an export in ``precision``.

    fp32: the parity tolerance (16 × the measured fp32 noise, floor 8 fp32 ε). Lower precisions:
    the measured fp32 noise scaled to the format by the ratio of unit roundoffs
    (:data:`UNIT_ROUNDOFF`; fp16: 2⁻¹¹/2⁻²⁴ = 8192; int8: 2²⁴/254 ≈ 66,000), times the same margin
    of 16. Rounding error grows with the unit roundoff, so a correct export stays within it, while
    a real defect (a wrong layout, a dropped op) moves the output by about its own size (rel ≈ 1)
    and still fails. The floor stays the fp32 one (8 ε × 16): scaling it too would let an int8
    artefact be off by its whole output scale.
    """
    base = base or NoiseTolerance()
    if precision not in UNIT_ROUNDOFF:
        raise ValueError(
            f"precision must be one of {', '.join(PRECISIONS)}. Received: {precision!r}"
        )
    ratio = UNIT_ROUNDOFF[precision] / UNIT_ROUNDOFF["fp32"]
    return NoiseTolerance(margin=base.margin * ratio, floor=base.floor / ratio)


# -- the registry ---------------------------------------------------------------------------------
#: The deployment formats, by suffix (each also registered as a write-only format): the artefacts'
#: own table, not a copy, so the two cannot disagree.
EXPORTS: dict[str, Artefact] = ARTEFACTS
for _artefact in EXPORTS.values():
    register(_artefact.fmt)


def export_of(path: str | os.PathLike[str]) -> Artefact:
    """The deployment format of ``path`` by its suffix (``ValueError`` for any other)."""
    name = Path(path).name
    if not any(name.endswith(s) and len(name) > len(s) for s in FORMATS):
        raise ValueError(
            f"{path}: unknown extension {Path(path).suffix or '(none)'!r}; "
            f"exports end in {', '.join(EXPORTS)}"
        )
    fmt = format_of(path)
    if fmt.suffix not in EXPORTS:
        raise ValueError(
            f"{path}: a {fmt.description} is a weight file, not a deployment format "
            f"(use `unet port`); exports end in {', '.join(EXPORTS)}"
        )
    return EXPORTS[fmt.suffix]


def load_artefact(path: str | os.PathLike[str]) -> Runner:
    """Any exported artefact loaded once in its runtime: NCHW float32 in, NCHW logits out."""
    return export_of(path).load(Path(path))


def run_artefact(path: str | os.PathLike[str], x: np.ndarray) -> np.ndarray:
    """Run any exported artefact in its own runtime: NCHW float32 in, NCHW logits out."""
    return load_artefact(path)(x)


def artefact_spec(path: str | os.PathLike[str]) -> UNetSpec | None:
    """The spec written into an exported artefact (``None`` when it holds none)."""
    return export_of(path).spec(Path(path))


# -- verified export ------------------------------------------------------------------------------
@dataclass(frozen=True)
class ExportCheck:
    """One input's comparison of the artefact against the canonical PyTorch model."""

    name: str
    shape: tuple[int, ...]
    logits: NoiseCheck
    output: NoiseCheck
    argmax_agreement: float

    @property
    def passed(self) -> bool:
        return self.logits.passed and self.output.passed

    def to_dict(self) -> dict[str, Any]:
        return {
            "input": self.name,
            "shape": list(self.shape),
            "passed": self.passed,
            "argmax_agreement": self.argmax_agreement,
            "logits": self.logits.to_dict(),
            "output": self.output.to_dict(),
        }


@dataclass
class ExportResult:
    """What :func:`export_model` wrote (or refused) and why."""

    ok: bool
    path: Path
    spec: UNetSpec
    precision: str
    runtime: str
    size_rule: str
    tolerance: NoiseTolerance
    checks: list[ExportCheck]
    seconds: dict[str, float] = field(default_factory=dict)
    bytes: int = 0
    card: Path | None = None

    @property
    def summary(self) -> str:
        return "; ".join(self.lines())

    def lines(self) -> list[str]:
        """The per-output report, one line per input and output."""
        rows = []
        for c in self.checks:
            h, w = c.shape[-2:]
            rows.append(
                f"{self.runtime} vs PyTorch, {c.name} {c.shape[0]}x{h}x{w}: logits {c.logits}; "
                f"argmax agreement {100 * c.argmax_agreement:.4f}%"
            )
            rows.append(f"  output ({self.spec.head}): {c.output}")
        return rows

    def to_dict(self) -> dict[str, Any]:
        return {
            "passed": self.ok,
            "path": str(self.path),
            "precision": self.precision,
            "runtime": self.runtime,
            "size_rule": self.size_rule,
            "tolerance": {"margin": self.tolerance.margin, "floor": self.tolerance.floor},
            "checks": [c.to_dict() for c in self.checks],
            "seconds": self.seconds,
            "bytes": self.bytes,
            "spec": self.spec.to_dict(),
        }


def check_inputs(
    spec: UNetSpec, trace: int, fixed: int | None, seed: int = 0, image: str | None = None
) -> dict[str, np.ndarray]:
    """The inputs an export is checked on: a random batch of 2 (for a dynamic artefact at a
    non-square size other than the traced one, so the dynamic axes are exercised), and the image."""
    checks: dict[str, np.ndarray] = {}
    rng = np.random.default_rng(seed)
    if fixed is None:
        cell = 2**spec.depth
        h, w = trace + cell, trace + 2 * cell
    else:
        h = w = fixed
    checks["random"] = rng.random((2, spec.in_channels, h, w), dtype=np.float32)
    if image is not None:
        checks[Path(image).name] = inputs.image_input(image, spec, fixed or trace)
    return checks


def verify_artefact(
    weights: Weights,
    spec: UNetSpec,
    path: Path,
    xs: Mapping[str, np.ndarray],
    tolerance: NoiseTolerance,
    run: Runner | None = None,
) -> list[ExportCheck]:
    """Run ``path`` in its runtime on each input and judge it against the PyTorch twin (the one
    judge, :func:`unet_bridge.judge.judge`: fp32, and float64 for the noise). Needs PyTorch, not
    Keras. ``run`` is the loaded artefact (default: loaded by its suffix)."""
    from unet_bridge.judge import judge

    artefact = Reference(run or load_artefact(path), "logits", f"{path}: the artefact")
    verdicts = judge(artefact, spec, weights, list(xs.values()), tolerance=tolerance)
    return [ExportCheck(name, v.shape, v.check, v.final, v.agreement)
            for name, v in zip(xs, verdicts, strict=True)]  # fmt: skip


def export_model(
    weights: Weights,
    spec: UNetSpec,
    dst: str | os.PathLike[str],
    *,
    size: int | None = None,
    dynamic: bool | None = None,
    opset: int | None = None,
    precision: str = "fp32",
    image: str | os.PathLike[str] | None = None,
    seed: int = 0,
    tolerance: NoiseTolerance | None = None,
    card: bool = True,
    metrics: Mapping[str, Any] | None = None,
    source: str | None = None,
) -> ExportResult:
    """Write ``weights`` as the deployment artefact ``dst`` (format by suffix), proven first.

    Args:
        weights, spec: Canonical weights and their spec.
        dst: ``.onnx``, ``.savedmodel`` (a folder), ``.tflite`` or ``.pt2``.
        size: The input size (default: dynamic where the spec allows it, else the preset's size).
        dynamic: H and W dynamic (``None``: where the spec allows it and ``size`` is not given).
        opset: ONNX opset (default: the exporter's).
        precision: ``fp32``, ``fp16`` or ``dynamic-int8`` (see :data:`PRECISIONS`).
        image: An image to check on besides the random batch.
        seed: Seed of the random check input.
        tolerance: The fp32 tolerance (scaled by :func:`precision_tolerance` for lower precisions).
        card: Write a model card beside the artefact (``DST.README.md``; ``README.md`` inside a
            SavedModel folder).
        metrics: Training metrics for the card (a run's ``metrics.json``).
        source: Where the weights came from, for the card.

    Returns:
        The verification's outcome (the artefact is at ``dst``).

    Raises:
        ValueError: An unknown suffix, a precision the format does not take, a size the spec does
            not take, an existing folder, or an artefact its runtime cannot load.
        RejectedError: The artefact computed something else; nothing is at ``dst``.
    """
    dst = Path(dst)
    export = export_of(dst)
    if precision not in export.precisions:
        raise ValueError(
            f"{dst}: a {export.fmt.description} is written in {', '.join(export.precisions)}; "
            f"precision {precision!r} is not available"
        )
    trace, fixed = export_size(spec, size, dynamic)
    check_destination(dst, folder_ok=export.fmt.folder)
    xs = check_inputs(spec, trace, fixed, seed, None if image is None else str(image))
    tol = precision_tolerance(precision, tolerance)
    from unet_bridge.parity import check_finite

    check_finite(weights)
    import unet_torch  # noqa: F401  (the reference; loaded before any TensorFlow, see frameworks)

    seconds: dict[str, float] = {}

    def write(tmp: Path) -> None:
        start = time.perf_counter()
        export.fmt.write(weights, spec, tmp, trace if fixed is not None else None,
                         dynamic=fixed is None, opset=opset, precision=precision)  # fmt: skip
        seconds["export"] = time.perf_counter() - start

    def prove(tmp: Path) -> ExportResult:
        start = time.perf_counter()
        checks = verify_artefact(weights, spec, tmp, xs, tol, export.load(tmp))
        seconds["verify"] = time.perf_counter() - start
        return ExportResult(
            all(c.passed for c in checks), dst, spec, precision, export.runtime,
            size_rule(spec, fixed), tol, checks, seconds, _size_of(tmp),
        )  # fmt: skip

    def write_card(tmp: Path, result: ExportResult) -> None:
        from unet_bridge.card import card_path, write_model_card

        inside = export.fmt.folder
        where = tmp if inside else card_path(dst)
        result.card = card_path(dst) if not inside else dst / "README.md"
        write_model_card(where, spec, parity=result, metrics=metrics, artefact=dst,
                         source=source)  # fmt: skip

    return land(dst, write, prove, folder=export.fmt.folder, finish=write_card if card else None)


def _size_of(path: Path) -> int:
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size


__all__ = [
    "EXPORTS",
    "PRECISIONS",
    "SIZES_KEY",
    "SPEC_KEY",
    "Artefact",
    "ExportCheck",
    "ExportResult",
    "LoadError",
    "artefact_spec",
    "export_model",
    "export_of",
    "export_size",
    "load_artefact",
    "precision_tolerance",
    "run_artefact",
    "size_rule",
    "verify_artefact",
]
