"""Writing predictions: masks as PNG values, overlays for the eye, the bytes of PNG and npy files.

One encoding for every writer (``unet predict``, the training system's ``predict_step``, evaluation):
a binary task's mask is 0/255, any other mask holds the class ids. Pillow is imported inside the
functions.
"""

from __future__ import annotations

import io

import numpy as np

# Tints of classes 1, 2, ... in overlays (class 0 is background and stays untinted).
_PALETTE = np.array(
    [
        [230, 25, 75], [60, 180, 75], [255, 225, 25], [0, 130, 200], [245, 130, 48],
        [145, 30, 180], [70, 240, 240], [240, 50, 230], [210, 245, 60], [250, 190, 212],
    ],
    dtype=np.float32,
)  # fmt: skip


def encode_mask(ids: np.ndarray, num_classes: int) -> np.ndarray:
    """The mask as written: 0/255 for a binary task, class ids otherwise (8 or 16 bit)."""
    if num_classes <= 2:
        return (ids * 255).astype(np.uint8)
    return ids.astype(np.uint8 if num_classes <= 256 else np.uint16)


def decode_mask(mask: np.ndarray, num_classes: int) -> np.ndarray:
    """Class ids ``(H, W)`` int64 from a mask as :func:`encode_mask` writes it.

    Raises:
        ValueError: Values that :func:`encode_mask` never writes for ``num_classes``.
    """
    mask = np.asarray(mask)
    if num_classes <= 2:
        if not np.isin(mask, (0, 255)).all():
            raise ValueError(f"a binary mask holds only 0 and 255. Received: {np.unique(mask)[:8]}")
        return (mask // 255).astype(np.int64)
    if mask.max(initial=0) >= num_classes:
        raise ValueError(
            f"mask values must be class ids below {num_classes}. Received: max={mask.max()}"
        )
    return mask.astype(np.int64)


def overlay(image: np.ndarray, ids: np.ndarray, alpha: float = 0.45) -> np.ndarray:
    """The image as RGB uint8 with every non-background class tinted."""
    base = image[:3] if image.shape[0] >= 3 else np.repeat(image[:1], 3, axis=0)
    rgb = np.clip(np.moveaxis(base, 0, -1), 0.0, 1.0) * 255.0
    fg = ids > 0
    tint = _PALETTE[(ids[fg] - 1) % len(_PALETTE)]
    rgb[fg] = (1 - alpha) * rgb[fg] + alpha * tint
    return rgb.round().astype(np.uint8)


def png_bytes(array: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


def npy_bytes(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array)
    return buf.getvalue()


__all__ = ["decode_mask", "encode_mask", "npy_bytes", "overlay", "png_bytes"]
