"""The framework-free tiling engine: the padding and tiling policy, stitching, blending, labels and
exactness against whole-image runs."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from unet_infer import (
    axis_weights,
    check_tile,
    default_tile,
    labels_from_probs,
    mirror_indices,
    predict_images,
    predict_tiled,
    tile_grid,
)
from unet_spec import get_preset


def _center_crop_forward(spec, tile):
    """A stand-in model with the plan's geometry: output = the input's center, K copies of channel 0.

    Stitching it must give back the image itself, pixel for pixel. Same-padding tiles may be
    narrower than ``tile`` along an axis that fits in one (they are padded to a valid size only).
    """
    layout = spec.plan()

    def forward(x):
        th, tw = x.shape[-2:]
        assert th <= tile and tw <= tile and layout.is_valid_size((th, tw))
        oh, ow = layout.layout((th, tw)).output_size
        oy, ox = (th - oh) // 2, (tw - ow) // 2
        center = x[:, :1, oy : oy + oh, ox : ox + ow]
        return np.repeat(center, spec.num_classes, axis=1) * np.arange(1, spec.num_classes + 1)[
            None, :, None, None
        ].astype(np.float32)

    return forward


@pytest.mark.parametrize(
    "preset,tile", [("paper-small", 204), ("paper-small", 252), ("modern-small", 64)]
)
@pytest.mark.parametrize("hw", [(1, 1), (5, 3), (37, 100), (129, 64), (300, 17)])
def test_stitching_puts_every_pixel_back(preset, tile, hw):
    spec = get_preset(preset)
    rng = np.random.default_rng(0)
    image = rng.normal(size=(spec.in_channels, *hw)).astype(np.float32)
    got = predict_tiled(image, _center_crop_forward(spec, tile), spec, tile=tile, batch_size=3)
    assert got.shape == (spec.num_classes, *hw)
    for k in range(spec.num_classes):
        np.testing.assert_allclose(got[k], image[0] * (k + 1), rtol=1e-6, atol=1e-6)


def test_mirror_indices_match_numpy_reflect():
    for size in (2, 3, 10):
        for pad in (0, 1, size - 1, 3 * size + 1):
            ref = np.pad(np.arange(size), pad, mode="reflect")
            np.testing.assert_array_equal(mirror_indices(-pad, size + 2 * pad, size), ref)
    np.testing.assert_array_equal(mirror_indices(-4, 9, 1), np.zeros(9))


def test_blend_weights_of_two_overlapping_tiles_sum_to_one():
    # Regular neighbours: the rising ramp of one is the complement of the falling ramp of the other.
    size, origins = 64, (0, 48, 96)
    w = axis_weights(origins, size)
    total = np.zeros(origins[-1] + size)
    for o, wt in zip(origins, w, strict=True):
        total[o : o + size] += wt
    np.testing.assert_allclose(total, 1.0)
    assert all(wt.min() > 0 and wt.max() == 1.0 for wt in w)
    # Flat where no neighbour overlaps: the image border keeps full weight.
    assert w[0][0] == 1.0 and w[-1][-1] == 1.0


def test_valid_tiles_start_on_the_pooling_grid():
    spec = get_preset("paper")
    grid = tile_grid(spec, (1000, 389), 572)
    assert grid.out == (388, 388) and grid.tile == (572, 572) and not grid.blend
    for origins in (grid.origins_y, grid.origins_x):
        assert all((o - origins[0]) % 2**spec.depth == 0 for o in origins)
        assert origins[0] == -92  # mirrored by half the halo
    # The last tile's output reaches the image's last row.
    assert grid.origins_y[-1] + grid.offset + grid.out[0] >= 1000


def _coordinate_image(spec, h, w):
    """An image whose channel 0 holds each pixel's flat index, so a tile tells where it came from."""
    index = np.arange(h * w, dtype=np.float32).reshape(h, w)
    return np.repeat(index[None], spec.in_channels, axis=0)


@pytest.mark.parametrize("overlap", [0.0, 0.25, 0.5])
@pytest.mark.parametrize("hw", [(64, 64), (65, 64), (113, 200), (180, 240), (64, 1000)])
def test_same_padding_tiles_lie_inside_an_image_at_least_a_tile_large(hw, overlap):
    spec = get_preset("modern-small")  # 16-pixel pooling cells
    tile, (h, w) = 64, hw
    grid = tile_grid(spec, hw, tile, overlap)
    assert grid.tile == (tile, tile) and grid.blend
    for n, origins in ((h, grid.origins_y), (w, grid.origins_x)):
        assert origins[0] == 0 and origins[-1] == n - tile  # flush with both edges
        assert all(0 <= o <= n - tile for o in origins)
        assert all(o % 16 == 0 for o in origins[:-1])  # on the pooling grid but the last
        gaps = np.diff(origins)
        # Neighbours overlap by at least the requested share (the step is rounded down to cells).
        assert (gaps > 0).all() and (gaps <= round(tile * (1 - overlap))).all()
    # What the model sees: every tile is a crop of the image, no mirrored or padded pixel.
    seen = []

    def forward(x):
        for t in x[:, 0]:
            y, x0 = divmod(int(t[0, 0]), w)
            np.testing.assert_array_equal(
                t, _coordinate_image(spec, h, w)[0, y : y + tile, x0 : x0 + tile]
            )
            seen.append((y, x0))
        return np.repeat(x[:, :1], spec.num_classes, axis=1)

    got = predict_tiled(_coordinate_image(spec, h, w), forward, spec, tile, overlap, batch_size=3)
    assert sorted(seen) == sorted(grid)
    np.testing.assert_allclose(got[0], _coordinate_image(spec, h, w)[0], rtol=1e-6)


@pytest.mark.parametrize("hw", [(1, 1), (5, 3), (16, 16), (17, 64), (180, 240), (240, 17)])
def test_same_padding_pads_an_image_within_a_tile_to_the_nearest_valid_size_only(hw):
    spec = get_preset("modern-small")
    plan = spec.plan()
    h, w = hw
    want = (plan.nearest_valid_size(h, "up"), plan.nearest_valid_size(w, "up"))
    grid = tile_grid(spec, hw, 256)
    assert grid.tile == want and len(grid) == 1 and (grid.origins_y, grid.origins_x) == ((0,), (0,))
    image = np.random.default_rng(0).normal(size=(3, h, w)).astype(np.float32)
    calls = []

    def forward(x):
        calls.append(x.copy())
        return x[:, :2] * 2

    got = predict_tiled(image, forward, spec, tile=256)
    # One pass over the image mirrored at its far ends only (numpy's reflect, folded when the
    # image is shorter than the pad), and the output is that pass, unblended.
    (tile_in,) = calls
    assert tile_in.shape == (1, 3, *want)
    np.testing.assert_array_equal(tile_in[0, :, :h, :w], image)
    rows, cols = mirror_indices(0, want[0], h), mirror_indices(0, want[1], w)
    np.testing.assert_array_equal(tile_in[0], image[:, rows[:, None], cols[None, :]])
    np.testing.assert_array_equal(got, image[:2] * 2)


def test_tiles_of_several_images_share_forward_passes():
    spec = get_preset("modern-small")
    rng = np.random.default_rng(4)
    images = rng.normal(size=(3, 3, 70, 100)).astype(np.float32)
    fwd = _center_crop_forward(spec, 64)
    batched = predict_images(images, fwd, spec, tile=64, batch_size=5)
    for image, got in zip(images, batched, strict=True):
        np.testing.assert_array_equal(got, predict_tiled(image, fwd, spec, tile=64))


def test_label_rule():
    probs = np.array([[[0.2, 0.5]], [[0.7, 0.5]], [[0.1, 0.0]]], np.float32)  # (3, 1, 2)
    np.testing.assert_array_equal(labels_from_probs(probs, "softmax"), [[1, 0]])  # tie: lower id
    np.testing.assert_array_equal(labels_from_probs(probs[None], "none"), [[[1, 0]]])
    one = np.array([[[0.4, 0.5, 0.6]]], np.float32)
    np.testing.assert_array_equal(labels_from_probs(one, "sigmoid"), [[0, 0, 1]])
    logit = np.array([[[-0.1, 0.0, 0.1]]], np.float32)
    np.testing.assert_array_equal(labels_from_probs(logit, "none"), [[0, 0, 1]])
    with pytest.raises(ValueError, match="head must be"):
        labels_from_probs(one, "relu")
    with pytest.raises(ValueError, match=r"\(K, H, W\)"):
        labels_from_probs(one[0], "sigmoid")


def test_invalid_tile_names_the_nearest_valid_sizes():
    spec = get_preset("paper-small")
    with pytest.raises(ValueError, match=r"tile 200 .*Nearest valid sizes: 188, 204"):
        predict_tiled(np.zeros((1, 50, 50), np.float32), lambda x: x, spec, tile=200)
    with pytest.raises(ValueError, match=r"use tile >= 204"):
        check_tile(spec, 188)  # valid input size, but a 4-pixel output cannot step on a 16 grid


def test_wrong_channel_count_and_bad_forward_are_reported():
    spec = get_preset("paper-small")
    with pytest.raises(ValueError, match="3 channel.*expects 1"):
        predict_tiled(np.zeros((3, 20, 20), np.float32), lambda x: x, spec, tile=204)
    with pytest.raises(ValueError, match="forward returned shape"):
        predict_tiled(np.zeros((1, 20, 20), np.float32), lambda x: x, spec, tile=204)


def test_default_tile_is_valid_and_shrinks_for_small_images():
    for name in ("seed", "paper", "modern", "modern-small"):
        spec = get_preset(name)
        big = default_tile(spec)
        check_tile(spec, big)
        small = default_tile(spec, (40, 30))
        check_tile(spec, small)
        assert small <= big


def test_progress_reports_every_tile():
    spec = get_preset("modern-small")
    seen = []
    predict_tiled(
        np.zeros((3, 100, 100), np.float32),
        _center_crop_forward(spec, 32),
        spec,
        tile=32,
        batch_size=4,
        progress=seen.append,
    )
    assert seen[-1] == len(tile_grid(spec, (100, 100), 32)) and seen == sorted(seen)


@pytest.mark.parametrize("transforms", ["d4", "flips", "hflip"])
def test_tta_of_an_equivariant_model_is_the_plain_prediction(transforms):
    spec = get_preset("paper-small")
    image = np.random.default_rng(1).normal(size=(1, 23, 41)).astype(np.float32)
    fwd = _center_crop_forward(spec, 204)
    got = predict_tiled(image, fwd, spec, tile=204, tta=transforms)
    np.testing.assert_allclose(got, predict_tiled(image, fwd, spec, tile=204), atol=1e-6)


def test_tiling_imports_no_framework():
    import subprocess

    code = "import sys, unet_infer.tiling; print(sorted({'torch', 'tensorflow', 'keras'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# -- real models ---------------------------------------------------------------------------------
torch = pytest.importorskip("torch")


def _torch_forward(model):
    dtype = next(model.parameters()).dtype

    @torch.inference_mode()
    def forward(x):
        return model(torch.from_numpy(x).to(dtype)).float().numpy()

    return forward


def _whole_image(model, spec, image, offset):
    """The model run once on the image mirrored into the smallest valid canvas covering it."""
    plan = spec.plan()
    _, h, w = image.shape
    size = []
    for n in (h, w):
        s = next(
            s
            for s in range(n, n + 4096)
            if plan.is_valid_size(s) and plan.layout(s).output_size[0] >= n
        )
        size.append(s)
    rows = mirror_indices(-offset, size[0], h)
    cols = mirror_indices(-offset, size[1], w)
    canvas = image[:, rows[:, None], cols[None, :]][None]
    with torch.inference_mode():
        dtype = next(model.parameters()).dtype
        out = model(torch.from_numpy(np.ascontiguousarray(canvas)).to(dtype)).float().numpy()[0]
    return out[:, :h, :w]


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("hw", [(9, 9), (53, 20), (100, 77)])
def test_valid_padding_tiles_equal_the_whole_image(hw, dtype):
    from unet_spec import random_weights
    from unet_torch import UNet, load_canonical

    spec = get_preset("paper-small").replace(dropout=0.0)
    model = (
        load_canonical(UNet(spec), random_weights(spec, seed=3)).eval().to(getattr(torch, dtype))
    )
    image = np.random.default_rng(2).normal(size=(1, *hw)).astype(np.float32)
    tile = 220  # output 36: steps of 32 pixels, 4 of them recomputed by the neighbour
    grid = tile_grid(spec, hw, tile)
    assert len(grid) > 1 or max(hw) < grid.out[0]
    tiled = predict_tiled(image, _torch_forward(model), spec, tile=tile, batch_size=2)
    whole = _whole_image(model, spec, image, grid.offset)
    if dtype == "float64":  # the same arithmetic: only the final float32 rounding remains
        assert np.abs(tiled - whole).max() <= 1e-5
    else:  # fp32 convolutions sum in a size-dependent order: float noise relative to logits ~20
        assert np.abs(tiled - whole).max() <= 1e-5 * np.abs(whole).max()


def test_same_padding_image_within_a_tile_is_the_whole_image_pass():
    from unet_spec import random_weights
    from unet_torch import UNet, load_canonical

    spec = get_preset("modern-small")
    model = load_canonical(UNet(spec), random_weights(spec, seed=4)).eval()
    image = np.random.default_rng(5).normal(size=(3, 96, 80)).astype(np.float32)
    tiled = predict_tiled(image, _torch_forward(model), spec, tile=128)
    with torch.inference_mode():
        whole = model(torch.from_numpy(image[None])).numpy()[0]
    np.testing.assert_array_equal(tiled, whole)  # the very same single pass


def test_same_padding_blend_is_close_to_the_whole_image_inside():
    from unet_spec import random_weights
    from unet_torch import UNet, load_canonical

    spec = get_preset("modern-small")
    model = load_canonical(UNet(spec), random_weights(spec, seed=4)).eval()
    image = np.random.default_rng(5).normal(size=(3, 96, 96)).astype(np.float32)
    tiled = predict_tiled(image, _torch_forward(model), spec, tile=64, overlap=0.5)
    with torch.inference_mode():
        whole = model(torch.from_numpy(image[None])).numpy()[0]
    assert tiled.shape == whole.shape and np.isfinite(tiled).all()
    # Zero padding inside each tile differs from real context, so only the argmax is compared.
    agree = (tiled.argmax(0) == whole.argmax(0)).mean()
    assert agree > 0.8


def test_one_tta_vocabulary_for_every_caller():
    from unet_infer import TTA_MODES, TTA_TRANSFORMS, tta_mode

    assert [tta_mode(c) for c in (False, None, True)] == [None, None, "d4"]
    assert [tta_mode(m) for m in TTA_MODES] == list(TTA_MODES)
    assert {m: len(TTA_TRANSFORMS[m]) for m in TTA_MODES} == {"d4": 8, "flips": 4, "hflip": 2}
    with pytest.raises(ValueError, match="one of d4, flips, hflip. Received: tta='d8'"):
        tta_mode("d8")
    spec = get_preset("modern-small")
    with pytest.raises(ValueError, match="tta='d8'"):
        predict_images(np.ones((1, 3, 32, 32), np.float32), lambda x: x, spec, tta="d8")
