"""The one judge: anything runnable against the PyTorch twin of the same weights, on the same inputs.

A port's source (a torch module, onnxruntime, a Keras model), a written Keras file, the Keras twin
and a deployment artefact are each a :class:`~unet_bridge.reads.Reference`: NCHW in, logits or
probabilities out. :func:`judge` runs it beside the twin and judges every output by
:func:`unet_bridge.parity.check_outputs`: the twin's fp32 noise is measured against its float64
run (:func:`twin_outputs`, the one float64 reference of the twin), a candidate that runs in
float64 too adds its own noise, and labels must agree wherever the float64 margin is clear. A
port's proof (:func:`unet_bridge.port.prove_read`), its Keras twin check, an export's check and
``unet parity`` against a source all call it; the per-block parity runner
(:func:`unet_bridge.parity.run_parity`) judges its final outputs by the same rule.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from unet_bridge.inputs import random_input
from unet_bridge.parity import check_outputs, twin_taps
from unet_bridge.reads import OUTPUTS, Reference, proof_size, reference_sizes
from unet_spec import NoiseCheck, NoiseTolerance, UNetSpec, compare


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
    fp32 = tuple(taps[out] for taps in twin_taps(spec, weights, unique, [out]))
    fp64 = tuple(taps[out] for taps in twin_taps(spec, weights, unique, [out], float64=True))
    return TwinOutputs(tuple(unique), fp32, fp64)


@dataclass(frozen=True)
class Judgement:
    """One input's verdict on a candidate.

    Attributes:
        shape: The input's shape (NCHW).
        check: The candidate's own output (``what``) against the twin's, through the same
            activation.
        final: The final outputs through ``spec.head`` (for a candidate that gives
            probabilities, ``check`` itself).
        what: ``"logits"`` or the activation the candidate applies.
        agreement: Share of all pixels whose label (argmax; the sign of a one-channel logit)
            agrees with the twin's float64 run, for a candidate that gives logits (``None``
            otherwise).
    """

    shape: tuple[int, ...]
    check: NoiseCheck
    final: NoiseCheck
    what: str
    agreement: float | None

    @property
    def passed(self) -> bool:
        return self.check.passed and self.final.passed


def judge(
    candidate: Reference,
    spec: UNetSpec,
    weights: Mapping[str, np.ndarray],
    xs: Sequence[np.ndarray],
    *,
    tolerance: NoiseTolerance | None = None,
    twin: TwinOutputs | None = None,
) -> list[Judgement]:
    """Run ``candidate`` and the PyTorch twin with ``weights`` on each input, and judge it.

    The candidate runs in fp32 on every input before it runs in float64 (where it can:
    ``candidate.run64``), so a torch module changes precision once.

    Args:
        candidate: What is judged.
        spec: The twin's spec.
        weights: The twin's canonical weights.
        xs: NCHW float32 inputs.
        tolerance: The noise-aware tolerance (default :class:`~unet_spec.NoiseTolerance`).
        twin: The twin's outputs where they were computed already (on these inputs).

    Returns:
        One :class:`Judgement` per input.

    Raises:
        ValueError: The candidate ends in an activation other than sigmoid or softmax, or gives
            another shape than the twin.
    """
    if candidate.output not in OUTPUTS:
        raise ValueError(
            f"{candidate.description} ends in activation {candidate.output!r}; ports are verified "
            "for linear, sigmoid and softmax heads (use --no-verify)"
        )
    if twin is None or any(twin.find(x) is None for x in xs):
        twin = twin_outputs(spec, weights, xs)
    outs = [np.asarray(candidate.run(x)) for x in xs]
    outs64 = [None if candidate.run64 is None else np.asarray(candidate.run64(x)) for x in xs]
    verdicts = []
    for x, got, got64 in zip(xs, outs, outs64, strict=True):
        fp32, fp64 = twin.find(x)
        if got.shape != fp32.shape:
            h, w = x.shape[-2:]
            raise ValueError(
                f"{candidate.description} gives shape {got.shape} at {h}x{w}; the twin {fp32.shape}"
            )
        check, final = check_outputs(
            spec, got, fp32, fp64, tolerance, output=candidate.output, candidate64=got64
        )
        logits = candidate.output == "logits"
        agreement = compare(got, fp64).argmax_agreement if logits else None
        verdicts.append(Judgement(tuple(x.shape), check, final, candidate.output, agreement))
    return verdicts


def proof_inputs(
    reference: Reference,
    spec: UNetSpec,
    x: np.ndarray | None,
    seed: int = 0,
    sizes: Sequence[int] | None = None,
) -> list[tuple[int, np.ndarray]]:
    """``(size, input)`` for each size a source is run at: ``sizes``, else the reference's own
    (:attr:`~unet_bridge.reads.Reference.sizes`), else :func:`~unet_bridge.reads.reference_sizes`
    of ``x``'s size; ``x`` where its size is the first, random inputs (seeded) elsewhere."""
    if x is None:
        first = (sizes or reference.sizes or (proof_size(spec),))[0]
        x = random_input(spec, first, 1, seed)
    chosen = list(sizes or reference.sizes or reference_sizes(spec, int(x.shape[-1])))
    rows = []
    for i, size in enumerate(chosen):
        same = i == 0 and x.shape[-1] == x.shape[-2] == size
        rows.append((size, x if same else random_input(spec, size, x.shape[0], seed + i)))
    return rows


__all__ = ["Judgement", "TwinOutputs", "judge", "proof_inputs", "twin_outputs"]
