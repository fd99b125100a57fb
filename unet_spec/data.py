"""Framework-free data helpers: the ignore label, reading masks, finding image/mask pairs, class weights.

Training, evaluation and ``unet predict`` read their files through this module and
:mod:`unet_spec.images`, so every reader agrees on the suffixes, the mask encodings and the label that
the loss and the metrics skip. Pillow is imported inside the functions (``import unet_spec`` loads
numpy only).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import numpy as np

from unet_spec.images import open_image

#: Class id of pixels that the loss and the metrics skip.
IGNORE_INDEX = 255
#: Image files every reader accepts (compared in lower case).
IMAGE_SUFFIXES = (".png", ".tif", ".tiff", ".jpg", ".jpeg", ".bmp", ".gif", ".webp")

MaskEncoding = Literal["auto", "index", "binary", "palette"]
#: One labelled image: (name, image ``(C, H, W)`` float32 in [0, 1], mask ``(H, W)`` int64).
Sample = tuple[str, np.ndarray, np.ndarray]


def is_image_file(path: Path) -> bool:
    """An image by its suffix, not a hidden file."""
    return path.suffix.lower() in IMAGE_SUFFIXES and not path.name.startswith(".")


def image_files(paths: Sequence[Path]) -> list[Path]:
    """Files as given, folders replaced by their image files (sorted); missing paths are kept so
    that the reader reports them by name."""
    out: list[Path] = []
    for p in paths:
        if p.is_dir():
            out.extend(sorted(f for f in p.iterdir() if is_image_file(f)))
        else:
            out.append(p)
    return out


# -- reading --------------------------------------------------------------------------------------
def read_mask(
    path: str | Path,
    num_classes: int,
    encoding: MaskEncoding = "auto",
    value_map: dict[int, int] | None = None,
    ignore_value: int | None = None,
    palette: Sequence[Sequence[int]] | None = None,
) -> np.ndarray:
    """Read a mask as int64 class ids ``(H, W)``, :data:`IGNORE_INDEX` where ignored.

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

    Raises:
        ValueError: Unreadable file, or values that are neither a class nor ``ignore_value``.
    """
    path = Path(path)
    img = open_image(path)
    if encoding == "auto":
        if palette is not None:
            encoding = "palette"
        elif img.mode == "P" or num_classes != 2:
            encoding = "index"
        else:
            values = np.unique(np.asarray(img.convert("L")))
            encoding = "binary" if set(values.tolist()) <= {0, 255} and 255 in values else "index"
    if encoding == "palette":
        if palette is None:
            raise ValueError(f"{path}: mask_encoding='palette' needs data.palette (RGB colours)")
        rgb = np.asarray(img.convert("RGB")).astype(np.int64)
        code = (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]
        raw = np.full(code.shape, -1, np.int64)
        for k, colour in enumerate(palette):
            r, g, b = (int(c) for c in colour)
            raw[code == ((r << 16) | (g << 8) | b)] = k
        if (raw < 0).any():
            bad = np.unique(rgb[raw < 0].reshape(-1, 3), axis=0)[:4].tolist()
            raise ValueError(f"{path}: colours {bad} are not in data.palette")
    else:
        if img.mode not in ("L", "P", "I", "I;16", "1"):
            raise ValueError(
                f"{path}: a {encoding} mask must have one channel, received mode {img.mode} "
                "(use mask_encoding='palette' for colour masks)"
            )
        raw = np.asarray(img).astype(np.int64)
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
            f"{path}: mask values {values} are neither a class id (0..{num_classes - 1}){extra} "
            f"(encoding={encoding!r}; set data.value_map or data.ignore_value)"
        )
    return mask


def find_pairs(folder: str | Path) -> list[tuple[Path, Path]]:
    """Image/mask pairs of ``folder/images`` and ``folder/masks``, matched by file stem.

    Raises:
        FileNotFoundError: A missing folder.
        ValueError: No images, or an image without a mask (or the reverse).
    """
    folder = Path(folder)
    images_dir, masks_dir = folder / "images", folder / "masks"
    for d in (images_dir, masks_dir):
        if not d.is_dir():
            raise FileNotFoundError(f"{d}: no such folder (expected images/ and masks/)")

    def listing(d: Path) -> dict[str, Path]:
        found: dict[str, Path] = {}
        for p in sorted(d.iterdir()):
            if is_image_file(p):
                if p.stem in found:
                    raise ValueError(f"{p}: two files with the stem {p.stem!r} in {d}")
                found[p.stem] = p
        return found

    images, masks = listing(images_dir), listing(masks_dir)
    if not images:
        raise ValueError(f"{images_dir}: no images ({', '.join(IMAGE_SUFFIXES)})")
    for stem, p in images.items():
        if stem not in masks:
            raise ValueError(f"{p}: no mask with the stem {stem!r} in {masks_dir}")
    for stem, p in masks.items():
        if stem not in images:
            raise ValueError(f"{p}: no image with the stem {stem!r} in {images_dir}")
    return [(images[s], masks[s]) for s in images]


# -- class statistics ---------------------------------------------------------------------------
def class_frequencies(samples: Sequence[Sample], num_classes: int) -> np.ndarray:
    """Share of labelled pixels per class (ignored pixels excluded)."""
    counts = np.zeros(num_classes, np.float64)
    for _, _, mask in samples:
        valid = mask[mask != IGNORE_INDEX]
        counts += np.bincount(valid.ravel(), minlength=num_classes)[:num_classes]
    return counts / max(counts.sum(), 1.0)


def median_frequency_weights(
    samples: Sequence[Sample], num_classes: int, power: float = 0.5
) -> list[float]:
    """Median-frequency class weights raised to ``power`` (0.5: the square root, gentler)."""
    freq = class_frequencies(samples, num_classes)
    med = float(np.median(freq[freq > 0])) if (freq > 0).any() else 1.0
    return [float((med / f) ** power) if f > 0 else 0.0 for f in freq]


__all__ = [
    "IGNORE_INDEX",
    "IMAGE_SUFFIXES",
    "MaskEncoding",
    "Sample",
    "class_frequencies",
    "find_pairs",
    "image_files",
    "is_image_file",
    "median_frequency_weights",
    "read_mask",
]
