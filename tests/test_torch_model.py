"""``unet_torch.UNet``: names are the weight contract; memory formats; canonical adapters."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from unet_spec import (
    PRESETS,
    canonical_shapes,
    check_against_noise,
    get_preset,
    random_weights,
)
from unet_torch import UNet, canonical_state, float64_reference, load_canonical, probabilities


# ``kernel_free``: names, shapes, counts, dtypes and copies, nothing whose value a convolution
# kernel computes, so the AVX2 rerun (Makefile) leaves these out.
@pytest.mark.kernel_free
@pytest.mark.parametrize("name", sorted(PRESETS))
def test_state_dict_is_the_canonical_form(name: str) -> None:
    spec = PRESETS[name]
    state = UNet(spec).state_dict()
    keys = [k for k in state if not k.endswith("num_batches_tracked")]
    shapes = canonical_shapes(spec)
    assert keys == list(shapes)
    assert all(tuple(state[k].shape) == shapes[k] for k in keys)


@pytest.mark.kernel_free
def test_parameter_count_of_the_seed() -> None:
    model = UNet(get_preset("seed"))
    assert sum(p.numel() for p in model.parameters()) == 31_031_810


@pytest.mark.kernel_free
def test_module_paths_are_plan_names() -> None:
    model = UNet(get_preset("paper-small"))
    modules = dict(model.named_modules())
    for block in model.plan:
        if block.kind != "input":
            assert block.name in modules, block.name
    assert isinstance(modules["dec1.up"], torch.nn.ConvTranspose2d)
    assert isinstance(modules["mid.dropout"], torch.nn.Dropout)


@pytest.mark.parametrize("name", ["seed-small", "modern-small", "modern-bilinear-small"])
def test_channels_last_gives_the_same_output(name: str) -> None:
    spec = PRESETS[name]
    size = 252 if spec.padding == "valid" else 64
    model = load_canonical(UNet(spec), random_weights(spec)).eval()
    x = torch.rand(2, spec.in_channels, size, size, generator=torch.Generator().manual_seed(0))
    ref = model(x).detach()  # with gradients on: NCHW as given, the training path
    ref64 = float64_reference(model, x)
    model_cl = model.to(memory_format=torch.channels_last)
    out = model_cl(x.to(memory_format=torch.channels_last)).detach()
    assert out.is_contiguous(memory_format=torch.channels_last)
    # A different memory format sums in a different order: fp32 noise, judged like the twins.
    result = check_against_noise(out.numpy(), ref.numpy(), ref64.numpy(), labels="argmax")
    assert result.passed, result


@pytest.mark.kernel_free
@pytest.mark.parametrize(
    ("name", "kind"), [("seed-small", "Resize"), ("modern-bilinear-small", "Upsample")]
)
def test_bilinear_layers_keep_the_autocast_dtype(name: str, kind: str) -> None:
    # Autocast would run them in float32 and turn the decoder's concat into float32 (casts around
    # every neighbouring op); they must stay in bf16 and match a bf16 interpolation. Kernel-free:
    # dtypes, and the layer's output against PyTorch's interpolation of the very same input.
    spec = PRESETS[name]
    size = 252 if spec.padding == "valid" else 64
    model = UNet(spec)
    seen: dict[str, tuple] = {}

    def record(module, inputs, output) -> None:
        seen.setdefault(type(module).__name__, (inputs[0], output))

    for module in model.modules():
        if type(module).__name__ in (kind, "Concat"):
            module.register_forward_hook(record)
    with torch.autocast("cpu", torch.bfloat16), torch.no_grad():
        model(torch.rand(1, spec.in_channels, size, size))
    x, out = seen[kind]
    assert x.dtype == out.dtype == seen["Concat"][1].dtype == torch.bfloat16
    size_arg = {"scale_factor": 2} if kind == "Upsample" else {"size": out.shape[-2:]}
    ref = torch.nn.functional.interpolate(x, mode="bilinear", align_corners=False, **size_arg)
    torch.testing.assert_close(out, ref, rtol=0, atol=0)


def test_inplace_relu_does_not_corrupt_pre_pool_skips() -> None:
    # enc1.relu2 feeds both the pooling and the skip: it must not be applied in place twice.
    spec = get_preset("paper-small").replace(dropout=0.0)
    model = load_canonical(UNet(spec), random_weights(spec)).eval()
    reference = load_canonical(UNet(spec), random_weights(spec)).eval()
    for module in reference.modules():
        if isinstance(module, torch.nn.ReLU):
            module.inplace = False
    x = torch.rand(1, 1, 188, 188)
    with torch.inference_mode():
        torch.testing.assert_close(model(x), reference(x), rtol=0, atol=0)


def test_training_backward_runs_with_inplace_relu() -> None:
    spec = get_preset("modern-small")
    model = UNet(spec).train()
    x = torch.rand(2, 3, 32, 32, requires_grad=True)
    model(x).square().mean().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    assert all(p.grad is not None for p in model.parameters())


@pytest.mark.kernel_free
def test_canonical_round_trip_and_errors() -> None:
    spec = get_preset("modern-small")
    weights = random_weights(spec, seed=5)
    model = load_canonical(UNet(spec), weights)
    back = canonical_state(model)
    assert all(np.array_equal(back[n], weights[n]) for n in weights)
    weights["enc1.conv1.weight"] = weights["enc1.conv1.weight"][:, :2]
    with pytest.raises(ValueError, match=r"enc1\.conv1\.weight: expected \(16, 3, 3, 3\)"):
        load_canonical(UNet(spec), weights)


@pytest.mark.kernel_free
def test_probabilities() -> None:
    logits = torch.randn(1, 3, 4, 4)
    torch.testing.assert_close(probabilities(logits, "softmax").sum(1), torch.ones(1, 4, 4))
    torch.testing.assert_close(probabilities(logits, "sigmoid"), torch.sigmoid(logits))
    assert probabilities(logits, "none") is logits


# -- activation recomputation ---------------------------------------------------------------------
@pytest.mark.parametrize("name", ["paper-small", "seed-small", "modern-small"])
def test_recompute_gives_the_same_gradients_and_statistics(name: str) -> None:
    # Recomputing levels must not change anything a training step produces: not the gradients,
    # not the dropout masks, and batch norm's running statistics must move once, not twice.
    spec = get_preset(name)
    size = 64 if spec.padding == "same" else 188
    weights = random_weights(spec)
    plain = load_canonical(UNet(spec), weights).train()
    lean = load_canonical(UNet(spec, recompute=("enc1", "enc2", "mid", "dec1")), weights).train()
    x = torch.randn(2, spec.in_channels, size, size)
    for model in (plain, lean):
        torch.manual_seed(0)
        model(x).square().mean().backward()
    grads = dict(plain.named_parameters())
    for n, p in lean.named_parameters():
        torch.testing.assert_close(p.grad, grads[n].grad, rtol=0, atol=0, msg=n)
    for (n, a), b in zip(plain.state_dict().items(), lean.state_dict().values(), strict=True):
        torch.testing.assert_close(b, a, rtol=0, atol=0, msg=n)


def test_recompute_without_grad_is_the_plain_forward() -> None:
    spec = get_preset("modern-small")
    weights = random_weights(spec)
    plain = load_canonical(UNet(spec), weights).eval()
    lean = load_canonical(UNet(spec, recompute=("enc1",)), weights).eval()
    x = torch.randn(1, 3, 32, 32)
    with torch.inference_mode():
        torch.testing.assert_close(lean(x), plain(x), rtol=0, atol=0)


@pytest.mark.kernel_free
def test_recompute_unknown_level_is_named() -> None:
    with pytest.raises(ValueError, match="recompute: unknown plan level.*enc9.*levels: enc1"):
        UNet(get_preset("modern-small"), recompute=("enc9",))


@pytest.mark.kernel_free  # slicing and its gradient, compared bit for bit
@pytest.mark.parametrize("fmt", [torch.contiguous_format, torch.channels_last])
def test_center_crop_gradient_keeps_the_memory_format(fmt: torch.memory_format) -> None:
    from unet_torch.model import CenterCrop

    x = torch.randn(2, 3, 10, 9).to(memory_format=fmt).requires_grad_()
    mid = x * 2  # not a leaf: its gradient is what autograd hands on
    seen: dict[str, torch.Tensor] = {}
    mid.register_hook(lambda g: seen.setdefault("grad", g))
    out = CenterCrop()(mid, torch.empty(1, 1, 5, 4))
    torch.testing.assert_close(out, mid[..., 2:7, 2:6], rtol=0, atol=0)
    grad = torch.randn(2, 3, 5, 4).to(memory_format=fmt)
    out.backward(grad)
    expected = torch.zeros(2, 3, 10, 9)
    expected[..., 2:7, 2:6] = grad
    torch.testing.assert_close(seen["grad"], expected, rtol=0, atol=0)
    assert seen["grad"].is_contiguous(memory_format=fmt)


def test_center_crop_traces_whole_under_torch_compile() -> None:
    # The crop is a custom autograd.Function: dynamo and AOTAutograd must take it into one graph
    # (aot_eager: the same tracing as inductor, without code generation).
    spec = get_preset("paper-small").replace(depth=2, dropout=0.0)
    model = UNet(spec).to(memory_format=torch.channels_last)
    x = torch.randn(2, 1, 92, 92, generator=torch.Generator().manual_seed(0))
    x = x.to(memory_format=torch.channels_last)
    ref = model(x)
    grad = torch.randn_like(ref)
    ref.backward(grad)
    expected = [p.grad.clone() for p in model.parameters()]
    model.zero_grad(set_to_none=True)
    out = torch.compile(model, backend="aot_eager", fullgraph=True)(x)
    out.backward(grad)
    torch.testing.assert_close(out, ref)
    for p, g in zip(model.parameters(), expected, strict=True):
        torch.testing.assert_close(p.grad, g)
