"""Reading masks as class ids: index, 0/255 binary and palette masks, and the ignore label.

Every reader (training, evaluation, ``unet predict``'s scoring) decodes masks through
:func:`read_mask`, so all agree on the encodings and on :data:`IGNORE_INDEX`, the label that the loss
and the metrics skip. Pillow and tifffile are imported inside the functions (``import unet_data``
loads numpy only).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import numpy as np

from unet_data.images import is_tiff, open_image, slice_name, tiff_slice

#: Class id of pixels that the loss and the metrics skip.
IGNORE_INDEX = 255

MaskEncoding = Literal["auto", "index", "binary", "palette"]


def read_mask(
    path: str | Path,
    num_classes: int,
    encoding: MaskEncoding = "auto",
    value_map: dict[int, int] | None = None,
    ignore_value: int | None = None,
    palette: Sequence[Sequence[int]] | None = None,
    index: int | None = None,
    data: bytes | None = None,
) -> np.ndarray:
    """Read a mask (or slice ``index`` of a multi-page TIFF volume of masks) as int64 class ids ``(H, W)``, :data:`IGNORE_INDEX` where ignored.

    Args:
        path: Mask file.
        num_classes: Valid class ids are ``0 .. num_classes - 1``.
        encoding: ``"index"`` (pixel values are class ids; a palette PNG gives its indices),
            ``"binary"`` (0 → class 0, 255 → class 1), ``"palette"`` (RGB colours listed in
            ``palette``, class = position in the list) or ``"auto"`` (palette when ``palette`` is
            given, binary for 0/255 masks of a 2-class task, index otherwise).
        value_map: Raw value → class id, applied before the check (``"index"``/``"binary"``).
        ignore_value: Raw value (palette position for ``"palette"``) to ignore.
        palette: RGB colours of the classes for ``"palette"``.
        index: The slice of a volume.
        data: The file's bytes (streamed shards), ``path`` then only names it.

    Raises:
        ValueError: Unreadable file, or values that are neither a class nor ``ignore_value``.
    """
    path = Path(path)
    arr = tiff_slice(path, index, data) if is_tiff(path) else None
    if index is not None and not is_tiff(path):
        raise ValueError(f"{path}: not a volume (only multi-page TIFFs have slices)")
    name = slice_name(path, index)
    img = open_image(path, data=data) if arr is None else None
    mode = img.mode if img is not None else ("tiff" if arr.ndim == 2 else "tiff-rgb")
    if encoding == "auto":
        if palette is not None:
            encoding = "palette"
        elif mode == "P" or num_classes != 2:
            encoding = "index"
        else:
            grey = np.asarray(img.convert("L")) if img is not None else arr
            values = np.unique(grey)
            encoding = "binary" if set(values.tolist()) <= {0, 255} and 255 in values else "index"
    if encoding == "palette":
        if palette is None:
            raise ValueError(f"{name}: mask_encoding='palette' needs data.palette (RGB colours)")
        if img is not None:
            rgb = np.asarray(img.convert("RGB")).astype(np.int64)
        elif arr.ndim == 3 and arr.shape[-1] >= 3:
            rgb = arr[..., :3].astype(np.int64)
        else:
            raise ValueError(f"{name}: mask_encoding='palette' needs an RGB mask")
        code = (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]
        raw = np.full(code.shape, -1, np.int64)
        for k, colour in enumerate(palette):
            r, g, b = (int(c) for c in colour)
            raw[code == ((r << 16) | (g << 8) | b)] = k
        if (raw < 0).any():
            bad = np.unique(rgb[raw < 0].reshape(-1, 3), axis=0)[:4].tolist()
            raise ValueError(f"{name}: colours {bad} are not in data.palette")
    else:
        if mode not in ("L", "P", "I", "I;16", "1", "tiff"):
            raise ValueError(
                f"{name}: a {encoding} mask must have one channel, received mode {mode} "
                "(use mask_encoding='palette' for colour masks)"
            )
        raw = (np.asarray(img) if img is not None else arr).astype(np.int64)
        if encoding == "binary":
            if value_map is None:
                value_map = {0: 0, 255: 1}
    mask = raw.copy()
    ignored = raw == ignore_value if ignore_value is not None else np.zeros(raw.shape, bool)
    if value_map:
        for src, dst in value_map.items():
            mask[raw == int(src)] = int(dst)
    mask[ignored] = IGNORE_INDEX
    bad = ~ignored & ((mask < 0) | (mask >= num_classes))
    if bad.any():
        values = np.unique(raw[bad])[:8].tolist()
        extra = f" nor the ignore value {ignore_value}" if ignore_value is not None else ""
        raise ValueError(
            f"{name}: mask values {values} are neither a class id (0..{num_classes - 1}){extra} "
            f"(encoding={encoding!r}; set data.value_map or data.ignore_value)"
        )
    return mask
