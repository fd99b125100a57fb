"""Test-time augmentation: the one vocabulary of views, for the engine, the training system, the
``unet`` command and the benchmarks.

A mode names a set of views, each a number of quarter turns and whether to flip horizontally:
``"d4"`` the 8 symmetries of the square, ``"flips"`` the 4 flips, ``"hflip"`` the image and its
mirror image (scenes with an up and a down). Every caller states its choice as
:data:`TTAChoice` (``False``/``None``: no TTA, ``True``: ``"d4"``, or a mode) and reads it through
:func:`tta_mode`.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

# The eight symmetries of the square: (number of 90° rotations, horizontal flip).
_D4 = tuple((r, f) for f in (False, True) for r in range(4))
_FLIPS = ((0, False), (0, True), (2, True), (2, False))  # identity, h-flip, v-flip, both
_HFLIP = ((0, False), (0, True))  # identity and its mirror image: scenes with an up and a down
#: Test-time augmentation modes → their (quarter turns, horizontal flip) transforms.
TTA_TRANSFORMS = {"d4": _D4, "flips": _FLIPS, "hflip": _HFLIP}
TTA_MODES = tuple(TTA_TRANSFORMS)
#: A test-time augmentation mode (the keys of :data:`TTA_TRANSFORMS`).
TTAMode = Literal["d4", "flips", "hflip"]
#: What callers accept: no TTA (``False``/``None``), all 8 views (``True``), or a mode.
TTAChoice = bool | TTAMode | None


def tta_mode(choice: bool | str | None) -> str | None:
    """The mode a choice means: ``None`` for no TTA, ``"d4"`` for ``True``, else the mode itself.

    Raises:
        ValueError: An unknown mode (the message lists the modes).
    """
    if choice is None or choice is False or choice == "":
        return None
    if choice is True:
        return "d4"
    if choice not in TTA_TRANSFORMS:
        raise ValueError(
            f"tta must be true, false or one of {', '.join(TTA_MODES)}. Received: tta={choice!r}"
        )
    return str(choice)


def transform(x: np.ndarray, rot: int, flip: bool) -> np.ndarray:
    """One view of ``x`` (``..., H, W``): flipped horizontally, then turned ``rot`` quarter turns."""
    if flip:
        x = x[..., ::-1]
    return np.rot90(x, rot, axes=(-2, -1))


def untransform(x: np.ndarray, rot: int, flip: bool) -> np.ndarray:
    """The inverse of :func:`transform`."""
    x = np.rot90(x, -rot, axes=(-2, -1))
    return x[..., ::-1] if flip else x
