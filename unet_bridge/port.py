"""Porting weights between formats, and proving that a written file computes what its source does.

``unet port`` and the training run's Keras export write through :func:`write_verified`: the file is
written to a temporary path beside the destination (same suffix), reloaded and checked tensor by
tensor (bit-exact), run against its source and the twins against each other by the one judge
(:mod:`unet_bridge.judge`), and only then renamed into place. On any failure nothing is left at the
destination. This module writes and proves; the judging is the judge's.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from unet_bridge import parity
from unet_bridge.formats import Size, format_of, load_any_weights
from unet_bridge.frameworks import environment_guard
from unet_bridge.inputs import random_input
from unet_bridge.judge import TwinOutputs, judge, proof_inputs, twin_outputs
from unet_bridge.parity import ParityReport, check_finite, keras_taps
from unet_bridge.proving import RejectedError, land
from unet_bridge.reads import (
    Reference,
    SourceRead,
    fixed_size,
    head_activation,
    keras_model_reference,
    proof_size,
)
from unet_bridge.sources import Source, SourceFile
from unet_spec import NoiseTolerance, UNetSpec


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
    *,
    verify: bool = True,
    seed: int = 0,
    x: np.ndarray | None = None,
    tolerance: NoiseTolerance | None = None,
    options: Mapping[str, Any] | None = None,
    reference: Reference | None = None,
) -> PortResult:
    """Write ``weights`` to ``dst`` (format by suffix) only if the written file proves right.

    Args:
        weights: Canonical weights.
        spec: Their spec.
        dst: The destination; its suffix picks the format.
        input_size: Input size of a Keras model file.
        verify: Reload and run the written file before it lands.
        seed: Seed of the random check input (when ``x`` is not given).
        x: The check input, NCHW float32 (default: random, at a small valid size).
        tolerance: The noise-aware tolerance (default :class:`~unet_spec.NoiseTolerance`).
        options: Keyword arguments of the format's writer (a hub folder's ``with_keras``,
            ``metrics``, ``source``).
        reference: The source itself, runnable (a :class:`~unet_bridge.reads.Reference`: a
            converter's, or a Keras model the weights came from): the twin is run against it
            too, and the file lands only if it agrees.

    A folder format's member files (a hub folder's ``model.keras``) are verified with it.

    Returns:
        The verification's outcome (the file is at ``dst``).

    Raises:
        RejectedError: The written file failed; nothing is at ``dst`` (its ``result`` says why).
    """
    dst = Path(dst)
    fmt = format_of(dst)
    options = dict(options or {})

    def prove(tmp: Path) -> PortResult:
        if not verify:
            return PortResult(True, "not verified (--no-verify)")
        proof = {"seed": seed, "x": x, "tolerance": tolerance}
        result = verify_file(weights, spec, tmp, shown=dst, reference=reference, **proof)
        for member in fmt.members(tmp) if fmt.members is not None and result.ok else []:
            inner = verify_file(weights, spec, member, shown=dst / member.name, **proof)
            summary = f"{result.summary}; {member.name}: {inner.summary}"
            result = PortResult(inner.ok, summary, result.report)
            if not inner.ok:
                break
        return result

    def finish(tmp: Path, result: PortResult) -> None:
        fmt.finish(tmp, dst, spec, result, **options)

    return land(
        dst, lambda tmp: fmt.write(weights, spec, tmp, input_size, **options), prove,
        folder=fmt.folder, finish=finish if fmt.finish is not None else None,
    )  # fmt: skip


def port(
    weights: Mapping[str, np.ndarray], spec: UNetSpec, dst: str | os.PathLike[str], **kwargs: Any
) -> PortResult:
    """:func:`write_verified`, with a failed verification returned rather than raised."""
    try:
        return write_verified(weights, spec, dst, **kwargs)
    except RejectedError as rejected:
        return rejected.result


def verify_file(
    weights: Mapping[str, np.ndarray],
    spec: UNetSpec,
    written: Path,
    *,
    seed: int = 0,
    shown: Path | None = None,
    x: np.ndarray | None = None,
    tolerance: NoiseTolerance | None = None,
    reference: Reference | None = None,
) -> PortResult:
    """Reload ``written``, demand bit-exact tensors, then judge it against the float64 reference.

    A written ``.keras`` model is itself the Keras side of the comparison; for the other formats
    the Keras twin is built from the reloaded weights. A ``reference`` (the source itself,
    runnable: a torch module, a Keras model the weights came from) is judged against the PyTorch
    twin too, so the port is proven against the function the user brought. A port that a torch
    source proves, into a file that is no Keras file, runs no Keras twin (the summary says so;
    ``unet parity`` runs both twins on any file).

    Returns:
        Whether everything held, a one-line summary and the parity report.
    """
    shown = shown or written
    back = load_any_weights(written, spec)  # also checks the stored spec
    reloaded = back.weights
    written_model = None if back.reference is None else back.reference.keras_model
    for name, value in weights.items():
        if not np.array_equal(value, reloaded[name]):
            delta = float(np.abs(np.asarray(value) - reloaded[name]).max())
            return PortResult(
                False, f"{shown}: tensor {name} changed on reload (max |Δ| {delta:.3g})"
            )
    # The written tensors equal the given ones to the bit: the proof runs on the given ones, and
    # the reloaded copy (124 MB for a 31 M-parameter model) is not kept.
    del reloaded, back
    if x is None:
        x = random_input(spec, fixed_size(written_model) or proof_size(spec), 1, seed)
    # A model file whose head folds in its activation (a legacy .h5, as that era's code saves
    # it) is no logits model: the twin pair runs from its weights, and the file itself is judged
    # through the activation, as a source model is.
    folded = written_model is not None and head_activation(written_model) != "linear"
    keras_side = None if folded else written_model
    refs = [] if reference is None else [reference]
    own = [keras_model_reference(written_model, spec, shown.name)] if folded else []
    # Every input any check runs on, so that each twin is built once per precision.
    xs = [x] + [xi for ref in refs + own for _, xi in proof_inputs(ref, spec, x, seed)]
    twin = twin_outputs(spec, weights, xs)
    # The sources run before the Keras twin is built: TensorFlow keeps what it allocates, so a
    # torch source's float64 run (the largest) comes first, when less is held.
    proofs = [_prove(weights, spec, ref, seed, x, tolerance, twin) for ref in refs]
    h, w = x.shape[-2:]
    # The Keras twin runs where it adds to the proof: for a Keras file, for a port no source
    # proves (the twins against each other is then all that runs), and where TensorFlow is loaded
    # anyway. A port proven against its torch source into a file that is no Keras file is proven
    # without it: the builders' agreement for every spec is the parity suite's, and TensorFlow
    # would double the port's time and add 0.7 GB.
    torch_proven = bool(refs) and all(r.keras_model is None for r in refs)
    if torch_proven and written_model is None and format_of(written).framework != "keras":
        report = None
        parts = [
            "reload bit-exact; the Keras twin not run (the port is proven against its source, "
            f"and {shown.name} is no Keras file: `unet parity {shown.name}` runs both twins)"
        ]
        ok = True
    else:
        report = _twins_check(spec, weights, x, twin, tolerance, keras_side)
        parts = [f"reload bit-exact; PyTorch vs Keras at {h}x{w}: {report.logits}"]
        ok = report.passed
    proofs += [_prove(weights, spec, ref, seed, x, tolerance, twin) for ref in own]
    for proof in proofs:
        parts.append(proof.summary)
        ok = ok and proof.ok
    return PortResult(ok, "; ".join(parts), report)


def _prove(
    weights: Mapping[str, np.ndarray],
    spec: UNetSpec,
    reference: Reference,
    seed: int,
    x: np.ndarray,
    tolerance: NoiseTolerance | None,
    twin: TwinOutputs,
) -> PortResult:
    read = SourceRead(dict(weights), spec, reference, "")
    return prove_read(read, seed=seed, x=x, tolerance=tolerance, twin=twin)


def _keras_twin(
    spec: UNetSpec, weights: Mapping[str, np.ndarray], size: Any, loaded: Any
) -> Reference:
    """The Keras twin built from ``weights`` (or a written Keras model of this project) as a
    candidate: its logits, built when first run (after the sources ran; see verify_file)."""
    out = spec.plan().output.name

    def run(x: np.ndarray) -> np.ndarray:
        # Looked up in its module, so a planted defect (tests patch parity.keras_model) reaches it.
        model = loaded if loaded is not None else parity.keras_model(spec, weights, size)
        return keras_taps(model, x, [out])[out]

    return Reference(run, "logits", "Keras")


def _twins_check(
    spec: UNetSpec,
    weights: Mapping[str, np.ndarray],
    x: np.ndarray,
    twin: TwinOutputs,
    tolerance: NoiseTolerance | None,
    loaded_keras: Any,
) -> ParityReport:
    """The Keras twin (or the written Keras model) judged against the PyTorch twin's outputs on
    ``x``, reported as :func:`~unet_bridge.parity.run_parity` reports its outputs."""
    tolerance = tolerance or NoiseTolerance()
    check_finite(weights, x)
    versions = environment_guard()
    size = x.shape[-1] if x.shape[-1] == x.shape[-2] else tuple(x.shape[-2:])
    spec.plan().check_size(size)
    start = time.perf_counter()
    candidate = _keras_twin(spec, weights, size, loaded_keras)
    (verdict,) = judge(candidate, spec, weights, [x], tolerance=tolerance, twin=twin)
    seconds = {"keras": time.perf_counter() - start}
    return ParityReport(
        spec, tuple(x.shape), tolerance, [], verdict.check, verdict.final, versions, seconds
    )


def prove_read(
    read: SourceRead,
    *,
    seed: int = 0,
    sizes: Sequence[int] | None = None,
    x: np.ndarray | None = None,
    tolerance: NoiseTolerance | None = None,
    twin: TwinOutputs | None = None,
) -> PortResult:
    """Prove that the PyTorch twin with ``read``'s weights computes what its source computes.

    The source runs on the same random inputs as the twin and the judge
    (:func:`unet_bridge.judge.judge`) rules on what it outputs: at ``sizes`` when given, else at
    the source's own sizes (a Keras model's fixed size), else at a small valid size and, for specs
    that take any size, an odd one too (:func:`unet_bridge.judge.proof_inputs`).

    Args:
        read: What :func:`unet_bridge.sources.read_any` (or any reader) returned.
        seed: Seed of the random inputs.
        sizes: Input sizes to run at (each must be valid for the spec).
        x: The first input, NCHW float32 (default: random at the first size).
        tolerance: The noise-aware tolerance (default :class:`~unet_spec.NoiseTolerance`).
        twin: The twin's outputs already computed on these inputs (a port's proof shares them
            with its other checks).

    Returns:
        A verdict (``ok``, a one-line ``summary``). A read without a reference is ``ok`` with a
        summary saying that nothing was run against a source.
    """
    weights, spec, reference, _ = read
    if reference is None:
        return PortResult(True, "no source to run: the port was not proven against one")
    runs = proof_inputs(reference, spec, x, seed, sizes)
    xs = [xi for _, xi in runs]
    verdicts = judge(reference, spec, weights, xs, tolerance=tolerance, twin=twin)
    parts = [f"{reference.description} vs PyTorch ({v.what}) at {size}x{size}: {v.check}"
             for (size, _), v in zip(runs, verdicts, strict=True)]  # fmt: skip
    return PortResult(all(v.check.passed for v in verdicts), "; ".join(parts))


def write_source(
    weights: Mapping[str, np.ndarray],
    spec: UNetSpec,
    dst: str | os.PathLike[str],
    source: Source,
    reference: Any = None,
    *,
    seed: int = 0,
    tolerance: NoiseTolerance | None = None,
) -> PortResult:
    """Write ``weights`` in ``source``'s own layout (``unet port ... --to NAME``), proven first.

    The written file is read back by the source's converter, which infers its spec again from
    the tensor shapes: the spec must come back unchanged and every tensor bit-exact. When the
    source can run (its package is installed, or ``reference`` builds the user's own module from
    the written file: ``reference(file: SourceFile) -> Reference``), the file is loaded into it
    and judged against the PyTorch twin. Only then does the file land at ``dst``.

    Raises:
        ValueError: ``spec`` cannot be written in this layout (the field named).
        RejectedError: The written file failed; nothing is at ``dst``.
    """
    if source.write is None:
        raise ValueError(f"{dst}: {source.name} files cannot be written (read-only source)")
    if source.check_spec is not None:
        source.check_spec(spec)
    dst = Path(dst)

    def prove(tmp: Path) -> PortResult:
        file = SourceFile(tmp)
        back = source.read(file, None)
        parts = []
        ok = back.spec.replace(head=spec.head) == spec
        if not ok:
            diff = ", ".join(f"{k}: {a!r} -> {b!r}" for k, (a, b) in spec.diff(back.spec).items())
            parts.append(f"the spec read back differs ({diff})")
        for name, value in weights.items():
            if ok and not np.array_equal(value, back.weights[name]):
                ok = False
                parts.append(f"tensor {name} changed on reload")
        if ok:
            parts.append(f"reload by the {source.name} reader bit-exact, spec inferred unchanged")
            ref = reference(file) if reference is not None else back.reference
            if ref is None:
                parts.append(
                    f"not proven against {source.name}'s own code (it cannot run here; name its "
                    "class with --source-model)"
                )
            else:
                proof = prove_read(back._replace(reference=ref), seed=seed, tolerance=tolerance)
                parts.append(proof.summary)
                ok = ok and proof.ok
        return PortResult(ok, "; ".join(parts))

    return land(dst, lambda tmp: source.write(weights, spec, tmp), prove)


__all__ = [
    "PortResult",
    "port",
    "prove_read",
    "verify_file",
    "write_source",
    "write_verified",
]
