"""Forward parity: the same canonical weights give the same function in Keras and PyTorch.

Every check is noise-aware (:func:`unet_spec.check_against_noise`): the PyTorch twin also runs in
float64, its fp32 distance from that run is the noise floor of this machine, model and input, and
the Keras logits and final outputs must stay within ``NoiseTolerance.margin`` times it, with no
label flip at a pixel whose float64 margin is clear.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import unet_keras
from parity_tests.conftest import ARCHITECTURES, make_twins, narrow, small_sibling
from parity_tests.test_layers import SMALL as PER_BLOCK
from unet_bridge.parity import check_outputs
from unet_spec import DEFAULT_SIZES, PRESETS, UNetSpec, check_against_noise, label_rule
from unet_torch import UNet, canonical_state, load_canonical, probabilities

SMALL = sorted(n for n in PRESETS if PRESETS[n].base_filters <= 16)


def _smallest_size(spec: UNetSpec) -> int:
    return spec.plan().valid_sizes(1, 1024)[0]


def _folded_keras(spec: UNetSpec, size, weights) -> tuple[object, dict]:
    """The Keras twin with the head folded into its last convolution (as ``unet_model``, the Keras
    predictor and the ``.h5`` writer build it), and what that convolution computes before its
    activation, kept on each call (the logits: the layer runs its convolution and bias, then
    hands the result to its activation, which is wrapped here and still applied)."""
    model = unet_keras.build_unet(spec, size, head_activation=True, kernel_initializer="zeros")
    model = unet_keras.from_canonical(model, weights, spec)
    layer = model.get_layer(spec.plan().output.keras_name)
    activation, seen = layer.activation, {}

    def keep(z):
        seen["logits"] = z
        return activation(z)

    layer.activation = keep
    return model, seen


def _check_forward(spec: UNetSpec, size, batch: int = 1, seed: int = 0, logits_model: bool = True):
    """Keras against PyTorch on the logits and on the final output.

    The logits come from the bridge's Keras twin (logits out, what ``unet parity`` and the ports
    build); the final output from the twin with the head folded in (:func:`_folded_keras`). With
    ``logits_model=False`` the first is not built and the logits are the folded model's own,
    before its activation: the same layers and weights, the last convolution with its activation
    (for where another test already judges the logits model at this architecture and size).
    """
    twins = make_twins(spec, size, seed=seed, keras=logits_model)
    x = twins.inputs(batch, seed)
    folded, seen = _folded_keras(spec, twins.size, twins.weights)
    probs_k = unet_keras.to_nchw(np.asarray(folded(unet_keras.to_nhwc(x), training=False)))
    logits_k = (
        twins.keras_logits(x) if logits_model else unet_keras.to_nchw(np.asarray(seen["logits"]))
    )
    logits_t, logits_64 = twins.torch_logits(x), twins.reference_logits(x)
    assert logits_t.shape[1:] == spec.plan().layout(size).output_shape
    result, _ = check_outputs(spec, logits_k, logits_t, logits_64)
    assert result.passed, f"{spec.to_json()} @ {size}: logits {result}"
    # The final output: the head activation, applied in torch and folded into the Keras model.
    probs_t = probabilities(torch.from_numpy(logits_t), spec.head).numpy()
    probs_64 = probabilities(torch.from_numpy(logits_64), spec.head).numpy()
    labels = label_rule(spec, probabilities=spec.head != "none")
    final = check_against_noise(probs_k, probs_t, probs_64, labels=labels)
    assert final.passed, f"{spec.to_json()} @ {size}: outputs {final}"
    return result


@pytest.mark.parametrize("name", SMALL)
def test_small_presets(name: str, record_property) -> None:
    """Each small preset at its default size, two images a batch. Where ``test_layers`` runs
    :func:`unet_bridge.run_parity` on the same preset, size and batch (which judges the logits
    model block by block, its logits and its output), the logits model is not built again here:
    the logits are the folded model's (see :func:`_check_forward`)."""
    logits_model = name not in PER_BLOCK
    result = _check_forward(PRESETS[name], DEFAULT_SIZES[name], batch=2, logits_model=logits_model)
    record_property("parity", str(result))


def _wiring(spec: UNetSpec) -> list:
    """The plan without channel counts and dropout rates (evaluation leaves dropout out)."""
    return [
        dataclasses.replace(b, in_channels=0, out_channels=0, rate=0.0) for b in spec.plan().blocks
    ]


def test_every_preset_has_its_architecture_checked() -> None:
    """Each preset's blocks and wiring are checked here: as the preset itself, its small
    sibling, or the preset narrowed (parity_tests.conftest.ARCHITECTURES)."""
    for name, spec in PRESETS.items():
        if name in ARCHITECTURES:
            assert ARCHITECTURES[name] == spec
            continue
        sibling = small_sibling(name)
        checked = ARCHITECTURES[sibling] if sibling else ARCHITECTURES[f"{name}/8"]
        assert checked == (PRESETS[sibling] if sibling else narrow(spec))
        assert _wiring(checked) == _wiring(spec), name


@pytest.mark.parametrize("name", sorted(ARCHITECTURES))
def test_every_architecture_at_its_smallest_size(name: str, record_property) -> None:
    """Each architecture at its smallest valid size, where a same-padding spec's bottleneck is one
    pixel: the full-width presets narrowed, the small presets as they are (their default size is
    checked above)."""
    spec = ARCHITECTURES[name]
    record_property("parity", str(_check_forward(spec, _smallest_size(spec))))


@pytest.mark.slow
def test_full_seed_model_at_572(record_property) -> None:
    """The seed model as ``unet_model`` builds it (head folded in), at full width and size: its
    logits (read before the folded activation) and its output against PyTorch. The logits model
    is not built at this size: it differs from this one only in that last convolution's
    activation, and ``test_layers`` judges it block by block on the same architecture
    (``seed-small``, the seed's layers and wiring at width 16)."""
    result = _check_forward(PRESETS["seed"], 572, logits_model=False)
    record_property("parity", str(result))
    assert result.decisive > 0.9 * result.shape[0] * 388 * 388  # the label check saw the image


def _checked_size(name: str) -> int:
    return DEFAULT_SIZES[name] if name in SMALL else _smallest_size(ARCHITECTURES[name])


@pytest.fixture(scope="module")
def keras_builds() -> dict:
    """``build_unet(spec, size)`` per architecture, built once for the two tests below. The block
    shapes test reads only the layers' static output shapes and changes nothing, and loading
    weights (the round trip) changes no shape: each test sees what a build of its own would
    give it."""
    return {}


def _keras_build(builds: dict, name: str):
    if name not in builds:
        builds[name] = unet_keras.build_unet(ARCHITECTURES[name], _checked_size(name))
    return builds[name]


@pytest.mark.parametrize("name", sorted(ARCHITECTURES))
def test_block_shapes_match_the_plan_in_both_frameworks(name: str, keras_builds: dict) -> None:
    spec = ARCHITECTURES[name]
    size = _checked_size(name)
    layout = spec.plan().layout(size)
    keras_model = _keras_build(keras_builds, name)
    torch_model = UNet(spec).eval()
    seen: dict[str, tuple[int, ...]] = {}
    for block in spec.plan().blocks[1:]:
        torch_model.get_submodule(block.name).register_forward_hook(
            lambda _m, _i, out, n=block.name: seen.__setitem__(n, tuple(out.shape[1:]))
        )
    with torch.inference_mode():
        torch_model(torch.zeros(1, spec.in_channels, size, size))
    for info in layout:
        c, h, w = info.shape
        assert tuple(keras_model.get_layer(info.block.keras_name).output.shape) == (None, h, w, c)
        if info.block.kind != "input":
            assert seen[info.block.name] == info.shape, info.block.name


@pytest.mark.parametrize("name", sorted(ARCHITECTURES))
def test_round_trip_is_bit_exact(name: str, keras_builds: dict) -> None:
    spec = ARCHITECTURES[name]
    source = UNet(spec)  # PyTorch's own initialisation
    canonical = canonical_state(source)
    keras_model = unet_keras.from_canonical(_keras_build(keras_builds, name), canonical, spec)
    back = load_canonical(UNet(spec), unet_keras.to_canonical(keras_model, spec))
    for name_, tensor in source.state_dict().items():
        if name_.endswith("num_batches_tracked"):
            continue
        assert torch.equal(tensor, back.state_dict()[name_]), name_


# The up step's norm beyond attention-plain-small's (nearest ×2, conv → batch norm → ReLU).
UP_NORM_VARIANTS = {
    "instance-after-the-activation": dict(
        norm="instance", act_before_norm=True, upsample="bilinear", up_conv_kernel=1
    ),
    "batch-alone-after-a-transposed-conv": dict(
        upsample="transpose", up_conv_kernel=1, up_activation=False, bn_epsilon=1e-3
    ),
}


@pytest.mark.parametrize("variant", sorted(UP_NORM_VARIANTS))
def test_up_step_norm_variants(variant: str) -> None:
    spec = PRESETS["attention-plain-small"].replace(
        depth=2, base_filters=4, **UP_NORM_VARIANTS[variant]
    )
    _check_forward(spec, 32, batch=2)


def _takes(spec: UNetSpec, size: int) -> bool:
    try:
        spec.plan().check_size(size)
    except ValueError:
        return False
    return True


@st.composite
def specs_and_sizes(draw):
    """A random member of the U-Net family the spec covers, and a size it takes."""
    padding = draw(st.sampled_from(["valid", "same"]))
    skip_source = draw(st.sampled_from(["pooled", "pre_pool"]))
    if skip_source == "pooled":
        merge = "resize"
    else:
        same_only = ["none", "pad"] if padding == "same" else []
        merge = draw(st.sampled_from(["resize", "crop", *same_only]))
    depth = draw(st.integers(1, 5))
    num_classes = draw(st.integers(1, 6))
    heads = ["sigmoid", "softmax", "none"] if num_classes > 1 else ["sigmoid", "none"]
    upsample = draw(st.sampled_from(["transpose", "bilinear", "nearest"]))
    up_conv_kernel = 1 if upsample == "transpose" else draw(st.sampled_from([0, 1, 2]))
    has_up_conv = upsample == "transpose" or up_conv_kernel > 0
    base = draw(st.sampled_from([2, 3, 4, 8] if depth < 5 else [2, 3, 4]))
    explicit = draw(st.booleans())  # an explicit channel plan instead of doubling
    widths = tuple(draw(st.integers(1, 8)) for _ in range(depth + 1)) if explicit else ()
    decoder = tuple(draw(st.integers(1, 8)) for _ in range(depth)) if explicit else ()
    middle = tuple(draw(st.integers(1, 8)) for _ in range(depth)) if explicit else ()
    ups = tuple(draw(st.integers(1, 8)) for _ in range(depth)) if explicit and has_up_conv else ()
    sites = [f"enc{k}" for k in range(1, depth + 1)] + ["bottom", "mid", f"dec{depth}"]
    norm = draw(st.sampled_from(["none", "batch", "instance"]))
    spec = UNetSpec(
        in_channels=draw(st.integers(1, 4)),
        num_classes=num_classes,
        depth=depth,
        base_filters=base,
        padding=padding,
        skip_source=skip_source,
        skip_merge=merge,
        pad_mode=draw(st.sampled_from(["zeros", "replicate"])),
        pad_align=draw(st.sampled_from(["center", "end"])),
        concat_order=draw(st.sampled_from(["up_skip", "skip_up"])),
        upsample=upsample,
        align_corners=upsample == "bilinear" and draw(st.booleans()),
        up_conv_kernel=up_conv_kernel,
        up_activation=has_up_conv and draw(st.booleans()),
        up_norm=has_up_conv and norm != "none" and draw(st.booleans()),
        widths=widths,
        decoder_widths=decoder,
        decoder_mid_widths=middle,
        up_widths=ups,
        conv_bias=draw(st.booleans()),
        activation=draw(st.sampled_from(["relu", "leaky_relu"])),
        negative_slope=draw(st.sampled_from([0.01, 0.1, 0.3])),
        norm=norm,
        act_before_norm=draw(st.booleans()),
        bn_epsilon=draw(st.sampled_from([1e-5, 1e-3])),
        bn_momentum=draw(st.sampled_from([0.1, 0.01])),
        dropout=draw(st.sampled_from([0.0, 0.3])),
        dropout_at=tuple(draw(st.sets(st.sampled_from(sites), max_size=2))),
        head_convs=tuple(draw(st.lists(st.integers(1, 4), max_size=2))),
        head=draw(st.sampled_from(heads)),
    )
    sizes = spec.plan().valid_sizes(1, 600)[:4]
    if merge == "pad":  # odd sizes work too: add the odd neighbours of the valid ones
        sizes += [n + 1 for n in sizes[:2] if _takes(spec, n + 1)]
    h = draw(st.sampled_from(sizes))
    w = draw(st.sampled_from(sizes))
    return spec, (h, w)


@given(specs_and_sizes(), st.integers(0, 2**16))  # as many as the profile (conftest.py) says
def test_random_specs(spec_and_size, seed: int) -> None:
    """One Keras build per spec, the folded one: its logits are read before the head's activation
    (:func:`_folded_keras`). The logits model differs only in that activation, and every
    architecture's logits model is judged above."""
    spec, size = spec_and_size
    _check_forward(spec, size, seed=seed, logits_model=False)


def test_seed_default_size_with_odd_poolings() -> None:
    # unet_model's default 256² makes two poolings see odd sizes (floored in both frameworks).
    spec = PRESETS["seed-small"]
    assert spec.plan().layout(256).odd_pool_inputs()
    _check_forward(spec, 256)
