"""Reading images as model input: one reader for training data, inference and the CLI.

Pillow is imported inside the functions, keeping ``import unet_spec`` down to numpy.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

# ITU-R 601 luma, the weights of Pillow's own "L" conversion.
_LUMA = np.array([0.299, 0.587, 0.114], np.float32)


def open_image(path: str | Path) -> Any:
    """Open and decode ``path`` with Pillow (a truncated file fails here, not later in a worker).

    Raises:
        FileNotFoundError: No such file.
        ValueError: Not a readable image.
    """
    from PIL import Image

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such image")
    try:
        img = Image.open(path)
        img.load()
    except Exception as err:  # Pillow raises OSError, SyntaxError, ValueError... for bad files
        raise ValueError(f"{path}: cannot read image ({type(err).__name__}: {err})") from None
    return img


def read_image(path: str | Path, in_channels: int, convert: bool = False) -> np.ndarray:
    """Read ``path`` as ``(C, H, W)`` float32 scaled to [0, 1].

    Args:
        path: Image file (8- or 16-bit, grey, grey+alpha, RGB, RGBA or palette).
        in_channels: Channels the model expects.
        convert: Map grey, grey+alpha, RGB and RGBA onto each other when the channel count
            differs (luma for grey, repetition for RGB, alpha dropped); otherwise a mismatch is an
            error.

    Raises:
        FileNotFoundError: No such file.
        ValueError: Unreadable or truncated image, or a channel count other than ``in_channels``.
    """
    img = open_image(path)
    if img.mode == "P":  # a palette is an encoding, not a channel layout
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
    elif img.mode == "1":
        img = img.convert("L")
    arr = np.asarray(img)
    if arr.dtype == np.uint8:
        scale = 255.0
    elif arr.dtype in (np.uint16, np.int32) or img.mode.startswith("I"):
        scale = 65535.0 if arr.max(initial=0) > 255 else 255.0
    else:
        scale = 1.0
    arr = arr.astype(np.float32) / scale
    arr = arr[None] if arr.ndim == 2 else np.moveaxis(arr, -1, 0)
    have = arr.shape[0]
    if have != in_channels:
        if not convert or have not in (1, 2, 3, 4) or in_channels not in (1, 3):
            hint = " (grey/RGB conversion was not asked for: --convert)" if have <= 4 else ""
            raise ValueError(
                f"{path}: image has {have} channel(s) ({img.mode}), the model expects "
                f"in_channels={in_channels}{hint}"
            )
        colour = arr[:3] if have >= 3 else np.repeat(arr[:1], 3, axis=0)
        arr = np.tensordot(_LUMA, colour, axes=1)[None] if in_channels == 1 else colour
    return np.ascontiguousarray(arr, dtype=np.float32)
