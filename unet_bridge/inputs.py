"""Inputs for checks that run both twins: seeded random batches and image files.

The sizes come from the one size policy, :mod:`unet_spec.sizes` (import it from there), so ``unet
parity``, ``unet port``, the training export and the parity tests feed the models alike.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from unet_spec import UNetSpec


def random_input(spec: UNetSpec, size: int, batch: int = 1, seed: int = 0) -> np.ndarray:
    """An NCHW float32 batch uniform in [0, 1), like a scaled image."""
    rng = np.random.default_rng(seed)
    return rng.random((batch, spec.in_channels, size, size), dtype=np.float32)


def image_input(
    path: str | os.PathLike[str], spec: UNetSpec, size: int, batch: int = 1
) -> np.ndarray:
    """An image file as an NCHW float32 batch in [0, 1], resized to ``size``×``size``."""
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such image")
    modes = {1: "L", 3: "RGB", 4: "RGBA"}
    if spec.in_channels not in modes:
        raise ValueError(
            f"{path}: images give 1, 3 or 4 channels; the spec needs "
            f"in_channels={spec.in_channels} (use --random)"
        )
    try:
        with Image.open(path) as img:
            img = img.convert(modes[spec.in_channels]).resize((size, size), Image.BILINEAR)
            array = np.asarray(img, dtype=np.float32) / 255.0
    except (UnidentifiedImageError, OSError) as err:
        raise ValueError(f"{path}: not a readable image ({err})") from None
    array = array.reshape(size, size, spec.in_channels).transpose(2, 0, 1)
    return np.repeat(array[None], batch, axis=0)


__all__ = ["image_input", "random_input"]
