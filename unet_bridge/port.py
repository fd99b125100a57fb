"""Porting weights between formats, and proving that a written file computes what its source does.

``unet port`` and the training run's Keras export write through :func:`write_verified`: the file is
written to a temporary path beside the destination (same suffix), reloaded and checked tensor by
tensor (bit-exact), both frameworks are run on it against the float64 reference, and only then is it
renamed into place. On any failure nothing is left at the destination.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from unet_bridge import inputs
from unet_bridge.formats import Size, format_of, load_any_weights
from unet_bridge.parity import (
    ParityReport,
    head,
    reference_taps,
    run_parity,
    torch_model,
    torch_taps,
)
from unet_runtime import atomic_path
from unet_spec import NoiseCheck, NoiseTolerance, UNetSpec, check_against_noise, label_rule


@dataclass(frozen=True)
class PortResult:
    """The outcome of a port: whether the file proved right (and landed), why, and the report."""

    ok: bool
    summary: str
    report: ParityReport | None = None


def write_verified(
    weights: Mapping[str, np.ndarray],
    spec: UNetSpec,
    dst: str | os.PathLike[str],
    input_size: Size = None,
    source_model: Any = None,
    verify: bool = True,
    seed: int = 0,
    x: np.ndarray | None = None,
    tolerance: NoiseTolerance | None = None,
    options: Mapping[str, Any] | None = None,
) -> PortResult:
    """Write ``weights`` to ``dst`` (format by suffix) only if the written file proves right.

    Args:
        weights: Canonical weights.
        spec: Their spec.
        dst: The destination; its suffix picks the format.
        input_size: Input size of a Keras model file.
        source_model: A Keras model the weights came from; it is run against the PyTorch twin too.
        verify: Reload and run the written file before it lands.
        seed: Seed of the random check input (when ``x`` is not given).
        x: The check input, NCHW float32 (default: random, at a small valid size).
        tolerance: The noise-aware tolerance (default :class:`~unet_spec.NoiseTolerance`).
        options: Keyword arguments of the format's writer (a hub folder's ``with_keras``,
            ``metrics``, ``source``).

    A folder format's member files (a hub folder's ``model.keras``) are verified with it.

    Returns:
        The verification's outcome (the file is at ``dst``).

    Raises:
        RejectedError: The written file failed; nothing is at ``dst`` (its ``result`` says why).
    """
    dst = Path(dst)
    fmt = format_of(dst)
    options = dict(options or {})
    with atomic_path(dst, folder=fmt.folder) as tmp:
        # tmp is already the atomic stand-in for dst
        fmt.write(weights, spec, tmp, input_size, **options)
        if not verify:
            return PortResult(True, "not verified (--no-verify)")
        result = verify_file(weights, spec, tmp, source_model, seed, dst, x, tolerance)
        for member in fmt.members(tmp) if fmt.members is not None and result.ok else []:
            inner = verify_file(weights, spec, member, None, seed, dst / member.name, x, tolerance)
            summary = f"{result.summary}; {member.name}: {inner.summary}"
            result = PortResult(inner.ok, summary, result.report)
            if not inner.ok:
                break
        if not result.ok:
            # Leaving the block by an exception is what keeps the file from landing.
            raise RejectedError(result)
        if fmt.finish is not None:
            fmt.finish(tmp, dst, spec, result, **options)
    return result


class RejectedError(Exception):
    """A written file failed its verification; nothing was left at the destination."""

    def __init__(self, result: PortResult) -> None:
        super().__init__(result.summary)
        self.result = result


def port(
    weights: Mapping[str, np.ndarray], spec: UNetSpec, dst: str | os.PathLike[str], **kwargs: Any
) -> PortResult:
    """:func:`write_verified`, with a failed verification returned rather than raised."""
    try:
        return write_verified(weights, spec, dst, **kwargs)
    except RejectedError as rejected:
        return rejected.result


def fixed_size(model: Any) -> int | None:
    """The square input size a Keras model was built for, if any."""
    if model is None:
        return None
    shape = model.input_shape
    h, w = shape[1], shape[2]
    return h if h is not None and h == w else None


def verify_file(
    weights: Mapping[str, np.ndarray],
    spec: UNetSpec,
    written: Path,
    source_model: Any = None,
    seed: int = 0,
    shown: Path | None = None,
    x: np.ndarray | None = None,
    tolerance: NoiseTolerance | None = None,
) -> PortResult:
    """Reload ``written``, demand bit-exact tensors, then run it against the float64 reference.

    A written ``.keras`` model is itself the Keras side of the comparison; for the other formats
    the Keras twin is built from the reloaded weights. When the source was a Keras model (possibly
    foreign), that model is also run against the PyTorch twin, so the port is proven against the
    function the user brought.

    Returns:
        Whether everything held, a one-line summary and the parity report.
    """
    shown = shown or written
    reloaded, _, written_model = load_any_weights(written, spec)  # also checks the stored spec
    for name, value in weights.items():
        if not np.array_equal(value, reloaded[name]):
            delta = float(np.abs(np.asarray(value) - reloaded[name]).max())
            return PortResult(
                False, f"{shown}: tensor {name} changed on reload (max |Δ| {delta:.3g})"
            )
    x = check_input(spec, written_model, seed, x)
    report = run_parity(spec, reloaded, x, tolerance, per_layer=False, loaded_keras=written_model)
    h, w = x.shape[-2:]
    parts = [f"reload bit-exact; PyTorch vs Keras at {h}x{w}: {report.logits}"]
    ok = report.passed
    if source_model is not None:
        check, what = compare_with_model(source_model, spec, reloaded, seed, tolerance)
        parts.append(f"source model vs PyTorch ({what}): {check}")
        ok = ok and check.passed
    return PortResult(ok, "; ".join(parts), report)


def check_input(
    spec: UNetSpec, model: Any = None, seed: int = 0, x: np.ndarray | None = None
) -> np.ndarray:
    """``x`` when given, else a random NCHW batch at ``model``'s fixed size (or a small one)."""
    if x is not None:
        return x
    size = fixed_size(model) or inputs.small_size(spec)
    return inputs.random_input(spec, size, 1, seed)


def compare_with_model(
    model: Any,
    spec: UNetSpec,
    weights: Mapping[str, np.ndarray],
    seed: int = 0,
    tolerance: NoiseTolerance | None = None,
) -> tuple[NoiseCheck, str]:
    """Run a Keras ``model`` and the PyTorch twin with ``weights`` on the same random input.

    The model's last layer decides what is compared: logits when it has no activation, else the
    twin's logits through that activation (the starting model ends in a sigmoid).

    The check is noise-aware like ``unet parity``: the twin also runs in float64 to measure its
    fp32 noise.

    Returns:
        The :class:`~unet_spec.NoiseCheck` and what was compared (``"logits"`` or an activation).
    """
    from unet_keras import to_nchw, to_nhwc

    x = check_input(spec, model, seed)
    head_name = spec.plan().output.name
    logits = torch_taps(torch_model(spec, weights), x, [head_name])[head_name]
    logits64 = reference_taps(spec, weights, x, [head_name])[head_name]
    last = model.layers[-1].get_config()
    activation = last.get("activation", "linear")
    activation = activation if isinstance(activation, str) else "linear"
    if activation not in ("linear", "sigmoid", "softmax"):
        raise ValueError(
            f"the source model ends in activation {activation!r}; ports are verified for "
            "linear, sigmoid and softmax heads (use --no-verify)"
        )
    out = to_nchw(np.asarray(model(to_nhwc(x), training=False), dtype=np.float32))
    probabilities = activation != "linear"
    act = activation if probabilities else "none"
    check = check_against_noise(
        out, head(logits, act), head(logits64, act), tolerance,
        labels=label_rule(spec, probabilities),
    )  # fmt: skip
    return check, activation if probabilities else "logits"


__all__ = [
    "PortResult",
    "compare_with_model",
    "fixed_size",
    "port",
    "verify_file",
    "write_verified",
]
