"""Every block's activation agrees across the twins, not only the output.

Each block is judged by its own measured fp32 noise: the PyTorch twin in fp32 against the same
twin in float64, on the same weights and input (:func:`unet_bridge.run_parity`). The
noise grows along the encoder convolutions, so a fixed limit would be loose at the first block
and tight at the last; a limit per block catches a defect where it enters.
"""

from __future__ import annotations

import numpy as np
import pytest

import unet_bridge as cf
from unet_spec import DEFAULT_SIZES, get_preset, random_weights

SMALL = ["seed-small", "paper-small", "modern-small", "modern-bilinear-small"]


@pytest.mark.parametrize("name", SMALL)
def test_every_block_within_its_noise(name: str) -> None:
    spec = get_preset(name)
    size = DEFAULT_SIZES[name]
    x = cf.random_input(spec, size, batch=2, seed=3)
    report = cf.run_parity(spec, random_weights(spec, seed=3), x)

    layout = spec.plan().layout(size)
    assert [row.name for row in report.layers] == cf.tapped_blocks(spec)
    for row in report.layers:
        assert row.shape == (2, *layout[row.name].shape), row.name
        # The noise was measured, not assumed: fp32 convolutions round.
        assert row.kind != "conv" or row.check.noise_rel > 0, row.name
    assert report.first_failure is None, [r for r in report.layers if not r.passed][:1]
    assert report.passed
    assert report.logits.decisive > 0


def test_a_broken_block_is_found() -> None:
    """The per-block report points at the first block that differs, not just at the output."""
    spec = get_preset("paper-small")
    size = DEFAULT_SIZES["paper-small"]
    x = cf.random_input(spec, size, batch=1, seed=0)
    weights = random_weights(spec, seed=0)
    names = cf.tapped_blocks(spec)
    ref = cf.torch_taps(cf.torch_model(spec, weights), x, names)
    ref64 = cf.reference_taps(spec, weights, x, names)
    other = dict(weights)
    other["enc3.conv2.bias"] = other["enc3.conv2.bias"] + np.float32(1e-3)
    got = cf.torch_taps(cf.torch_model(spec, other), x, names)
    rows = cf.compare_taps(spec, ref, ref64, got)
    first = next(r.name for r in rows if not r.passed)
    assert first == "enc3.conv2"
    assert all(r.passed for r in rows[: names.index("enc3.conv2")])


def test_non_finite_weights_are_bad_input() -> None:
    spec = get_preset("paper-small")
    weights = random_weights(spec, seed=0)
    weights["dec2.conv1.weight"] = weights["dec2.conv1.weight"].copy()
    weights["dec2.conv1.weight"][0, 0, 0, 0] = np.nan
    x = cf.random_input(spec, 188, batch=1, seed=0)
    with pytest.raises(ValueError, match=r"weight dec2\.conv1\.weight holds 1 non-finite value"):
        cf.run_parity(spec, weights, x)
    x[0, 0, 5, 5] = np.inf
    with pytest.raises(ValueError, match="the input holds 1 non-finite value"):
        cf.run_parity(spec, random_weights(spec, seed=0), x)
