"""The CPU inference path of ``UNet``: channels-last order and fused convolution + ReLU.

Functional checks only (what the path computes and returns); speed is measured by
``benchmarks/throughput.py``, never asserted here.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import unet_torch.model as model_module
from unet_spec import PRESETS, check_against_noise, get_preset, random_weights
from unet_torch import UNet, canonical_state, float64_reference, load_canonical

pytestmark = pytest.mark.skipif(
    not model_module._FUSED_CONV_RELU, reason="this torch build has no oneDNN fused convolution"
)


def _model(name: str) -> tuple[UNet, torch.Tensor]:
    spec = PRESETS[name]
    size = 188 if spec.padding == "valid" else 64
    model = load_canonical(UNet(spec), random_weights(spec)).eval()
    x = torch.rand(2, spec.in_channels, size, size, generator=torch.Generator().manual_seed(0))
    return model, x


def _pairs(model: UNet) -> int:
    return sum(len(seg.fusable) for seg in model._segments)


@pytest.mark.parametrize("name", ["seed-small", "paper-small", "modern-small"])
def test_inference_path_matches_the_training_path_bit_for_bit(name: str) -> None:
    # Same oneDNN kernels in the same order (channels-last input on the grad path); ReLU as a
    # post-op is exact, so fusing changes no bit.
    model, x = _model(name)
    with torch.no_grad():
        fast = model(x)
    slow = model(x.contiguous(memory_format=torch.channels_last)).detach()
    torch.testing.assert_close(fast, slow.contiguous(), rtol=0, atol=0)


@pytest.mark.parametrize("name", ["seed-small", "modern-small"])
def test_inference_path_is_within_fp32_noise_of_float64(name: str) -> None:
    model, x = _model(name)
    with torch.inference_mode():
        out = model(x)
    plain = model(x).detach()  # NCHW, unfused: the path training takes
    ref64 = float64_reference(model, x)
    result = check_against_noise(out.numpy(), plain.numpy(), ref64.numpy(), labels="argmax")
    assert result.passed, result


def test_convolutions_and_relus_are_fused_only_without_grad(monkeypatch) -> None:
    model, x = _model("seed-small")
    pairs = _pairs(model)
    assert pairs == 18  # every 3×3 convolution of seed is followed by its ReLU
    calls = []
    real = model_module._conv_relu
    monkeypatch.setattr(
        model_module, "_conv_relu", lambda conv, t: calls.append(t) or real(conv, t)
    )
    with torch.no_grad():
        model(x)
    assert len(calls) == pairs
    assert all(t.is_contiguous(memory_format=torch.channels_last) for t in calls)
    model(x).sum().backward()  # the training path: autograd-aware modules only
    assert len(calls) == pairs


def test_batch_norm_models_keep_conv_and_relu_apart() -> None:
    # conv → batch norm → ReLU: the ReLU does not read the convolution, so nothing is fused.
    model, _ = _model("modern-small")
    assert get_preset("modern-small").norm == "batch"
    assert _pairs(model) == 0


@pytest.mark.parametrize("channels_last", [False, True])
def test_output_comes_back_in_the_callers_layout(channels_last: bool) -> None:
    model, x = _model("seed-small")
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        out = model(x)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    assert out.is_contiguous(memory_format=fmt)
    assert out.is_contiguous() != channels_last


def test_parameters_and_canonical_weights_are_untouched() -> None:
    model, x = _model("seed-small")
    before = canonical_state(model)
    strides = {n: p.stride() for n, p in model.named_parameters()}
    with torch.inference_mode():
        model(x)
    assert {n: p.stride() for n, p in model.named_parameters()} == strides
    after = canonical_state(model)
    assert all(np.array_equal(before[n], after[n]) for n in before)


def test_other_dtypes_and_autocast_take_the_plain_path(monkeypatch) -> None:
    model, x = _model("seed-small")
    monkeypatch.setattr(model_module, "_conv_relu", lambda *a: pytest.fail("fused path taken"))
    with torch.no_grad(), torch.autocast("cpu", torch.bfloat16):
        assert model(x).dtype == torch.bfloat16
    with torch.no_grad():
        assert model.double()(x.double()).dtype == torch.float64


def test_a_hooked_layer_is_called_unfused() -> None:
    # Per-layer parity taps blocks with forward hooks: a hooked conv must still see its output.
    model, x = _model("seed-small")
    seen = []
    model.enc1["conv1"].register_forward_hook(lambda m, i, out: seen.append(out.shape))
    with torch.no_grad():
        model(x)
    assert seen == [torch.Size([2, 16, 186, 186])]  # seed-small: base 16
