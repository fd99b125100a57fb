"""Every block's activation agrees across the twins, not only the output.

Each block is judged by its own measured fp32 noise: the PyTorch twin in fp32 against the same
twin in float64, on the same weights and input (:func:`unet_bridge.run_parity`). The
noise grows along the encoder convolutions, so a fixed limit would be loose at the first block
and tight at the last; a limit per block catches a defect where it enters.
"""

from __future__ import annotations

import numpy as np
import pytest

from unet_bridge import random_input, run_parity, torch_model
from unet_bridge.parity import compare_taps, reference_taps, tapped_blocks, torch_taps
from unet_spec import DEFAULT_SIZES, get_preset, random_weights

SMALL = ["seed-small", "paper-small", "modern-small", "modern-bilinear-small"]


@pytest.mark.parametrize("name", SMALL)
def test_every_block_within_its_noise(name: str) -> None:
    spec = get_preset(name)
    size = DEFAULT_SIZES[name]
    x = random_input(spec, size, batch=2, seed=3)
    report = run_parity(spec, random_weights(spec, seed=3), x)

    layout = spec.plan().layout(size)
    assert [row.name for row in report.layers] == tapped_blocks(spec)
    for row in report.layers:
        assert row.shape == (2, *layout[row.name].shape), row.name
        # The noise was measured, not assumed: fp32 convolutions round.
        assert row.kind != "conv" or row.check.noise_rel > 0, row.name
    assert report.first_failure is None, [r for r in report.layers if not r.passed][:1]
    assert report.passed
    assert report.logits.decisive > 0


@pytest.mark.kernel_free
def test_a_broken_block_is_found() -> None:
    """The per-block report points at the first block that differs, not just at the output.

    Left out of the AVX2 rerun (marked ``kernel_free``): the blocks before the broken one run the
    same kernels on the same inputs in both models, so they agree bit for bit whatever those
    kernels are, and the broken block sits about 60× beyond its limit (about 900× its measured
    noise) on either ISA."""
    spec = get_preset("paper-small")
    size = DEFAULT_SIZES["paper-small"]
    x = random_input(spec, size, batch=1, seed=0)
    weights = random_weights(spec, seed=0)
    names = tapped_blocks(spec)
    ref = torch_taps(torch_model(spec, weights), x, names)
    ref64 = reference_taps(spec, weights, x, names)
    other = dict(weights)
    other["enc3.conv2.bias"] = other["enc3.conv2.bias"] + np.float32(1e-3)
    got = torch_taps(torch_model(spec, other), x, names)
    rows = compare_taps(spec, ref, ref64, got)
    first = next(r.name for r in rows if not r.passed)
    assert first == "enc3.conv2"
    assert all(r.passed for r in rows[: names.index("enc3.conv2")])


@pytest.mark.kernel_free  # refused before anything is computed
def test_non_finite_weights_are_bad_input() -> None:
    spec = get_preset("paper-small")
    weights = random_weights(spec, seed=0)
    weights["dec2.conv1.weight"] = weights["dec2.conv1.weight"].copy()
    weights["dec2.conv1.weight"][0, 0, 0, 0] = np.nan
    x = random_input(spec, 188, batch=1, seed=0)
    with pytest.raises(ValueError, match=r"weight dec2\.conv1\.weight holds 1 non-finite value"):
        run_parity(spec, weights, x)
    x[0, 0, 5, 5] = np.inf
    with pytest.raises(ValueError, match="the input holds 1 non-finite value"):
        run_parity(spec, random_weights(spec, seed=0), x)


def test_instance_norm_of_a_large_offset_map_is_within_the_noise() -> None:
    """A map whose spread is small beside its mean (a ReLU output, here 256² pixels around 10):
    the Keras instance norm sums each map in short runs, so its rounding stays at the level of
    PyTorch's own fp32 rounding, judged against PyTorch in float64."""
    import torch

    from unet_keras.layers import InstanceNormalization
    from unet_spec import check_against_noise

    rng = np.random.default_rng(0)
    x = (10.0 + rng.random((2, 3, 256, 256))).astype(np.float32)
    gamma, beta = rng.normal(size=3).astype(np.float32), rng.normal(size=3).astype(np.float32)

    def torch_norm(dtype: torch.dtype) -> np.ndarray:
        norm = torch.nn.InstanceNorm2d(3, eps=1e-5, affine=True).to(dtype)
        with torch.no_grad():
            norm.weight.copy_(torch.from_numpy(gamma))
            norm.bias.copy_(torch.from_numpy(beta))
            return norm(torch.from_numpy(x).to(dtype)).numpy()

    layer = InstanceNormalization(epsilon=1e-5)
    layer.build((None, 256, 256, 3))
    layer.set_weights([gamma, beta])
    got = np.moveaxis(np.asarray(layer(np.moveaxis(x, 1, -1))), -1, 1)
    check = check_against_noise(got, torch_norm(torch.float32), torch_norm(torch.float64))
    assert check.passed, check
