"""The embedded synthetic dataset: deterministic, varied, and every class represented."""

from __future__ import annotations

import numpy as np
import pytest

from unet_data.synthetic import CLASS_NAMES, make_dataset, make_sample


def test_same_seed_same_sample_and_different_seed_differs():
    a_img, a_mask = make_sample(3, size=48, seed=7)
    b_img, b_mask = make_sample(3, size=48, seed=7)
    c_img, _ = make_sample(3, size=48, seed=8)
    np.testing.assert_array_equal(a_img, b_img)
    np.testing.assert_array_equal(a_mask, b_mask)
    assert not np.array_equal(a_img, c_img)


@pytest.mark.parametrize("channels", [1, 3])
def test_shapes_types_and_range(channels):
    image, mask = make_sample(0, size=(40, 56), in_channels=channels)
    assert image.shape == (channels, 40, 56) and image.dtype == np.float32
    assert mask.shape == (40, 56) and mask.dtype == np.int64
    assert 0.0 <= image.min() and image.max() <= 1.0


def test_all_classes_appear_and_images_are_noisy():
    images, masks = make_dataset(24, size=64, num_classes=len(CLASS_NAMES))
    assert set(np.unique(masks)) == set(range(len(CLASS_NAMES)))
    # Non-trivial: one intensity threshold cannot separate foreground from background.
    fg = masks > 0
    lo, hi = images[:, 0][fg].mean(), images[:, 0][~fg].mean()
    assert abs(lo - hi) < 0.1
    assert images.std() > 0.1


def test_fewer_classes_limits_labels():
    _, masks = make_dataset(10, size=48, num_classes=2)
    assert set(np.unique(masks)) <= {0, 1}


@pytest.mark.parametrize("bad", [1, len(CLASS_NAMES) + 1])
def test_bad_class_count_is_named(bad):
    with pytest.raises(ValueError, match="num_classes"):
        make_sample(0, num_classes=bad)


def test_shapes_are_separated_by_background():
    # Shapes never overlap or touch: any two 4-neighbours of different classes include background.
    _, masks = make_dataset(24, size=64, num_classes=len(CLASS_NAMES))
    for a, b in ((masks[:, 1:, :], masks[:, :-1, :]), (masks[:, :, 1:], masks[:, :, :-1])):
        touching = (a != b) & (a > 0) & (b > 0)
        assert not touching.any()


def test_shape_textures_stand_out_from_the_noise():
    # Inside striped rectangles the texture, not the noise, makes most of the spread of values:
    # the same images generated without noise keep most of it.
    ratios = []
    for index in range(8):
        noisy, mask = make_sample(index, size=96, seed=1)
        clean, _ = make_sample(index, size=96, seed=1, noise=0.0)
        inside = mask == CLASS_NAMES.index("rectangle")
        if inside.sum() > 50:
            ratios.append(clean[0][inside].std() / noisy[0][inside].std())
    assert len(ratios) >= 3
    assert np.median(ratios) > 0.75
