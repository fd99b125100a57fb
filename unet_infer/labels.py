"""The one label rule applied to predictions: class ids from the head's outputs."""

from __future__ import annotations

import numpy as np

from unet_spec.compare import THRESHOLDS, rule_for


def labels_from_probs(probs: np.ndarray, head: str) -> np.ndarray:
    """Class ids from the head's outputs, channels on axis -3: ``(K, H, W)`` → ``(H, W)``,
    ``(N, K, H, W)`` → ``(N, H, W)`` (int64).

    The one label rule (:func:`unet_spec.compare.rule_for`, which the parity checks use too) of
    validation, evaluation and ``unet predict``:

    - two or more channels: the highest output (ties go to the lower class id). Softmax and sigmoid
      are monotonic, so this is the same class for probabilities and for logits, whatever the head.
    - one channel, ``sigmoid`` head: class 1 where the probability exceeds 1/2.
    - one channel, ``none`` head: the output is a logit (every loss of this project trains the raw
      outputs as logits), so class 1 where it exceeds 0, the sigmoid's 1/2. (A one-channel softmax
      is 1 everywhere, class 1 under either cut.)

    Raises:
        ValueError: Fewer than 3 dimensions, or an unknown head.
    """
    probs = np.asarray(probs)
    if probs.ndim < 3:
        raise ValueError(f"scores must be (K, H, W) or (N, K, H, W). Received: shape={probs.shape}")
    if head not in ("softmax", "sigmoid", "none"):
        raise ValueError(f"head must be softmax, sigmoid or none. Received: head={head!r}")
    rule = rule_for(probs.shape[-3], head, probabilities=True)
    if rule == "argmax":
        return probs.argmax(-3).astype(np.int64, copy=False)
    return (probs[..., 0, :, :] > THRESHOLDS[rule]).astype(np.int64)
