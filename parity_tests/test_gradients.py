"""Gradients of the same loss wrt every weight and the input agree across the twins (≤ 1e-4 rel).

Measured (fp32 CPU): about 1e-6 relative for every tensor and the input. Larger inputs occasionally
show spikes (1e-4 and more) that are not errors: a ReLU or max-pool decision that sits within
float noise (~1e-6) of its kink goes one way in one framework and the other way in the other, and
routes a whole gradient differently. The cases below keep inputs small enough that this does not
happen for their fixed seeds; the forward pass itself is checked at full size elsewhere.
"""

from __future__ import annotations

import numpy as np
import pytest

from parity_tests.twins import build_plan, keras_gradients, torch_gradients
from unet_cli import crossframework as cf
from unet_spec import get_preset, random_weights

LIMIT = 1e-4

CASES = [
    # (label, spec, size, batch, training mode)
    ("seed-small@depth2", get_preset("seed-small").replace(depth=2), 64, 1, False),
    ("paper-small", get_preset("paper-small"), 188, 1, False),
    ("modern-small", get_preset("modern-small"), 32, 2, False),
    ("modern-small/train", get_preset("modern-small"), 32, 2, True),
    ("modern-bilinear-small/train", get_preset("modern-bilinear-small"), 32, 2, True),
]


def _rel(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


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
    x = cf.random_input(spec, size, batch, seed=1)
    out = build_plan(spec).layout(size).output_shape
    target = np.random.default_rng(2).standard_normal((batch, *out)).astype(np.float32)

    loss_t, grads_t, dx_t = torch_gradients(spec, weights, x, target, train)
    loss_k, grads_k, dx_k = keras_gradients(spec, weights, x, target, train)

    assert abs(loss_k - loss_t) <= LIMIT * abs(loss_t)
    assert set(grads_k) == set(grads_t)
    assert _rel(dx_k, dx_t) <= LIMIT, "input gradient"
    zero = _biases_before_batchnorm(spec) if train else set()
    for name in grads_t:
        if name in zero:
            scale = np.abs(grads_t[name.replace(".bias", ".weight")]).max()
            assert np.abs(grads_t[name]).max() <= 1e-4 * scale, name
            assert np.abs(grads_k[name]).max() <= 1e-4 * scale, name
            continue
        assert _rel(grads_k[name], grads_t[name]) <= LIMIT, name
