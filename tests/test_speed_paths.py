"""The CPU inference path of ``UNet``: channels-last order, outputs in the caller's layout.

Functional checks only (what the path computes and returns); speed is measured by
``benchmarks/throughput.py``, never asserted here.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from unet_spec import PRESETS, check_against_noise, random_weights
from unet_torch import UNet, canonical_state, float64_reference, load_canonical


def _model(name: str) -> tuple[UNet, torch.Tensor]:
    spec = PRESETS[name]
    size = 188 if spec.padding == "valid" else 64
    model = load_canonical(UNet(spec), random_weights(spec)).eval()
    x = torch.rand(2, spec.in_channels, size, size, generator=torch.Generator().manual_seed(0))
    return model, x


@pytest.mark.parametrize("name", ["seed-small", "paper-small", "modern-small"])
def test_inference_path_matches_the_training_path_bit_for_bit(name: str) -> None:
    # The same oneDNN kernels in the same order as the gradient path given a channels-last input.
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


def _conv_input_layouts(model: UNet, run) -> list[bool]:
    """Whether each convolution saw a channels-last input during ``run()``."""
    seen: list[bool] = []
    hooks = [
        m.register_forward_pre_hook(
            lambda _, args: seen.append(
                args[0].is_contiguous(memory_format=torch.channels_last)
                and not args[0].is_contiguous()
            )
        )
        for m in model.modules()
        if isinstance(m, torch.nn.Conv2d)
    ]
    try:
        run()
    finally:
        for hook in hooks:
            hook.remove()
    return seen


def test_only_cpu_float32_inference_runs_channels_last() -> None:
    model, x = _model("seed-small")
    with torch.no_grad():
        inference = _conv_input_layouts(model, lambda: model(x))
    assert inference and all(inference)
    training = _conv_input_layouts(model, lambda: model(x).sum().backward())
    assert training and not any(training)  # the caller's NCHW: the faster weight-gradient kernels
    with torch.no_grad(), torch.autocast("cpu", torch.bfloat16):
        assert not any(_conv_input_layouts(model, lambda: model(x)))
    with torch.no_grad():
        double = model.double()
        assert not any(_conv_input_layouts(double, lambda: double(x.double())))


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


def test_a_hooked_layer_is_called_on_the_inference_path() -> None:
    # Per-layer parity taps blocks with forward hooks: a hooked conv must still see its output.
    model, x = _model("seed-small")
    seen = []
    model.enc1["conv1"].register_forward_hook(lambda m, i, out: seen.append(out.shape))
    with torch.no_grad():
        model(x)
    assert seen == [torch.Size([2, 16, 186, 186])]  # seed-small: base 16
