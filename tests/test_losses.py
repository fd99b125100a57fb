"""Losses: agreement with PyTorch references, ignore index, class weights, edge cases."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from unet_data import IGNORE_INDEX
from unet_train.losses import LOSSES, SegmentationLoss, binary_cross_entropy, soft_dice


def _batch(k: int = 3, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(2, k, 8, 8, generator=g)
    target = torch.randint(0, k, (2, 8, 8), generator=g)
    return logits, target


def test_ce_matches_torch_with_weights_and_ignore():
    logits, target = _batch()
    target[0, :2] = IGNORE_INDEX
    w = [1.0, 2.0, 0.5]
    ours = SegmentationLoss("ce", class_weights=w)(logits, target)
    ref = F.cross_entropy(logits, target, weight=torch.tensor(w), ignore_index=IGNORE_INDEX)
    torch.testing.assert_close(ours, ref)


@pytest.mark.parametrize("name", LOSSES)
def test_ignored_pixels_do_not_matter(name):
    logits, target = _batch()
    target[:, :3] = IGNORE_INDEX
    loss = SegmentationLoss(name)
    changed = logits.clone()
    changed[:, :, :3] = torch.randn_like(changed[:, :, :3]) * 10
    torch.testing.assert_close(loss(logits, target), loss(changed, target))


@pytest.mark.parametrize("name", LOSSES)
def test_perfect_prediction_scores_lower_than_random(name):
    logits, target = _batch()
    perfect = F.one_hot(target, 3).permute(0, 3, 1, 2).float() * 20 - 10
    loss = SegmentationLoss(name)
    assert loss(perfect, target) < 0.05 < loss(logits, target)


def test_dice_is_one_minus_dice_coefficient_for_hard_predictions():
    target = torch.tensor([[[0, 0, 1, 1]]])
    logits = torch.tensor([[[[50.0, -50, -50, -50]], [[-50.0, 50, 50, 50]]]])  # pred [0,1,1,1]
    # class 0: 2*1/(1+2)=2/3, class 1: 2*2/(3+2)=4/5 (no smoothing)
    expected = 1 - (2 / 3 + 4 / 5) / 2
    assert soft_dice(logits, target, smooth=0.0).item() == pytest.approx(expected, abs=1e-5)


def test_single_channel_bce_and_dice():
    logits = torch.tensor([[[[3.0, -3.0]]]])
    target = torch.tensor([[[1, 0]]])
    ref = F.binary_cross_entropy_with_logits(logits[:, 0], target.float())
    assert binary_cross_entropy(logits, target).item() == pytest.approx(ref.item(), rel=1e-6)
    assert SegmentationLoss("bce_dice")(logits, target) < 0.2


def test_all_ignored_batch_gives_zero_not_nan():
    logits, _ = _batch()
    target = torch.full((2, 8, 8), IGNORE_INDEX)
    for name in LOSSES:
        value = SegmentationLoss(name)(logits, target)
        assert torch.isfinite(value) and value.item() == 0.0


def test_gradient_flows():
    logits, target = _batch()
    logits.requires_grad_(True)
    SegmentationLoss("ce_dice")(logits, target).backward()
    assert logits.grad is not None and logits.grad.abs().sum() > 0


def test_bad_settings_are_named():
    with pytest.raises(ValueError, match="loss must be one of"):
        SegmentationLoss("focal")
    with pytest.raises(ValueError, match="class_weights has 2 entries"):
        SegmentationLoss("ce", class_weights=[1.0, 1.0])(*_batch())
    with pytest.raises(ValueError, match="non-negative"):
        SegmentationLoss("ce", class_weights=[1.0, -1.0, 1.0])
