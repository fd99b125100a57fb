"""Gradients of the same loss wrt every weight and the input agree across the twins.

Judged like the training steps (``test_training_steps.py``): both frameworks compute the gradients
in fp32 and in float64; each one's noise is its fp32 distance from its own float64 run, the fp32
gradients must agree within the margin of the larger noise and the float64 ones within the margin
of the smaller (:func:`unet_spec.check_against_noise`). A ReLU or max-pool decision that sits
within rounding of its kink can route a whole gradient differently in the two frameworks; the
float64 runs make such a case visible as noise of the framework that flipped, not as a defect.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from parity_tests.twins import build_plan, keras_gradients, torch_gradients
from unet_bridge import random_input
from unet_spec import check_against_noise, get_preset, random_weights

CASES = [
    # (label, spec, size, batch, training mode)
    ("seed-small@depth2", get_preset("seed-small").replace(depth=2), 64, 1, False),
    ("paper-small", get_preset("paper-small"), 188, 1, False),
    ("modern-small", get_preset("modern-small"), 32, 2, False),
    ("modern-small/train", get_preset("modern-small"), 32, 2, True),
    ("modern-bilinear-small/train", get_preset("modern-bilinear-small"), 32, 2, True),
]


def _biases_before_batchnorm(spec) -> set[str]:
    """Conv biases followed by batch norm: in training mode the batch mean cancels them, so their
    true gradient is zero and both frameworks return float noise."""
    blocks = build_plan(spec).blocks
    return {
        f"{b.name}.bias"
        for b, nxt in zip(blocks, blocks[1:], strict=False)
        if b.kind == "conv" and nxt.kind == "batchnorm"
    }


@pytest.mark.parametrize(
    ("label", "spec", "size", "batch", "train"), CASES, ids=[c[0] for c in CASES]
)
def test_gradients_match(label, spec, size, batch, train) -> None:
    weights = random_weights(spec, seed=1)
    x = random_input(spec, size, batch, seed=1)
    out = build_plan(spec).layout(size).output_shape
    target = np.random.default_rng(2).standard_normal((batch, *out)).astype(np.float32)

    loss_t, grads_t, dx_t = torch_gradients(spec, weights, x, target, train)
    loss_64, grads_64, dx_64 = torch_gradients(spec, weights, x, target, train, torch.float64)
    loss_k, grads_k, dx_k = keras_gradients(spec, weights, x, target, train)
    loss_k64, grads_k64, dx_k64 = keras_gradients(spec, weights, x, target, train, "float64")

    loss = check_against_noise([loss_k], [loss_t], [loss_64], candidate64=[loss_k64])
    assert loss.passed, f"loss: {loss}"
    assert set(grads_k) == set(grads_t)
    dx = check_against_noise(dx_k, dx_t, dx_64, candidate64=dx_k64)
    assert dx.passed, f"input gradient: {dx}"
    zero = _biases_before_batchnorm(spec) if train else set()
    for name in grads_t:
        if name in zero:
            # No true gradient: whatever either framework returns is the rounding of a sum over
            # the batch and every pixel that cancels to zero, at most n·ε of its terms' scale.
            n = batch * size * size
            scale = np.abs(grads_64[name.replace(".bias", ".weight")]).max()
            assert np.abs(grads_64[name]).max() <= n * np.finfo(np.float64).eps * scale, name
            for grads in (grads_t, grads_k):
                assert np.abs(grads[name]).max() <= n * np.finfo(np.float32).eps * scale, name
            continue
        check = check_against_noise(grads_k[name], grads_t[name], grads_64[name],
                                    candidate64=grads_k64[name])  # fmt: skip
        assert check.passed, f"{name}: {check}"
