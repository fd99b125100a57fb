"""A third implementation: the Keras twin on Keras' torch backend (in a subprocess, since the
backend is fixed per process) loads the same canonical weights and matches PyTorch block by block.

Judged like Keras on TensorFlow: every block within the noise margin of PyTorch's own fp32 noise,
measured against a float64 run. (Keras' torch backend registers variables as PyTorch parameters, whose names cannot hold
dots: that is why Keras layer names use underscores, see ``unet_spec.Block.keras_name``.)
"""

from __future__ import annotations

from unet_bridge import random_input, torch_model
from unet_bridge.backends import keras_backend_taps
from unet_bridge.parity import (
    check_outputs,
    compare_taps,
    reference_taps,
    tapped_blocks,
    torch_taps,
)
from unet_spec import get_preset, random_weights

CASES = [("modern-small", 64), ("seed-small", 188)]


def test_keras_on_torch_backend_matches() -> None:
    cases = []
    for name, size in CASES:
        spec = get_preset(name)
        cases.append((spec, random_weights(spec, seed=2), random_input(spec, size, 1, seed=2)))
    taps, info = keras_backend_taps(cases, backend="torch")
    assert info["keras_backend"] == "torch"
    for (spec, weights, x), got in zip(cases, taps, strict=True):
        names = tapped_blocks(spec)
        ref = torch_taps(torch_model(spec, weights), x, names)
        ref64 = reference_taps(spec, weights, x, names)
        rows = compare_taps(spec, ref, ref64, got)
        assert [r.name for r in rows] == names
        assert all(r.passed for r in rows), [r for r in rows if not r.passed][:1]
        logits, output = check_outputs(spec, got["head"], ref["head"], ref64["head"])
        assert logits.passed and output.passed, (logits, output)
