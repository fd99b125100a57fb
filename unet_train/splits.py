"""The images a folder holds out for validation: one rule for training and for packing.

A random (seeded) or ``tail`` split is :func:`held_out`; grouped splits (whole sequences or
volumes) are :func:`unet_data.split_by_group`.
"""

from __future__ import annotations

import torch


def held_out(count: int, fraction: float, seed: int = 0, tail: bool = False) -> set[int]:
    """The indices of the images a random (seeded) or ``tail`` split holds out for validation:
    ``round(count * fraction)`` of them, at least one and never all. ``unet data pack`` holds out
    the same images as :class:`~unet_train.data.FolderDataModule` for the same fraction and seed.

    Raises:
        ValueError: Fewer than two images.
    """
    if count < 2:
        raise ValueError(f"need at least 2 images to split off validation (found {count})")
    n_val = min(count - 1, max(1, round(count * fraction)))
    if tail:
        order = list(range(count))
    else:
        order = torch.randperm(count, generator=torch.Generator().manual_seed(seed)).tolist()
    return set(order[-n_val:])


__all__ = ["held_out"]
