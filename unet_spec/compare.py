"""The numpy comparison behind every parity check (tests, ``unet parity``, ``unet port``, the
training run's Keras export).

Two fp32 implementations of the same network never agree to the bit: each rounds, and each sums
in its own order (oneDNN picks kernels and blockings by CPU, thread count and memory format). How
far apart they may be therefore depends on the machine, the model and the input, and a constant
measured on one CPU fails on the next. :func:`check_against_noise` measures the fp32 noise where
the check runs instead: the reference implementation is run once in fp32 and once in float64 on
the same weights and input, and their difference is the noise floor. The candidate (the other
framework, an export, a port) must stay within :attr:`NoiseTolerance.margin` times that floor.

The float64 run is the reference implementation itself, so a defect shared by both of its runs is
invisible to it; the candidate is the independent implementation that catches such defects. The
noise is measured on the reference only, never on the candidate alone: a defect in the candidate
raises the candidate's own distance to the float64 result, and would raise its limit with it.

Where the candidate can run in float64 too (Keras under its float64 dtype policy), its own noise
counts as well, because a defect can no longer hide in it: the two float64 runs are the same
computation with rounding 2²⁹ times finer, so they must agree within the margin of the *smaller*
fp32 noise. (Not closer: Keras' float64 policy still holds optimiser constants such as the learning
rate as float32 variables, and TensorFlow's bilinear resize returns float32, so its float64 run
carries some fp32-sized error.) Training steps need this: an optimiser amplifies rounding through the
problem's conditioning, and one framework's accumulation order can then be far noisier than the
other's without either being wrong.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from unet_spec.spec import UNetSpec

FP32_EPS = float(np.finfo(np.float32).eps)


@dataclass(frozen=True)
class NoiseTolerance:
    """How far a candidate may be from the fp32 reference, in units of the reference's own noise.

    Attributes:
        margin: Limit = ``margin`` × measured noise. Two fp32 implementations of one sum carry
            errors of the same kind whose sizes differ with their summation orders, and the
            kernels of oneDNN, Eigen and PyTorch block their sums differently by factors up to
            about 16. Typical rounding error grows like the square root of the partial-sum
            length (a ratio of √16 = 4 between implementations), worst-case error linearly (a
            ratio of 16); the margin is the worst case. The defects the checks exist for (a
            transposed kernel, a dropped bias, a wrong batch-norm epsilon, a one-pixel crop
            shift, a different resize rule) are orders of magnitude above it (the mutation tests
            in ``parity_tests/test_mutations.py`` prove it for every preset).
        floor: Smallest noise assumed, relative to the reference's scale: a few fp32 roundings
            (8 ε). It matters only where the fp32 reference happens to be exact (a tiny model,
            a block of exact operations), where a limit of zero would reject legitimate rounding.
    """

    margin: float = 16.0
    floor: float = 8 * FP32_EPS

    def __post_init__(self) -> None:
        if not self.margin >= 1.0:
            raise ValueError(f"margin must be at least 1. Received: margin={self.margin!r}")
        if not self.floor >= 0.0:
            raise ValueError(f"floor must be non-negative. Received: floor={self.floor!r}")


@dataclass(frozen=True)
class Comparison:
    """How far ``a`` is from the reference ``b`` (plain figures, no verdict)."""

    max_abs: float
    rel: float
    argmax_agreement: float
    shape: tuple[int, ...]

    def to_dict(self) -> dict:
        return asdict(self)

    def __str__(self) -> str:
        return (
            f"max|Δ|={self.max_abs:.3g} rel={self.rel:.3g} "
            f"argmax={100 * self.argmax_agreement:.4f}%"
        )


@dataclass(frozen=True)
class NoiseCheck:
    """A candidate against the fp32 reference, judged by the reference's measured fp32 noise.

    Attributes:
        max_abs, rel: max |candidate − reference| and ‖candidate − reference‖/‖reference‖.
        noise_max_abs, noise_rel: The fp32 noise: the reference against its float64 run (the
            larger of that and the candidate's own noise, when the candidate has a float64 run).
        max_abs_limit, rel_limit: What the tolerance allows (margin × max(noise, floor)).
        candidate_rel64: ‖candidate − float64‖/‖float64‖, the candidate's fp32 error.
        candidate_noise_rel: The candidate's own fp32 noise against its float64 run (0 when it
            has none).
        float64_rel: ‖candidate float64 − reference float64‖/‖reference float64‖ (0 when the
            candidate has no float64 run); must stay below ``float64_limit``.
        float64_limit: ``margin`` × the smaller of the two fp32 noises (at least the floor).
        decisive: Pixels whose float64 top-2 logit margin (or distance from the sign threshold,
            with one channel) is too large for any output within the limits to change the label.
        flips: Decisive pixels whose candidate label differs from the float64 label.
        near_ties: Pixels too close to a tie to be judged; their labels may differ.
        shape: Compared shape.
    """

    max_abs: float
    rel: float
    noise_max_abs: float
    noise_rel: float
    max_abs_limit: float
    rel_limit: float
    candidate_rel64: float
    decisive: int
    flips: int
    near_ties: int
    shape: tuple[int, ...]
    candidate_noise_rel: float = 0.0
    float64_rel: float = 0.0
    float64_limit: float = float("inf")

    @property
    def passed(self) -> bool:
        return (
            self.rel <= self.rel_limit
            and self.max_abs <= self.max_abs_limit
            and not self.flips
            and self.float64_rel <= self.float64_limit
        )

    @property
    def agreement(self) -> float:
        """Share of decisive pixels whose label agrees (1.0 when none is decisive)."""
        return 1.0 - self.flips / self.decisive if self.decisive else 1.0

    @property
    def noise_ratio(self) -> float:
        """The relative difference in units of the measured noise (the limit is ``margin``)."""
        noise = max(self.noise_rel, 1e-300)
        return self.rel / noise

    def to_dict(self) -> dict:
        """Plain figures for JSON (no infinities: a limit that does not apply is ``None``)."""
        figures = {k: (None if v == float("inf") else v) for k, v in asdict(self).items()}
        return {**figures, "passed": self.passed, "agreement": self.agreement}

    def __str__(self) -> str:
        labels = (
            f", {self.flips} label flips in {self.decisive} decisive pixels"
            if (self.decisive or self.flips)
            else ""
        )
        float64 = (
            f", float64 runs {self.float64_rel:.3g} apart (limit {self.float64_limit:.3g})"
            if self.float64_limit != float("inf")
            else ""
        )
        return (
            f"rel={self.rel:.3g} (limit {self.rel_limit:.3g}, fp32 noise {self.noise_rel:.3g}) "
            f"max|Δ|={self.max_abs:.3g} (limit {self.max_abs_limit:.3g}){labels}{float64}"
        )


def compare(a: np.ndarray, b: np.ndarray, channel_axis: int = 1) -> Comparison:
    """Compare ``a`` against the reference ``b`` (same shape; NCHW by default).

    Returns max |a−b|, the relative error ‖a−b‖/‖b‖ (Frobenius norms, computed in float64) and the
    share of pixels whose argmax over ``channel_axis`` agrees. With one channel the argmax is
    replaced by the sign, which is what a sigmoid head thresholds at 0.5.
    """
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"cannot compare arrays of shapes {a.shape} and {b.shape}")
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        return Comparison(float("inf"), float("inf"), 0.0, a.shape)
    max_abs, rel = _distance(a, b)
    if a.ndim <= channel_axis or a.shape[channel_axis] == 1:
        agree = float(np.mean((a > 0) == (b > 0))) if a.size else 1.0
    else:
        agree = float(np.mean(a.argmax(channel_axis) == b.argmax(channel_axis)))
    return Comparison(max_abs, rel, agree, tuple(a.shape))


def check_against_noise(
    candidate: np.ndarray,
    reference: np.ndarray,
    reference64: np.ndarray,
    tolerance: NoiseTolerance | None = None,
    *,
    labels: str | None = None,
    channel_axis: int = 1,
    candidate64: np.ndarray | None = None,
) -> NoiseCheck:
    """Judge ``candidate`` against the fp32 ``reference`` by the noise of ``reference`` itself.

    Args:
        candidate: The fp32 output under test (another framework, an export).
        reference: The same output from the reference implementation in fp32.
        reference64: The reference implementation's output in float64, same weights and input.
        tolerance: Margin and floor (see :class:`NoiseTolerance`).
        labels: How outputs become labels, for the label check: ``"argmax"`` over
            ``channel_axis``, ``"sign"`` (logits thresholded at 0), ``"half"`` (probabilities
            thresholded at 0.5), or ``None`` for no label check (inner blocks).
        channel_axis: The class axis (NCHW: 1).
        candidate64: The candidate implementation's own float64 output, when it has one: its
            noise then counts toward the limit, and it must match ``reference64`` more closely
            than either fp32 run matches its float64 counterpart (see the module docstring).

    A pixel counts for the label check only when its float64 margin (top-2 difference, or
    distance from the threshold) exceeds twice the largest error the limits allow per value
    (``max_abs_limit`` + ``noise_max_abs``): no output within the limits can flip such a pixel, so
    a flip there is a defect, while a flip of a near tie is rounding.
    """
    tolerance = tolerance or NoiseTolerance()
    c = np.asarray(candidate, dtype=np.float64)
    r = np.asarray(reference, dtype=np.float64)
    r64 = np.asarray(reference64, dtype=np.float64)
    if not c.shape == r.shape == r64.shape:
        raise ValueError(
            f"cannot compare arrays of shapes {c.shape}, {r.shape} and {r64.shape} "
            "(candidate, reference, float64 reference)"
        )
    c64 = None if candidate64 is None else np.asarray(candidate64, dtype=np.float64)
    if c64 is not None and c64.shape != c.shape:
        raise ValueError(f"candidate64 has shape {c64.shape}, the candidate {c.shape}")
    arrays = (c, r, r64) if c64 is None else (c, r, r64, c64)
    if not all(np.isfinite(a).all() for a in arrays):
        inf = float("inf")
        return NoiseCheck(inf, inf, inf, inf, 0.0, 0.0, inf, 0, int(c.size > 0), 0, c.shape)
    scale = float(np.abs(r64).max()) if r64.size else 0.0
    rms = float(np.sqrt(np.mean(r64**2))) if r64.size else 0.0
    max_abs, rel = _distance(c, r, r64)
    noise_max_abs, noise_rel = _distance(r, r64, r64)
    _, candidate_rel64 = _distance(c, r64, r64)
    candidate_noise_rel, float64_rel, float64_limit = 0.0, 0.0, float("inf")
    if c64 is not None:
        candidate_noise_max, candidate_noise_rel = _distance(c, c64, r64)
        _, float64_rel = _distance(c64, r64, r64)
        float64_limit = tolerance.margin * max(min(noise_rel, candidate_noise_rel), tolerance.floor)
        noise_rel = max(noise_rel, candidate_noise_rel)
        noise_max_abs = max(noise_max_abs, candidate_noise_max)
    rel_limit = tolerance.margin * max(noise_rel, tolerance.floor)
    max_abs_limit = tolerance.margin * max(noise_max_abs, tolerance.floor * max(scale, rms))
    decisive = flips = near_ties = 0
    if labels is not None and c.size:
        bound = 2.0 * (max_abs_limit + noise_max_abs)
        got, want, margin = _labels(c, r64, labels, channel_axis)
        clear = margin > bound
        decisive = int(clear.sum())
        flips = int((clear & (got != want)).sum())
        near_ties = int((~clear).sum())
    return NoiseCheck(
        max_abs, rel, noise_max_abs, noise_rel, max_abs_limit, rel_limit, candidate_rel64,
        decisive, flips, near_ties, tuple(c.shape), candidate_noise_rel, float64_rel, float64_limit,
    )  # fmt: skip


#: Where a one-channel output is cut into class 0 and class 1, by rule: ``"sign"`` for a logit,
#: ``"half"`` for a sigmoid probability (the sigmoid of 0 is 1/2, so both cut at the same place).
THRESHOLDS = {"sign": 0.0, "half": 0.5}


def rule_for(channels: int, head: str, probabilities: bool) -> str:
    """The one label rule, by name: ``"argmax"`` over two or more channels (softmax and sigmoid are
    monotonic, so logits and probabilities give the same class); one channel is cut at
    :data:`THRESHOLDS` as a sigmoid probability (``"half"``) or else as a logit (``"sign"``).

    :func:`check_against_noise` takes the rule by name, to measure each pixel's float64 margin from
    its threshold; :func:`unet_infer.labels_from_probs` applies it to predictions.

    Args:
        channels: Output channels (``spec.num_classes``).
        head: The head the outputs went through when ``probabilities`` (``spec.head``).
        probabilities: Whether the outputs went through ``head`` (else they are logits).
    """
    if channels > 1:
        return "argmax"
    return "half" if probabilities and head == "sigmoid" else "sign"


def label_rule(spec: UNetSpec, probabilities: bool) -> str:
    """:func:`rule_for` ``spec``'s outputs, after its head (``probabilities``) or before (logits)."""
    return rule_for(spec.num_classes, spec.head, probabilities)


def _distance(
    a: np.ndarray, b: np.ndarray, scale_of: np.ndarray | None = None
) -> tuple[float, float]:
    """max |a − b| and ‖a − b‖/‖scale_of‖ (‖a − b‖ alone when that norm is zero)."""
    if not a.size:
        return 0.0, 0.0
    diff = a - b
    norm = float(np.linalg.norm(b if scale_of is None else scale_of))
    dnorm = float(np.linalg.norm(diff))
    return float(np.abs(diff).max()), dnorm / norm if norm > 0 else dnorm


def _labels(
    c: np.ndarray, r64: np.ndarray, rule: str, axis: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Candidate labels, float64 labels and the float64 margin of every pixel."""
    if rule == "argmax":
        if c.ndim <= axis or c.shape[axis] < 2:
            raise ValueError(f"argmax labels need at least 2 channels. Received: shape={c.shape}")
        top2 = np.sort(np.moveaxis(r64, axis, -1), axis=-1)[..., -2:]
        return c.argmax(axis), r64.argmax(axis), top2[..., 1] - top2[..., 0]
    if rule in THRESHOLDS:
        threshold = THRESHOLDS[rule]
        return c > threshold, r64 > threshold, np.abs(r64 - threshold)
    raise ValueError(f"labels must be 'argmax', 'sign', 'half' or None. Received: labels={rule!r}")
