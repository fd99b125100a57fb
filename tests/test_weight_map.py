"""The U-Net paper's border weight map: values, ignored pixels, crops and the loss that reads it."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from unet_data import IGNORE_INDEX
from unet_data.weight_map import border_weights
from unet_spec import get_preset
from unet_train.data import SyntheticDataModule
from unet_train.datasets import Augmentation, TrainCrops
from unet_train.losses import SegmentationLoss


def _two_squares(gap: int) -> np.ndarray:
    """Two 10x10 objects of class 1, ``gap`` background columns apart, in a 20-pixel margin."""
    mask = np.zeros((50, 60 + gap), np.int64)
    mask[20:30, 20:30] = 1
    mask[20:30, 30 + gap : 40 + gap] = 1
    return mask


def test_gap_pixels_follow_the_formula():
    w0, sigma = 10.0, 5.0
    for gap in (1, 2, 4, 8):
        w = border_weights(_two_squares(gap), w0, sigma)
        # The middle of the gap is at distance d from both objects (d = gap/2 rounded up).
        x = 30 + gap // 2
        d1, d2 = x - 29, 30 + gap - x
        expected = 1 + w0 * math.exp(-((d1 + d2) ** 2) / (2 * sigma**2))
        assert w[25, x] == pytest.approx(expected, rel=1e-5)


def test_weights_fall_with_the_gap_and_are_one_inside_objects():
    narrow, wide = border_weights(_two_squares(2)), border_weights(_two_squares(12))
    assert narrow[25, 31] > wide[25, 36] > 1.0
    assert (narrow[_two_squares(2) == 1] == 1.0).all()


def test_a_lone_object_gets_no_border_term():
    mask = np.zeros((40, 40), np.int64)
    mask[10:20, 10:20] = 1
    np.testing.assert_array_equal(border_weights(mask), np.ones((40, 40), np.float32))


def test_ignored_pixels_are_not_objects_and_objects_are_per_class():
    mask = _two_squares(2)
    ignored = mask.copy()
    ignored[20:30, 32:42] = IGNORE_INDEX  # the second object becomes unlabelled
    assert border_weights(ignored)[25, 31] == 1.0
    # Touching objects of two different classes are two objects.
    two_classes = np.zeros((30, 30), np.int64)
    two_classes[10:20, 5:15], two_classes[10:20, 16:26] = 1, 2
    assert border_weights(two_classes)[15, 15] > 9.0


def test_distance_cutoff_drops_only_negligible_terms():
    # Objects 30 px apart (> 4 sigma): the exact term is 10·exp(-18) ≈ 2e-7; the map gives 0.
    w = border_weights(_two_squares(30), 10.0, 5.0)
    assert np.abs(w - 1.0).max() < 1e-3


def test_bad_settings_are_named():
    with pytest.raises(ValueError, match="w0 >= 0 and sigma > 0"):
        border_weights(np.zeros((4, 4), np.int64), sigma=0.0)
    with pytest.raises(ValueError, match=r"\(H, W\) mask"):
        border_weights(np.zeros((1, 4, 4), np.int64))
    with pytest.raises(ValueError, match="data.border_weight"):
        SyntheticDataModule(border_weight=-1.0)


def test_crops_carry_the_map_aligned_with_the_target():
    spec = get_preset("paper-small").replace(depth=2)
    layout = spec.plan().check_size(52)
    mask = np.zeros((60, 60), np.int64)
    mask[10:25, 10:25] = mask[10:25, 27:45] = mask[30:50, 10:50] = 1
    weights = border_weights(mask)
    # The image carries the weight map, so the crop's center must equal the weight crop.
    sample = ("x", weights[None].astype(np.float32), mask)
    augment = Augmentation(elastic=0.0, jitter=0.0).build(1)
    crops = TrainCrops([sample], layout.input_size, layout.output_size, 12, augment, 0.0, [weights])
    (ih, _), (oh, _) = layout.input_size, layout.output_size
    top = (ih - oh) // 2
    torch.manual_seed(0)
    for i in range(12):
        image, target, w = crops[i]
        assert w.dtype == torch.float32 and w.shape == target.shape == (oh, oh)
        torch.testing.assert_close(image[0, top : top + oh, top : top + oh], w)
        assert (w[target == 1] == 1.0).all()


@pytest.mark.parametrize("name", ["ce", "bce", "ce_dice"])
def test_uniform_pixel_weights_change_nothing(name):
    g = torch.Generator().manual_seed(0)
    logits, target = (
        torch.randn(2, 3, 8, 8, generator=g),
        torch.randint(0, 3, (2, 8, 8), generator=g),
    )
    target[0, 0] = IGNORE_INDEX
    loss = SegmentationLoss(name, class_weights=[1.0, 2.0, 0.5])
    torch.testing.assert_close(
        loss(logits, target, torch.full((2, 8, 8), 4.0)), loss(logits, target)
    )


def test_pixel_weights_weight_the_cross_entropy_mean():
    g = torch.Generator().manual_seed(1)
    logits, target = (
        torch.randn(1, 2, 4, 4, generator=g),
        torch.randint(0, 2, (1, 4, 4), generator=g),
    )
    pw = torch.rand(1, 4, 4, generator=g) + 0.5
    per_pixel = torch.nn.functional.cross_entropy(logits, target, reduction="none")
    expected = (per_pixel * pw).sum() / pw.sum()
    torch.testing.assert_close(SegmentationLoss("ce")(logits, target, pw), expected)
    with pytest.raises(ValueError, match="pixel_weights has shape"):
        SegmentationLoss("ce")(logits, target, pw[:, :2])


def test_training_with_border_weights(tmp_path):
    import lightning as L

    from unet_train.system import SegmentationSystem

    data = SyntheticDataModule(
        num_train=4, num_val=2, image_size=32, num_classes=3, crop_size=32, batch_size=2,
        border_weight=10.0,
    )  # fmt: skip
    system = SegmentationSystem(preset="modern-small", spec={"depth": 2}, num_classes=3)
    trainer = L.Trainer(
        default_root_dir=tmp_path, accelerator="cpu", fast_dev_run=True, logger=False,
        enable_progress_bar=False, enable_model_summary=False,
    )  # fmt: skip
    trainer.fit(system, datamodule=data)
    maps = data.border_maps()
    assert maps is not None and len(maps) == 4 and max(float(m.max()) for m in maps) > 2.0
    assert trainer.global_step == 1
