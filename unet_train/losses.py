"""Segmentation losses on logits: cross-entropy, binary cross-entropy, soft Dice and their sums.

Every loss takes logits ``(N, K, H, W)`` and a target of class ids ``(N, H, W)`` in which
``ignore_index`` marks pixels that count for nothing (neither in the sum nor in the mean), and
optional per-class weights. The cross-entropy terms also take per-pixel weights ``(N, H, W)`` (the
U-Net paper's border weight map, :mod:`unet_data.weight_map`); the loss is then the weighted mean.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from unet_data import IGNORE_INDEX

LossName = Literal["ce", "bce", "dice", "ce_dice", "bce_dice"]
LOSSES: tuple[str, ...] = ("ce", "bce", "dice", "ce_dice", "bce_dice")


def _valid(target: torch.Tensor, ignore_index: int | None) -> torch.Tensor:
    if ignore_index is None:
        return torch.ones_like(target, dtype=torch.bool)
    return target != ignore_index


def _labelled(target: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """``target`` with ignored pixels set to class 0, so it can index and one-hot encode (their
    weight is zero wherever it is used)."""
    return torch.where(valid, target, torch.zeros_like(target))


def _one_hot(target: torch.Tensor, num_classes: int, valid: torch.Tensor) -> torch.Tensor:
    return F.one_hot(_labelled(target, valid), num_classes).permute(0, 3, 1, 2).to(torch.float32)


def _weighted_mean(
    per_pixel: torch.Tensor,
    target: torch.Tensor,
    valid: torch.Tensor,
    class_weights: torch.Tensor | None,
    pixel_weights: torch.Tensor | None,
) -> torch.Tensor:
    """``Σ w ℓ / Σ w`` over the pixels, ``w`` = labelled × pixel weight × weight of the true class:
    the one weighting of the cross-entropy terms."""
    weight = valid.float() if pixel_weights is None else valid * pixel_weights.float()
    if class_weights is not None:
        weight = weight * class_weights.to(per_pixel.device)[_labelled(target, valid)]
    return (per_pixel * weight).sum() / weight.sum().clamp_min(1e-8)


def cross_entropy(
    logits: torch.Tensor,
    target: torch.Tensor,
    class_weights: torch.Tensor | None = None,
    ignore_index: int | None = IGNORE_INDEX,
    pixel_weights: torch.Tensor | None = None,
) -> torch.Tensor:
    """Softmax cross-entropy, the weighted mean over labelled pixels (PyTorch's convention).

    Pixel weights multiply the class weights: ``Σ w_pixel w_class ℓ / Σ w_pixel w_class``.
    """
    if logits.shape[1] == 1:
        raise ValueError("cross_entropy needs at least 2 output channels; use 'bce' for one")
    ignore = -100 if ignore_index is None else ignore_index
    if pixel_weights is None:  # PyTorch's own weighted mean is the same sum, in one kernel
        return F.cross_entropy(logits.float(), target, weight=class_weights, ignore_index=ignore)
    per_pixel = F.cross_entropy(logits.float(), target, ignore_index=ignore, reduction="none")
    valid = _valid(target, ignore_index)
    return _weighted_mean(per_pixel, target, valid, class_weights, pixel_weights)


def binary_cross_entropy(
    logits: torch.Tensor,
    target: torch.Tensor,
    class_weights: torch.Tensor | None = None,
    ignore_index: int | None = IGNORE_INDEX,
    pixel_weights: torch.Tensor | None = None,
) -> torch.Tensor:
    """Sigmoid cross-entropy of every channel against the one-hot target.

    With one channel the target's class 1 is the positive class. Class weights scale the pixels of
    each true class; pixel weights multiply them.
    """
    valid = _valid(target, ignore_index)
    k = logits.shape[1]
    if k == 1:
        onehot = _labelled(target, valid).unsqueeze(1).float()
    else:
        onehot = _one_hot(target, k, valid)
    loss = F.binary_cross_entropy_with_logits(logits.float(), onehot, reduction="none").sum(1)
    return _weighted_mean(loss, target, valid, class_weights, pixel_weights) / max(k, 1)


def soft_dice(
    logits: torch.Tensor,
    target: torch.Tensor,
    class_weights: torch.Tensor | None = None,
    ignore_index: int | None = IGNORE_INDEX,
    sigmoid: bool = False,
    smooth: float = 1.0,
) -> torch.Tensor:
    """One minus the soft Dice, averaged over classes (weighted by ``class_weights`` if given).

    Statistics are summed over the whole batch, so a class absent from one image does not produce a
    meaningless 0/0 there. Probabilities come from a softmax (or a sigmoid with ``sigmoid=True`` or
    one channel).
    """
    valid = _valid(target, ignore_index)
    k = logits.shape[1]
    logits = logits.float()
    if k == 1:
        probs = torch.cat([1 - torch.sigmoid(logits), torch.sigmoid(logits)], 1)
        k = 2
    else:
        probs = torch.sigmoid(logits) if sigmoid else torch.softmax(logits, 1)
    onehot = _one_hot(target, k, valid)
    mask = valid.unsqueeze(1).float()
    probs = probs * mask
    dims = (0, 2, 3)
    inter = (probs * onehot).sum(dims)
    denom = probs.sum(dims) + onehot.sum(dims)
    dice = (2 * inter + smooth) / (denom + smooth)
    if class_weights is not None and class_weights.numel() == k:
        w = class_weights.to(dice.device).float()
        return 1 - (dice * w).sum() / w.sum().clamp_min(1e-8)
    return 1 - dice.mean()


class SegmentationLoss(nn.Module):
    """A named loss or sum of losses: ``ce``, ``bce``, ``dice``, ``ce_dice``, ``bce_dice``.

    Args:
        name: Which loss.
        class_weights: One weight per class (cross-entropy terms and Dice averaging), or ``None``.
        ignore_index: Target value to skip.
        dice_weight: Factor of the Dice term in the sums.

    Example:
        >>> loss = SegmentationLoss("ce_dice")
        >>> float(loss(torch.zeros(1, 2, 4, 4), torch.zeros(1, 4, 4, dtype=torch.long))) > 0
        True
    """

    def __init__(
        self,
        name: LossName = "ce_dice",
        class_weights: Sequence[float] | None = None,
        ignore_index: int | None = IGNORE_INDEX,
        dice_weight: float = 1.0,
    ) -> None:
        super().__init__()
        if name not in LOSSES:
            raise ValueError(f"loss must be one of {', '.join(LOSSES)}. Received: loss={name!r}")
        self.name = name
        self.ignore_index = ignore_index
        self.dice_weight = dice_weight
        weights = (
            None
            if class_weights is None
            else torch.tensor(list(class_weights), dtype=torch.float32)
        )
        if weights is not None and (weights < 0).any():
            raise ValueError(f"class_weights must be non-negative. Received: {list(class_weights)}")
        self.register_buffer("class_weights", weights, persistent=False)

    def _check(self, logits: torch.Tensor) -> None:
        w = self.class_weights
        if w is not None and w.numel() != max(logits.shape[1], 2):
            raise ValueError(
                f"class_weights has {w.numel()} entries but the model has {logits.shape[1]} classes"
            )

    def forward(
        self,
        logits: torch.Tensor,
        target: torch.Tensor,
        pixel_weights: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The loss; ``pixel_weights`` ``(N, H, W)`` weight the cross-entropy terms, not Dice."""
        self._check(logits)
        if pixel_weights is not None and pixel_weights.shape != target.shape:
            raise ValueError(
                f"pixel_weights has shape {tuple(pixel_weights.shape)} but the target "
                f"{tuple(target.shape)}"
            )
        if not _valid(target, self.ignore_index).any():
            # An all-ignored crop teaches nothing; 0/0 would read as a diverged run.
            return logits.sum() * 0.0
        w = self.class_weights
        total = logits.new_zeros((), dtype=torch.float32)
        if self.name in ("ce", "ce_dice"):
            total = total + cross_entropy(logits, target, w, self.ignore_index, pixel_weights)
        if self.name in ("bce", "bce_dice"):
            total = total + binary_cross_entropy(
                logits, target, w, self.ignore_index, pixel_weights
            )
        if self.name in ("dice", "ce_dice", "bce_dice"):
            dice = soft_dice(logits, target, w, self.ignore_index, sigmoid=self.name == "bce_dice")
            total = total + (dice if self.name == "dice" else self.dice_weight * dice)
        return total
