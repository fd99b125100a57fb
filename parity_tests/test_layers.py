"""Every block's activation agrees across the twins, not only the output.

A block passes when its relative error is within ``Tolerance.rel`` (1e-5) and its max |Δ| within
``Tolerance.max_abs`` scaled by the block's own magnitude (see
:func:`unet_cli.crossframework.layer_passes`). Measured on the small presets (fp32 CPU, random He
weights): at most about 2e-6 relative at any block; the error grows along the encoder convs and
stays flat through pooling, resizing, cropping and concatenation.
"""

from __future__ import annotations

import pytest

from unet_cli import crossframework as cf
from unet_spec import DEFAULT_SIZES, get_preset, random_weights

SMALL = ["seed-small", "paper-small", "modern-small", "modern-bilinear-small"]


@pytest.mark.parametrize("name", SMALL)
def test_every_block_within_tolerance(name: str) -> None:
    spec = get_preset(name)
    size = DEFAULT_SIZES[name]
    x = cf.random_input(spec, size, batch=2, seed=3)
    report = cf.run_parity(spec, random_weights(spec, seed=3), x)

    layout = spec.plan().layout(size)
    assert [row.name for row in report.layers] == cf.tapped_blocks(spec)
    for row in report.layers:
        assert row.shape == (2, *layout[row.name].shape), row.name
    assert report.first_failure is None, [r for r in report.layers if not r.passed][:1]
    assert report.passed
    assert max(row.rel for row in report.layers) <= 1e-5


def test_a_broken_block_is_found() -> None:
    """The per-block report points at the first block that differs, not just at the output."""
    spec = get_preset("paper-small")
    size = DEFAULT_SIZES["paper-small"]
    x = cf.random_input(spec, size, batch=1, seed=0)
    weights = random_weights(spec, seed=0)
    names = cf.tapped_blocks(spec)
    ref = cf.torch_taps(cf.torch_model(spec, weights), x, names)
    other = dict(weights)
    other["enc3.conv2.bias"] = other["enc3.conv2.bias"] + 1e-3
    got = cf.torch_taps(cf.torch_model(spec, other), x, names)
    rows = cf.compare_taps(spec, ref, got, cf.Tolerance())
    first = next(r.name for r in rows if not r.passed)
    assert first == "enc3.conv2"
    assert all(r.passed for r in rows[: names.index("enc3.conv2")])
