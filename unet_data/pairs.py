"""Image files and image/mask pairs: the suffixes every reader accepts, pairing by file stem.

Listing and pairing files reads no pixels.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

#: Image files every reader accepts (compared in lower case).
IMAGE_SUFFIXES = (".png", ".tif", ".tiff", ".jpg", ".jpeg", ".bmp", ".gif", ".webp")


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
