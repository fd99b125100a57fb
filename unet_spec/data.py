"""Framework-free data helpers: the ignore label, masks, image/mask pairs, grouped splits, class weights.

Training, evaluation and ``unet predict`` read their files through this module and
:mod:`unet_spec.images`, so every reader agrees on the suffixes, the mask encodings and the label that
the loss and the metrics skip. Pillow is imported inside the functions (``import unet_spec`` loads
numpy only).
"""

from __future__ import annotations

import re
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


# -- splits ---------------------------------------------------------------------------------------
#: The default group of a file: its name up to the first underscore (CamVid's drive, ``0016E5`` in
#: ``0016E5_07959.png``; a volume's name in ``volA_slice_012.png``).
GROUP_PATTERN = r"^([^_]+)_"


def group_of(path: Path, pattern: str = GROUP_PATTERN) -> str:
    """The group (sequence, drive, volume) of an image file: the first capture group of
    ``pattern`` matched against the file name.

    Raises:
        ValueError: A name that does not match.
    """
    match = re.search(pattern, Path(path).name)
    if match is None or not match.groups():
        raise ValueError(
            f"{path}: the name does not match data.group_pattern {pattern!r} (its first group "
            "names the sequence or volume)"
        )
    return match.group(1)


def split_by_group(
    items: Sequence[tuple[Path, Path]],
    pattern: str = GROUP_PATTERN,
    val_groups: Sequence[str] | None = None,
    val_fraction: float = 0.2,
    seed: int = 0,
) -> tuple[list[tuple[Path, Path]], list[tuple[Path, Path]], list[str]]:
    """Split image/mask pairs so that no group has images on both sides.

    Frames of one video or slices of one volume are near-duplicates of their neighbours; a split
    that scatters them over training and validation measures memory, not generalization. Here
    whole groups are held out: ``val_groups`` when given, else groups drawn in a seeded order until
    at least ``val_fraction`` of the images are held out (at least one group stays for training).

    Returns:
        ``(train, val, held_out_groups)``.

    Raises:
        ValueError: Fewer than two groups, an unknown group in ``val_groups``, or no group left for
            training.
    """
    groups: dict[str, list[tuple[Path, Path]]] = {}
    for pair in items:
        groups.setdefault(group_of(pair[0], pattern), []).append(pair)
    names = sorted(groups)
    if len(names) < 2:
        only = f" {names[0]!r}" if names else ""
        raise ValueError(
            f"{len(items)} images form one group{only} under data.group_pattern {pattern!r}; a "
            "grouped split needs at least two (use split: tail for slices of one volume)"
        )
    if val_groups is not None:
        unknown = sorted(set(val_groups) - set(names))
        if unknown:
            raise ValueError(
                f"data.val_groups {unknown} are not among the groups found: {', '.join(names)}"
            )
        held = sorted(set(val_groups))
    else:
        order = np.random.default_rng(seed).permutation(len(names))
        held, count = [], 0
        for k in order:
            if count >= val_fraction * len(items):
                break
            held.append(names[k])
            count += len(groups[names[k]])
        held.sort()
    if len(held) == len(names):
        raise ValueError(f"data.val_groups {held} hold out every group; none is left to train on")
    train = [p for name in names if name not in held for p in groups[name]]
    val = [p for name in held for p in groups[name]]
    return train, val, held


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
    "GROUP_PATTERN",
    "IGNORE_INDEX",
    "IMAGE_SUFFIXES",
    "MaskEncoding",
    "Sample",
    "class_frequencies",
    "find_pairs",
    "group_of",
    "image_files",
    "is_image_file",
    "median_frequency_weights",
    "read_mask",
    "split_by_group",
]
