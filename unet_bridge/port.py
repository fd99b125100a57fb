"""Porting weights between formats, and proving that a written file computes what its source does.

``unet port`` and the training run's Keras export write through :func:`write_verified`: the file is
written to a temporary path beside the destination (same suffix), reloaded and checked tensor by
tensor (bit-exact), both frameworks are run on it against the float64 reference, and only then is it
renamed into place. On any failure nothing is left at the destination.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from unet_bridge import inputs, parity
from unet_bridge.formats import Size, format_of, load_any_weights
from unet_bridge.frameworks import environment_guard
from unet_bridge.parity import (
    ParityReport,
    check_finite,
    check_outputs,
    head,
    keras_taps,
    torch_model,
    torch_taps,
)
from unet_bridge.proving import RejectedError, land
from unet_bridge.sources import (
    Reference,
    Source,
    SourceRead,
    keras_model_reference,
    proof_size,
    reference_sizes,
    two_sizes,
)
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
    reference: Reference | None = None,
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
        reference: The source itself, runnable (a converter's :class:`~unet_bridge.sources.
            Reference`): the twin is run against it too, and the file lands only if it agrees.

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
        result = verify_file(
            weights, spec, tmp, source_model, seed, dst, x, tolerance, reference=reference
        )
        for member in fmt.members(tmp) if fmt.members is not None and result.ok else []:
            inner = verify_file(weights, spec, member, None, seed, dst / member.name, x, tolerance)
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
    reference: Reference | None = None,
) -> PortResult:
    """Reload ``written``, demand bit-exact tensors, then run it against the float64 reference.

    A written ``.keras`` model is itself the Keras side of the comparison; for the other formats
    the Keras twin is built from the reloaded weights. When the source was a Keras model (possibly
    foreign), that model is also run against the PyTorch twin, so the port is proven against the
    function the user brought; so is a ``reference`` (the source itself, runnable). A port that a
    torch source proves, into a file that is no Keras file, runs no Keras twin (the summary says
    so; ``unet parity`` runs both twins on any file).

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
    # The written tensors equal the given ones to the bit: the proof runs on the given ones, and
    # the reloaded copy (124 MB for a 31 M-parameter model) is not kept.
    del reloaded
    reloaded = weights
    x = check_input(spec, written_model, seed, x)
    # A model file whose head folds in its activation (a legacy .h5, as that era's code saves
    # it) is no logits model: the twin pair runs from its weights, and the file itself is judged
    # through the activation, as a source model is.
    folded = written_model is not None and head_activation(written_model) != "linear"
    keras_side = None if folded else written_model
    keras_source = None if source_model is None else keras_model_reference(source_model)
    refs = [r for r in (keras_source, reference) if r is not None]
    # Every input any check runs on, so that each twin is built once per precision.
    xs = [x]
    if folded:
        xs.append(check_input(spec, written_model, seed))
    for ref in refs:
        xs += [xi for _, xi in proof_inputs(ref, spec, x, seed)]
    twin = twin_outputs(spec, reloaded, xs)
    # The sources run before the Keras twin is built: TensorFlow keeps what it allocates, so a
    # torch source's float64 run (the largest) comes first, when less is held.
    proofs = [
        prove_read(SourceRead(reloaded, spec, ref, ""), seed=seed, x=x, tolerance=tolerance,
                   twin=twin)
        for ref in refs
    ]  # fmt: skip
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
        report = _twins_check(spec, reloaded, x, twin, tolerance, keras_side)
        parts = [f"reload bit-exact; PyTorch vs Keras at {h}x{w}: {report.logits}"]
        ok = report.passed
    if folded:
        check, what = compare_with_model(written_model, spec, reloaded, seed, tolerance, twin=twin)
        parts.append(f"{shown.name} vs PyTorch ({what}): {check}")
        ok = ok and check.passed
    for proof in proofs:
        parts.append(proof.summary)
        ok = ok and proof.ok
    return PortResult(ok, "; ".join(parts), report)


@dataclass(frozen=True)
class TwinOutputs:
    """The PyTorch twin's logits, in fp32 and in float64, on each input of a proof: computed once
    and shared by every comparison that runs on the same input.

    Attributes:
        inputs: The NCHW inputs.
        fp32: The twin's fp32 logits on each input.
        fp64: Its float64 logits on each input (what its fp32 noise is measured against).
    """

    inputs: tuple[np.ndarray, ...]
    fp32: tuple[np.ndarray, ...]
    fp64: tuple[np.ndarray, ...]

    def find(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
        """``(fp32, fp64)`` logits on ``x``, or ``None`` when ``x`` is not among the inputs."""
        for xi, a, b in zip(self.inputs, self.fp32, self.fp64, strict=True):
            if xi is x or (xi.shape == x.shape and np.array_equal(xi, x)):
                return a, b
        return None


def twin_outputs(
    spec: UNetSpec, weights: Mapping[str, np.ndarray], xs: Sequence[np.ndarray]
) -> TwinOutputs:
    """The twin's logits on each input (duplicates run once): one model per precision, the fp32
    one freed before the float64 one is built, so a large model is in memory once at a time."""
    unique: list[np.ndarray] = []
    for x in xs:
        if not any(u.shape == x.shape and np.array_equal(u, x) for u in unique):
            unique.append(x)
    out = spec.plan().output.name
    model = torch_model(spec, weights)
    fp32 = tuple(torch_taps(model, x, [out])[out] for x in unique)
    del model
    model = torch_model(spec, weights).double()
    fp64 = tuple(torch_taps(model, x, [out])[out] for x in unique)
    del model
    return TwinOutputs(tuple(unique), fp32, fp64)


def _twins_check(
    spec: UNetSpec,
    weights: Mapping[str, np.ndarray],
    x: np.ndarray,
    twin: TwinOutputs,
    tolerance: NoiseTolerance | None,
    loaded_keras: Any,
) -> ParityReport:
    """The Keras twin (or the written Keras model) against the PyTorch twin's outputs on ``x``,
    judged as :func:`~unet_bridge.parity.run_parity` judges its outputs, without running the
    PyTorch twin again."""
    tolerance = tolerance or NoiseTolerance()
    check_finite(weights, x)
    versions = environment_guard()
    size = x.shape[-1] if x.shape[-1] == x.shape[-2] else tuple(x.shape[-2:])
    spec.plan().check_size(size)
    out = spec.plan().output.name
    fp32, fp64 = twin.find(x)
    start = time.perf_counter()
    # Looked up in its module, so a planted defect (tests patch parity.keras_model) reaches it.
    model = loaded_keras if loaded_keras is not None else parity.keras_model(spec, weights, size)
    got = keras_taps(model, x, [out])[out]
    del model
    seconds = {"keras": time.perf_counter() - start}
    logits, output = check_outputs(spec, got, fp32, fp64, tolerance)
    return ParityReport(spec, tuple(x.shape), tolerance, [], logits, output, versions, seconds)


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

    The source runs on the same random inputs as the twin and the noise-aware rule judges the
    outputs (:func:`compare_with_reference`): at ``sizes`` when given, else at a small valid size
    and, for specs that take any size, an odd one too (:func:`reference_sizes`). A Keras model
    from a file runs at its own fixed input size (:func:`compare_with_model`).

    Args:
        read: What :func:`unet_bridge.sources.read_any` (or a source's ``read``) returned.
        seed: Seed of the random inputs.
        sizes: Input sizes to run at (each must be valid for the spec).
        x: The first input, NCHW float32 (default: random at the first size).
        tolerance: The noise-aware tolerance (default :class:`~unet_spec.NoiseTolerance`).
        twin: The twin's outputs already computed on these inputs (:func:`twin_outputs`; a port's
            proof shares them with its other checks).

    Returns:
        A verdict (``ok``, a one-line ``summary``). A read without a reference is ``ok`` with a
        summary saying that nothing was run against a source.
    """
    weights, spec, reference, _ = read
    if reference is None:
        return PortResult(True, "no source to run: the port was not proven against one")
    if reference.keras_model is not None:
        check, what = compare_with_model(
            reference.keras_model, spec, weights, seed, tolerance, twin=twin
        )
        return PortResult(check.passed, f"{reference.description} vs PyTorch ({what}): {check}")
    sizes = sizes or reference.sizes
    if x is None:
        size = sizes[0] if sizes else proof_size(spec)
        x = inputs.random_input(spec, size, 1, seed)
    rows = compare_with_reference(
        reference, spec, weights, x, tolerance, seed, sizes=sizes, twin=twin
    )
    parts = [f"{reference.description} vs PyTorch ({what}) at {size}x{size}: {check}"
             for size, (check, what) in rows]  # fmt: skip
    return PortResult(all(check.passed for _, (check, _) in rows), "; ".join(parts))


def check_input(
    spec: UNetSpec, model: Any = None, seed: int = 0, x: np.ndarray | None = None
) -> np.ndarray:
    """``x`` when given, else a random NCHW batch at ``model``'s fixed size (or a small one)."""
    if x is not None:
        return x
    size = fixed_size(model) or proof_size(spec)
    return inputs.random_input(spec, size, 1, seed)


def compare_with_model(
    model: Any,
    spec: UNetSpec,
    weights: Mapping[str, np.ndarray],
    seed: int = 0,
    tolerance: NoiseTolerance | None = None,
    twin: TwinOutputs | None = None,
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
    found = twin.find(x) if twin is not None else None
    logits, logits64 = found or twin_outputs(spec, weights, [x]).find(x)
    activation = head_activation(model)
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


def head_activation(model: Any) -> str:
    """The activation a Keras model's last layer applies (``"linear"`` for none)."""
    activation = model.layers[-1].get_config().get("activation", "linear")
    return activation if isinstance(activation, str) else "linear"


def proof_inputs(
    reference: Reference,
    spec: UNetSpec,
    x: np.ndarray,
    seed: int = 0,
    sizes: Sequence[int] | None = None,
) -> list[tuple[int, np.ndarray]]:
    """``(size, input)`` for each size a source is run at: ``sizes``, else the reference's own
    (:attr:`~unet_bridge.sources.Reference.sizes`), else :func:`reference_sizes`; ``x`` where its
    size is the first, random inputs (seeded) elsewhere."""
    chosen = list(sizes or reference.sizes or reference_sizes(spec, int(x.shape[-1])))
    rows = []
    for i, size in enumerate(chosen):
        same = i == 0 and x.shape[-1] == x.shape[-2] == size
        rows.append((size, x if same else inputs.random_input(spec, size, x.shape[0], seed + i)))
    return rows


def compare_with_reference(
    reference: Reference,
    spec: UNetSpec,
    weights: Mapping[str, np.ndarray],
    x: np.ndarray,
    tolerance: NoiseTolerance | None = None,
    seed: int = 0,
    sizes: Sequence[int] | None = None,
    twin: TwinOutputs | None = None,
) -> list[tuple[int, tuple[NoiseCheck, str]]]:
    """Run the source itself and the PyTorch twin on the same input, judged by the noise rule.

    The twin's fp32 noise comes from its own float64 run; when the source can run in float64 as
    well (``reference.run64``), its noise counts too and its float64 output must match the twin's
    float64 output more closely than either fp32 run matches its own. What is compared follows
    the source: logits, or logits through its activation. Inputs: see :func:`proof_inputs`. The
    source runs in fp32 on every input before it runs in float64 (a torch module then changes
    precision once). ``twin`` holds the twin's outputs where they were computed already.

    Returns:
        ``(size, (check, what))`` per input size.
    """
    act = "none" if reference.output == "logits" else reference.output
    runs = proof_inputs(reference, spec, x, seed, sizes)
    if twin is None or any(twin.find(xi) is None for _, xi in runs):
        twin = twin_outputs(spec, weights, [xi for _, xi in runs])
    outs = [np.asarray(reference.run(xi)) for _, xi in runs]
    outs64 = [None if reference.run64 is None else np.asarray(reference.run64(xi))
              for _, xi in runs]  # fmt: skip
    rows = []
    for (size, xi), out, out64 in zip(runs, outs, outs64, strict=True):
        logits, logits64 = twin.find(xi)
        if out.shape != logits.shape:
            raise ValueError(
                f"{reference.description} gives shape {out.shape} at {size}x{size}; the twin "
                f"{logits.shape}"
            )
        check = check_against_noise(
            out, head(logits, act), head(logits64, act), tolerance,
            labels=label_rule(spec, act != "none"), candidate64=out64,
        )  # fmt: skip
        rows.append((size, (check, reference.output)))
    return rows


def write_source(
    weights: Mapping[str, np.ndarray],
    spec: UNetSpec,
    dst: str | os.PathLike[str],
    source: Source,
    reference: Any = None,
    seed: int = 0,
    tolerance: NoiseTolerance | None = None,
) -> PortResult:
    """Write ``weights`` in ``source``'s own layout (``unet port ... --to NAME``), proven first.

    The written file is read back by the source's converter, which infers its spec again from
    the tensor shapes: the spec must come back unchanged and every tensor bit-exact. When the
    source can run (its package is installed, or ``reference`` builds the user's own module from
    the written file: ``reference(path) -> Reference``), the file is loaded into it and run
    against the PyTorch twin by the noise rule. Only then does the file land at ``dst``.

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
        back = source.read(tmp, None)
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
            ref = reference(tmp) if reference is not None else back.reference
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
    "TwinOutputs",
    "compare_with_model",
    "compare_with_reference",
    "reference_sizes",
    "twin_outputs",
    "two_sizes",
    "write_source",
    "fixed_size",
    "port",
    "proof_inputs",
    "prove_read",
    "verify_file",
    "write_verified",
]
