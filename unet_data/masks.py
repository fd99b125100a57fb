"""Reading masks as class ids: index, 0/255 binary and palette masks, and the ignore label.

Every reader (training, evaluation, ``unet predict``'s scoring) decodes masks through
:func:`read_mask`, so all agree on the encodings and on :data:`IGNORE_INDEX`, the label that the loss
and the metrics skip. Masks stored lossily (JPEG) hold values near their levels rather than on
them: with ``snap`` each value goes to the nearest level first (the levels are measured by
:func:`unet_data.survey.survey_masks`). A valid-region mask (:func:`read_valid`, e.g. a retina
image's field of view) marks the pixels outside as ignored. Pillow and tifffile are imported inside
the functions (``import unet_data`` loads numpy only).
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

#: Mask files stored with lossy compression: their values scatter around the levels written.
LOSSY_SUFFIXES = (".jpg", ".jpeg")
#: Channel spread (max - min of R, G, B) that JPEG noise leaves on a grey pixel of a colour file.
GREY_SPREAD = 12


def is_lossy(path: str | Path) -> bool:
    """A mask file whose compression moves values (JPEG)."""
    return Path(path).suffix.lower() in LOSSY_SUFFIXES


def grey_of(rgb: np.ndarray) -> np.ndarray | None:
    """The grey values of an ``(H, W, 3)`` colour mask whose channels agree (within JPEG noise
    on 99 % of the pixels: a grey mask saved as RGB), else ``None``."""
    spread = rgb.max(axis=-1).astype(np.int64) - rgb.min(axis=-1)
    if np.mean(spread > GREY_SPREAD) > 0.01:
        return None
    return np.rint(rgb.astype(np.float64).mean(axis=-1)).astype(np.int64)


def snap_to(values: np.ndarray, levels: Sequence[int]) -> np.ndarray:
    """Each value replaced by the nearest of ``levels`` (a midpoint goes to the lower level)."""
    targets = np.unique(np.asarray(levels, np.int64))
    if targets.size < 2:
        return np.full_like(values, targets[0] if targets.size else 0)
    mids = (targets[:-1] + targets[1:]) / 2.0
    return targets[np.searchsorted(mids, values, side="left")]


def snap_colours(rgb: np.ndarray, palette: Sequence[Sequence[int]]) -> np.ndarray:
    """Each colour of ``(H, W, 3)`` replaced by the nearest colour of ``palette`` (Euclidean)."""
    flat = rgb.reshape(-1, 3).astype(np.int64)
    codes, inverse = np.unique((flat[:, 0] << 16) | (flat[:, 1] << 8) | flat[:, 2],
                               return_inverse=True)  # fmt: skip
    colours = np.stack([codes >> 16, (codes >> 8) & 255, codes & 255], axis=1)
    pal = np.asarray(palette, np.int64).reshape(-1, 3)
    dist = ((colours[:, None, :] - pal[None]) ** 2).sum(-1)
    return pal[dist.argmin(axis=1)][inverse.reshape(-1)].reshape(rgb.shape)


def read_mask(
    path: str | Path,
    num_classes: int,
    encoding: MaskEncoding = "auto",
    value_map: dict[int, int] | None = None,
    ignore_value: int | None = None,
    palette: Sequence[Sequence[int]] | None = None,
    index: int | None = None,
    data: bytes | None = None,
    snap: bool = False,
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
        snap: Lossy masks: grey values go to the nearest of ``value_map``'s keys and
            ``ignore_value`` (``binary`` without a map: 0 and 255, a threshold at the midpoint),
            colours to the nearest colour of ``palette``, before anything else.

    A colour file read as ``index`` or ``binary`` is read as grey when its channels agree (a grey
    mask saved as RGB, JPEG noise allowed), else refused.

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
            raise ValueError(
                f"{name}: mask_encoding='palette' needs data.masks.palette (RGB colours)"
            )
        if img is not None:
            rgb = np.asarray(img.convert("RGB")).astype(np.int64)
        elif arr.ndim == 3 and arr.shape[-1] >= 3:
            rgb = arr[..., :3].astype(np.int64)
        else:
            raise ValueError(f"{name}: mask_encoding='palette' needs an RGB mask")
        if snap:
            rgb = snap_colours(rgb, palette)
        code = (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]
        raw = np.full(code.shape, -1, np.int64)
        for k, colour in enumerate(palette):
            r, g, b = (int(c) for c in colour)
            raw[code == ((r << 16) | (g << 8) | b)] = k
        if (raw < 0).any():
            bad = np.unique(rgb[raw < 0].reshape(-1, 3), axis=0)[:4].tolist()
            raise ValueError(f"{name}: colours {bad} are not in data.masks.palette")
    else:
        raw = _grey_values(img, arr, name, encoding)
        if encoding == "binary" and value_map is None:
            value_map = {0: 0, 255: 1}
        if snap and value_map:
            levels = [int(v) for v in value_map]
            raw = snap_to(raw, levels + ([int(ignore_value)] if ignore_value is not None else []))
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
            f"(encoding={encoding!r}; set data.masks.value_map or data.masks.ignore_value)"
        )
    return mask


def _grey_values(img, arr: np.ndarray | None, name: str, encoding: str) -> np.ndarray:
    """The one-channel values of a mask read as ``index`` or ``binary``."""
    if img is not None:
        if img.mode in ("LA", "La", "1"):  # grey with alpha (dropped), or bilevel
            img = img.convert("LA" if img.mode != "1" else "L").getchannel(0)
        if img.mode in ("L", "P", "I", "F") or img.mode.startswith("I;"):
            return np.asarray(img).astype(np.int64)
        try:
            rgb = np.asarray(img.convert("RGB"))
        except Exception:  # a mode Pillow cannot convert: named below
            rgb = None
        mode = img.mode
    else:
        if arr.ndim == 2:
            return arr.astype(np.int64)
        rgb, mode = (arr[..., :3] if arr.shape[-1] >= 3 else None), "tiff-rgb"
    grey = grey_of(rgb) if rgb is not None else None
    if grey is None:
        raise ValueError(
            f"{name}: a {encoding} mask must have one channel, received mode {mode} "
            "(use mask_encoding='palette' for colour masks)"
        )
    return grey


def read_valid(path: str | Path, index: int | None = None) -> np.ndarray:
    """A valid-region mask (a field of view) as bool ``(H, W)``: ``True`` inside.

    Inside is above half the file's largest value (0/255, 0/1 and JPEG-noisy masks alike; colour
    files by the mean of their channels); a mask without any pixel above 0 has no inside.

    Raises:
        FileNotFoundError, ValueError: A missing or unreadable file (named).
    """
    path = Path(path)
    arr = tiff_slice(path, index) if is_tiff(path) else None
    if index is not None and not is_tiff(path):
        raise ValueError(f"{path}: not a volume (only multi-page TIFFs have slices)")
    if arr is None:
        img = open_image(path)
        arr = np.asarray(img.convert("L") if img.mode not in ("L", "I", "F") and
                         not img.mode.startswith("I;") else img)  # fmt: skip
    values = arr.astype(np.float64)
    if values.ndim == 3:
        values = values[..., :3].mean(axis=-1)
    top = values.max(initial=0.0)
    return values > top / 2.0 if top > 0 else np.zeros(values.shape, bool)
