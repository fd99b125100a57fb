"""The numpy comparison used by every parity check (tests, ``unet parity``, training export)."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np


@dataclass(frozen=True)
class Tolerance:
    """Limits for two fp32 outputs of the same function.

    The defaults come from measurement: the seed model at 572² on a CPU in fp32 differs between
    Keras and PyTorch by about 5e-7 relative (max |Δ| 6e-6), mostly from the bilinear skip resize.
    """

    rel: float = 1e-5
    max_abs: float = 1e-4
    argmax: float = 0.9999


@dataclass(frozen=True)
class Comparison:
    """How far ``a`` is from the reference ``b``."""

    max_abs: float
    rel: float
    argmax_agreement: float
    shape: tuple[int, ...]

    def within(self, tol: Tolerance = Tolerance()) -> bool:
        return (
            self.rel <= tol.rel
            and self.max_abs <= tol.max_abs
            and self.argmax_agreement >= tol.argmax
        )

    def to_dict(self) -> dict:
        return asdict(self)

    def __str__(self) -> str:
        return (
            f"max|Δ|={self.max_abs:.3g} rel={self.rel:.3g} "
            f"argmax={100 * self.argmax_agreement:.4f}%"
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
    diff = a - b
    max_abs = float(np.abs(diff).max()) if diff.size else 0.0
    norm_b = float(np.linalg.norm(b))
    rel = float(np.linalg.norm(diff) / norm_b) if norm_b > 0 else float(np.linalg.norm(diff))
    if a.ndim <= channel_axis or a.shape[channel_axis] == 1:
        agree = float(np.mean((a > 0) == (b > 0))) if a.size else 1.0
    else:
        agree = float(np.mean(a.argmax(channel_axis) == b.argmax(channel_axis)))
    return Comparison(max_abs, rel, agree, tuple(a.shape))
