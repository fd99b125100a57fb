"""Input sizes and inputs for checks that run both twins.

The size policy (a preset's natural size, the size a saved Keras model is fixed to, a small size
for quick checks) and the inputs (seeded random batches, image files) live here once, so ``unet
parity``, ``unet port`` and the parity tests feed the models alike.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from unet_spec import PRESETS, UNetSpec, build_plan


def preset_name(spec: UNetSpec) -> str | None:
    """The registered name of ``spec``, if it is a preset."""
    return next((name for name, s in PRESETS.items() if s == spec), None)


def default_size(spec: UNetSpec) -> int:
    """The preset's natural input size, or the valid size nearest 256."""
    from unet_spec import DEFAULT_SIZES

    name = preset_name(spec)
    if name in DEFAULT_SIZES:
        return DEFAULT_SIZES[name]
    return build_plan(spec).nearest_valid_size(256)


def model_size(spec: UNetSpec) -> int | None:
    """The input size a saved Keras model is built for: ``None`` (any) when the spec allows it."""
    return None if spec.skip_merge == "none" else default_size(spec)


def check_size(spec: UNetSpec, size: int) -> int:
    """``size`` if the spec takes it (raises ``ValueError`` naming the nearest valid sizes)."""
    build_plan(spec).check_size(size)
    return size


def small_size(spec: UNetSpec) -> int:
    """A small valid input size, for quick checks such as a port's verification."""
    return build_plan(spec).nearest_valid_size(12 * 2**spec.depth, direction="up")


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
