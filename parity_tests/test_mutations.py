"""The parity check is strict where it matters: each real porting defect, planted in the Keras twin,
fails it at every preset it applies to, and the report names the block where the defect enters.
Each preset is met as its architecture at a width the suite can afford
(``parity_tests.conftest.ARCHITECTURES``): the defects sit in layers and wiring, not in widths.

The defects are the ones a port between the two frameworks actually meets:

- a kernel transposed the wrong way (kh and kw swapped: ``transpose(3, 2, 1, 0)``);
- a dropped bias (a convolution built without its bias, or the bias not copied);
- the decoder's concatenation in the other order (``[skip, upsampled]``);
- batch norm with the other framework's default epsilon (Keras 1e-3 against PyTorch's 1e-5);
- batch-norm momentum in the other convention (Keras' ``momentum`` is ``1 −`` PyTorch's): only
  visible in training mode, so it is checked on the running statistics of one training step;
- a center crop one pixel off;
- a bilinear resize with the align-corners rule instead of half-pixel centres, and the reverse
  (milesial's aligned-corners upsampling built as Keras' half-pixel ``UpSampling2D``);
- nearest ×2 upsampling built as bilinear (zhixuhao/unet's up step);
- the upsampled map padded with the other fill (MONAI replicates the edge, milesial pads zeros).
  Where the pad goes cannot be planted: floor pooling leaves the upsampled map at most one row
  short, and one row goes after the map under both of the spec's alignments;
- the up step's own norm left out (``Upsample`` → conv → ``BatchNorm2d`` → ReLU read as a plain
  up step, its norm's tensors not copied).

The Keras builder and adapter are patched for the duration of one test only.

Every defect sits in the Keras twin; the PyTorch side of :func:`unet_bridge.run_parity` (its fp32
taps and the float64 reference that measures their noise) is a function of the spec, the weights
and the input alone, which all defects of one architecture share. The ``torch_runs`` fixture
keeps those runs for the module, keyed by exactly those inputs, and hands them back to
``run_parity`` in place of a recomputation: the runner itself (the Keras build with the defect,
the per-block comparison, the verdict and the first failing block) runs whole in every test.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable

import numpy as np
import pytest

from parity_tests.conftest import ARCHITECTURES
from unet_bridge import (
    import_frameworks,
    keras_model,
    parity,
    random_input,
    run_parity,
    torch_model,
)
from unet_spec import NoiseTolerance, check_against_noise, random_weights

import_frameworks()

# isort: off
import keras  # noqa: E402
import tensorflow as tf  # noqa: E402
import torch  # noqa: E402
# isort: on

import unet_keras  # noqa: E402
import unet_keras.adapters as adapters  # noqa: E402
import unet_keras.builder as builder  # noqa: E402


def _size(name: str) -> int:
    """The smallest valid size with a few output pixels: full-width presets stay quick."""
    spec = ARCHITECTURES[name]
    return spec.plan().nearest_valid_size(4 * 2**spec.depth, direction="up")


def _presets(kind: str) -> list[str]:
    """Presets whose plan has a block of ``kind``."""
    return sorted(
        n for n, s in ARCHITECTURES.items() if any(b.kind == kind for b in s.plan().blocks)
    )


def _first_block(name: str, kind: str) -> str:
    return next(b.name for b in ARCHITECTURES[name].plan().blocks if b.kind == kind)


def _first_rescaling(name: str) -> str:
    """The first resize or upsample block that changes the size (a resize to the same size is the
    identity under every rule)."""
    layout = ARCHITECTURES[name].plan().layout(_size(name))
    for info in layout:
        block = info.block
        if block.kind in ("resize", "upsample"):
            if info.shape[1:] != layout[block.inputs[0]].shape[1:]:
                return block.name
    raise AssertionError(f"{name}: no block changes size")


# -- the PyTorch side, once per architecture ---------------------------------------------------------
def _key(spec, weights, xs, names, float64: bool, device: str) -> tuple:
    digest = hashlib.sha1()
    for name in sorted(weights):
        digest.update(name.encode())
        digest.update(np.ascontiguousarray(weights[name]).tobytes())
    for x in xs:
        digest.update(repr(x.shape).encode())
        digest.update(np.ascontiguousarray(x).tobytes())
    return spec.to_json(), digest.hexdigest(), tuple(names), float64, device


@pytest.fixture(scope="module")
def _torch_memo() -> dict:
    return {}


@pytest.fixture
def torch_runs(_torch_memo: dict, monkeypatch) -> None:
    """``run_parity``'s PyTorch taps (fp32 and the float64 reference), computed once per spec,
    weights, input and blocks in this module; the arrays are read-only, so no test can change
    what the next one gets."""
    compute: Callable = parity.twin_taps

    def twin_taps(spec, weights, xs, names, *, float64=False, device="cpu"):
        key = _key(spec, weights, xs, names, float64, device)
        if key not in _torch_memo:
            taps = compute(spec, weights, xs, names, float64=float64, device=device)
            for tap in taps:
                for array in tap.values():
                    array.setflags(write=False)
            _torch_memo[key] = taps
        return _torch_memo[key]

    def reference_taps(spec, weights, x, names):
        return twin_taps(spec, weights, [x], names, float64=True)[0]

    monkeypatch.setattr(parity, "twin_taps", twin_taps)
    monkeypatch.setattr(parity, "reference_taps", reference_taps)


# -- the defects ------------------------------------------------------------------------------------
def _transposed_kernel(monkeypatch) -> None:
    monkeypatch.setattr(
        adapters, "_to_keras_kernel", lambda w: np.ascontiguousarray(np.transpose(w, (3, 2, 1, 0)))
    )


def _dropped_block(spec) -> str:
    """The block whose bias is dropped: the last decoder level's first conv, or the head where the
    3×3 convs have no bias (milesial) or instance norm cancels it (MONAI: the norm subtracts each
    channel's mean, bias included, so dropping it changes nothing downstream)."""
    return "dec1.conv1" if spec.conv_bias and spec.norm != "instance" else "head"


def _dropped(name: str) -> str:
    return _dropped_block(ARCHITECTURES[name])


def _dropped_bias(monkeypatch) -> None:
    load = adapters.from_canonical

    def without_bias(model, weights, spec):
        # The adapter copies the kernel and leaves the layer's bias at its initial zeros.
        block = _dropped_block(spec)
        weights = dict(weights)
        weights[f"{block}.bias"] = np.zeros_like(weights[f"{block}.bias"])
        return load(model, weights, spec)

    monkeypatch.setattr(unet_keras, "from_canonical", without_bias)


class _SwappedConcat(keras.layers.Concatenate):
    def call(self, inputs):
        return super().call(list(reversed(inputs)))


def _swapped_concat(monkeypatch) -> None:
    monkeypatch.setattr(builder.layers, "Concatenate", _SwappedConcat)


def _bn_epsilon(monkeypatch) -> None:
    original = builder.layers.BatchNormalization

    def keras_default_epsilon(*, epsilon: float, **kwargs):
        return original(epsilon=1e-3 if epsilon != 1e-3 else 1e-5, **kwargs)

    monkeypatch.setattr(builder.layers, "BatchNormalization", keras_default_epsilon)


def _crop_off_by_one(monkeypatch) -> None:
    original = builder.layers.Cropping2D

    def shifted(cropping, **kwargs):
        (top, bottom), horizontal = cropping
        vertical = (top + 1, bottom - 1) if bottom > 0 else (top - 1, bottom + 1)
        return original((vertical, horizontal), **kwargs)

    monkeypatch.setattr(builder.layers, "Cropping2D", shifted)


class _AlignCornersResize(keras.layers.Layer):
    """Bilinear resizing with the align-corners rule (TF1's default), not half-pixel centres."""

    def __init__(self, height: int, width: int, **kwargs) -> None:
        kwargs.pop("interpolation", None)
        super().__init__(**kwargs)
        self.size = (height, width)

    def call(self, x):
        return tf.compat.v1.image.resize_bilinear(x, self.size, align_corners=True)

    def compute_output_shape(self, shape):
        return (shape[0], *self.size, shape[3])


class _AlignCornersUpsample(keras.layers.Layer):
    def __init__(self, size, **kwargs) -> None:
        kwargs.pop("interpolation", None)
        super().__init__(**kwargs)
        self.factor = tuple(size) if isinstance(size, (tuple, list)) else (size, size)

    def call(self, x):
        h, w = x.shape[1] * self.factor[0], x.shape[2] * self.factor[1]
        return tf.compat.v1.image.resize_bilinear(x, (h, w), align_corners=True)

    def compute_output_shape(self, shape):
        return (shape[0], shape[1] * self.factor[0], shape[2] * self.factor[1], shape[3])


def _resize_rule(monkeypatch) -> None:
    monkeypatch.setattr(builder.layers, "Resizing", _AlignCornersResize)
    monkeypatch.setattr(builder.layers, "UpSampling2D", _AlignCornersUpsample)


def _half_pixel_for_aligned(monkeypatch) -> None:
    def half_pixel(factor: int, **kwargs):
        return keras.layers.UpSampling2D(size=factor, interpolation="bilinear", **kwargs)

    monkeypatch.setattr(builder, "AlignedBilinearUpsampling", half_pixel)


def _bilinear_for_nearest(monkeypatch) -> None:
    original = builder.layers.UpSampling2D

    def bilinear(*, size, interpolation, **kwargs):
        return original(size=size, interpolation="bilinear", **kwargs)

    monkeypatch.setattr(builder.layers, "UpSampling2D", bilinear)


class _SkippedNorm(keras.layers.Layer):
    """A norm left out: the map passes unchanged, and the tensors meant for it go nowhere."""

    def call(self, x):
        return x

    def set_weights(self, weights) -> None:
        pass


def _is_up_norm(block) -> bool:
    return block.name.split(".")[-1] in ("upbn", "upnorm")


def _skipped_up_norm(monkeypatch) -> None:
    original = builder._make_layer

    def without_up_norm(block, spec, *args):
        if _is_up_norm(block):
            return _SkippedNorm(name=block.keras_name)
        return original(block, spec, *args)

    monkeypatch.setattr(builder, "_make_layer", without_up_norm)


def _up_norm_presets() -> list[str]:
    return sorted(
        n for n, s in ARCHITECTURES.items() if any(_is_up_norm(b) for b in s.plan().blocks)
    )


def _first_up_norm(name: str) -> str:
    return next(b.name for b in ARCHITECTURES[name].plan().blocks if _is_up_norm(b))


def _upsample_presets(**fields) -> list[str]:
    return sorted(
        n for n, s in ARCHITECTURES.items()
        if any(b.kind == "upsample" and all(getattr(b, k) == v for k, v in fields.items())
               for b in s.plan().blocks)
    )  # fmt: skip


MUTATIONS = {
    # defect: (plant it, presets it applies to, the block where it must be found first)
    "transposed-kernel": (
        _transposed_kernel,
        sorted(ARCHITECTURES),
        lambda n: _first_block(n, "conv"),
    ),
    "dropped-bias": (_dropped_bias, sorted(ARCHITECTURES), _dropped),
    "swapped-concat": (_swapped_concat, _presets("concat"), lambda n: _first_block(n, "concat")),
    "bn-epsilon": (_bn_epsilon, _presets("batchnorm"), lambda n: _first_block(n, "batchnorm")),
    "crop-off-by-one": (_crop_off_by_one, _presets("crop"), lambda n: _first_block(n, "crop")),
    "resize-rule": (
        _resize_rule,
        # Upsampling that aligns corners is built by its own layer, which the next defect replaces.
        sorted(set(_presets("resize")) | set(_upsample_presets(align_corners=False))),
        lambda n: _first_rescaling(n),
    ),
    "half-pixel-for-aligned": (
        _half_pixel_for_aligned,
        _upsample_presets(align_corners=True),
        lambda n: _first_block(n, "upsample"),
    ),
    "bilinear-for-nearest": (
        _bilinear_for_nearest,
        _upsample_presets(mode="nearest"),
        lambda n: _first_block(n, "upsample"),
    ),
    "skipped-up-norm": (_skipped_up_norm, _up_norm_presets(), _first_up_norm),
}
CASES = [(m, p) for m, (_, presets, _) in MUTATIONS.items() for p in presets]


def test_every_preset_meets_the_defects_that_apply_to_it() -> None:
    covered = {p for _, p in CASES}
    assert covered == set(ARCHITECTURES)
    planted = {m for m, _ in CASES}
    assert {"crop-off-by-one", "resize-rule", "bn-epsilon", "swapped-concat"} <= planted
    assert {"half-pixel-for-aligned", "bilinear-for-nearest", "skipped-up-norm"} <= planted


@pytest.mark.parametrize(("mutation", "preset"), CASES, ids=[f"{m}-{p}" for m, p in CASES])
@pytest.mark.usefixtures("torch_runs")
def test_a_planted_defect_fails_parity(mutation: str, preset: str, monkeypatch) -> None:
    plant, _, where = MUTATIONS[mutation]
    spec = ARCHITECTURES[preset]
    weights = random_weights(spec, seed=6)
    x = random_input(spec, _size(preset), batch=1, seed=6)
    plant(monkeypatch)
    report = run_parity(spec, weights, x)
    assert not report.passed
    assert report.first_failure == where(preset), report.first_failure
    assert not report.logits.passed, report.logits


@pytest.mark.parametrize("preset", _presets("batchnorm"))
def test_batch_norm_momentum_in_the_other_convention_fails(preset: str) -> None:
    """One training-mode forward pass: the running statistics must follow the spec's momentum."""
    spec = ARCHITECTURES[preset]
    weights = random_weights(spec, seed=6)
    x = random_input(spec, _size(preset), batch=2, seed=6)
    bn = _first_block(preset, "batchnorm")

    def torch_stats(dtype: torch.dtype) -> np.ndarray:
        model = torch_model(spec, weights).to(dtype).train()
        with torch.no_grad():
            model(torch.from_numpy(x).to(dtype))
        return model.get_submodule(bn).running_mean.numpy()

    ref, ref64 = torch_stats(torch.float32), torch_stats(torch.float64)

    # One Keras build for both conventions: the weights (moving statistics included) are loaded
    # again before each step, so each starts from the state a fresh build would have.
    model = keras_model(spec, weights, _size(preset))
    layer = model.get_layer(bn.replace(".", "_"))

    def keras_stats(momentum: float) -> np.ndarray:
        unet_keras.from_canonical(model, weights, spec)
        layer.momentum = momentum
        model(adapters.to_nhwc(x), training=True)
        return np.array(layer.moving_mean)  # a copy: the next step writes the variable again

    right = check_against_noise(keras_stats(1.0 - spec.bn_momentum), ref, ref64, NoiseTolerance())
    wrong = check_against_noise(keras_stats(spec.bn_momentum), ref, ref64, NoiseTolerance())
    assert right.passed, right
    assert not wrong.passed, wrong


def _flipped_pad(monkeypatch) -> None:
    original = builder.PadTo

    def other_fill(mode: str, align: str, **kwargs):
        return original("replicate" if mode == "zeros" else "zeros", align, **kwargs)

    monkeypatch.setattr(builder, "PadTo", other_fill)


PADDED = sorted(n for n, s in ARCHITECTURES.items() if s.skip_merge == "pad")


@pytest.mark.parametrize("preset", PADDED)
@pytest.mark.usefixtures("torch_runs")
def test_padding_with_the_other_fill_fails(preset: str, monkeypatch) -> None:
    """At a size whose poolings floor (so the upsampled maps come out short), padding with the
    other fill than the spec says is caught at the first padded block."""
    spec = ARCHITECTURES[preset]
    size = _size(preset) + 2 ** (spec.depth - 1) + 3  # odd at two levels or more
    layout = spec.plan().check_size(size)
    padded = [i.block.name for i in layout if i.block.kind == "pad" and any(i.crop)]
    assert len(padded) >= 2, padded
    weights = random_weights(spec, seed=6)
    x = random_input(spec, size, batch=1, seed=6)
    assert run_parity(spec, weights, x).passed
    _flipped_pad(monkeypatch)
    report = run_parity(spec, weights, x)
    assert not report.passed
    assert report.first_failure == padded[0], report.first_failure
