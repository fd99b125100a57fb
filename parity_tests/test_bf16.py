"""bf16 forward agreement, with a tolerance taken from measurement.

Both twins run in bf16 (PyTorch: the model and input cast to bfloat16; Keras: the
``mixed_bfloat16`` policy, bf16 compute with fp32 variables) and are compared with the fp32
PyTorch logits and with each other. Measured on a CPU (random He weights, batch 2, default sizes):

=======================  ==================  ==================  ====================
preset                   PyTorch bf16        Keras bf16          Keras vs PyTorch bf16
=======================  ==================  ==================  ====================
seed-small               1.4e-2 / 99.51 %    2.6e-2 / 98.96 %    2.5e-2 / 98.99 %
paper-small              1.3e-2 / 99.87 %    2.3e-2 / 99.77 %    2.2e-2 / 99.75 %
modern-small             2.4e-2 / 99.20 %    3.5e-2 / 98.90 %    3.9e-2 / 98.84 %
modern-bilinear-small    9.2e-3 / 99.97 %    8.7e-3 / 99.98 %    1.2e-2 / 99.97 %
=======================  ==================  ==================  ====================

(relative error of the logits / argmax agreement). Keras keeps more tensors in bf16 between layers
than a bf16 PyTorch module does, hence its larger error. The relative limit is eight bf16 roundings
(8 · 2⁻⁷ = 6.25e-2): bf16 keeps 8 significant bits on every CPU, so its error does not depend on
the kernels the way fp32's accumulation order does.
"""

from __future__ import annotations

import numpy as np
import pytest

from unet_bridge import import_frameworks, keras_model, random_input, torch_model
from unet_bridge.parity import torch_taps

import_frameworks()

# isort: off
import torch  # noqa: E402
import keras  # noqa: E402
# isort: on

from unet_keras import to_nchw, to_nhwc  # noqa: E402
from unet_spec import DEFAULT_SIZES, compare, get_preset, random_weights  # noqa: E402

REL = 8 * 2.0**-7  # eight bf16 roundings (bf16 ε = 2⁻⁷)
ARGMAX = 0.98


@pytest.fixture(scope="module")
def bf16_kernels() -> None:
    """Skip where oneDNN has no bf16 convolution for this CPU (or its ISA cap, such as SSE41)."""
    try:
        conv = keras.layers.Conv2D(2, 3, dtype="bfloat16")
        conv(np.zeros((1, 8, 8, 2), np.float32))
    except Exception as err:
        pytest.skip(f"no bf16 convolution on this CPU: {str(err).splitlines()[0][:120]}")


@pytest.mark.parametrize("name", ["seed-small", "modern-small"])
def test_bf16_forward_agrees(name: str, bf16_kernels: None) -> None:
    spec, size = get_preset(name), DEFAULT_SIZES[name]
    weights = random_weights(spec, seed=4)
    x = random_input(spec, size, 2, seed=4)
    reference = torch_taps(torch_model(spec, weights), x, ["head"])["head"]

    model = torch_model(spec, weights).to(torch.bfloat16)
    with torch.no_grad():
        torch_bf16 = model(torch.from_numpy(x).to(torch.bfloat16)).float().numpy()
    kmodel = keras_model(spec, weights, size, dtype="mixed_bfloat16")
    out = keras.ops.convert_to_numpy(keras.ops.cast(kmodel(to_nhwc(x)), "float32"))
    keras_bf16 = to_nchw(np.asarray(out))

    for label, got, ref in (
        ("PyTorch bf16 vs fp32", torch_bf16, reference),
        ("Keras bf16 vs fp32", keras_bf16, reference),
        ("Keras vs PyTorch bf16", keras_bf16, torch_bf16),
    ):
        c = compare(got, ref)
        assert c.rel <= REL and c.argmax_agreement >= ARGMAX, f"{label}: {c}"
    # bf16 really ran: fp32 twins agree to ~1e-6, bf16 ones only to ~1e-2.
    assert compare(torch_bf16, reference).rel > 1e-4
