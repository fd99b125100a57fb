"""What a folder of masks holds: the encoding, the classes and, for colour masks, the palette.

A data module that is given no ``num_classes`` (or no ``palette`` for colour masks) measures them
here, so a folder trains without the user counting classes first. Every mask is decoded once (the
classes of one mask say nothing of the others); Pillow and tifffile are imported inside.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np

from unet_data.images import image_info, is_tiff, open_image, tiff_slice
from unet_data.masks import IGNORE_INDEX


class MaskSurvey(NamedTuple):
    """The encoding every mask of a dataset fits, its number of classes, and the palette of colour
    masks (``None`` otherwise)."""

    encoding: str
    num_classes: int
    palette: list[list[int]] | None


def _mask_arrays(path: Path):
    """Each mask of ``path`` (each slice of a volume) as stored: ``(H, W)`` values or ``(H, W, 3)``
    colours. A palette PNG gives its indices: they are the class ids, as :func:`read_mask` reads."""
    if is_tiff(path):
        slices = image_info(path).slices
        for k in range(slices):
            yield tiff_slice(path, k if slices > 1 else None)
        return
    img = open_image(path)
    if img.mode in ("RGB", "RGBA", "RGBX", "PA", "LA", "La", "RGBa"):
        img = img.convert("RGB") if img.mode not in ("LA", "La") else img.convert("L")
    elif img.mode == "1":
        img = img.convert("L")
    yield np.asarray(img)


def survey_masks(
    masks: Sequence[str | Path],
    ignore_value: int | None = None,
    value_map: dict[int, int] | None = None,
) -> MaskSurvey:
    """Measure the encoding and the classes of ``masks`` (every file decoded once).

    Rules: grey masks holding only 0 and 255 are ``binary`` (two classes); other grey masks are
    ``index`` (class ids ``0..max``, after ``value_map``, without ``ignore_value``); colour masks
    are ``palette``, one class per colour in colour order (black first), ``ignore_value`` naming a
    position in that list as for :func:`read_mask` (its pixels ignored, the class ids unchanged).

    Raises:
        ValueError: No masks, grey and colour masks mixed, or values that cannot be class ids
            (each names a file and the config keys that would fix it).
    """
    if not masks:
        raise ValueError("no masks to measure")
    values: set[int] = set()
    colours: set[tuple[int, int, int]] = set()
    first_grey = first_colour = None
    for path in masks:
        for arr in _mask_arrays(Path(path)):
            if arr.ndim == 3:
                first_colour = first_colour or path
                flat = np.unique(arr[..., :3].reshape(-1, 3).astype(np.int64), axis=0)
                colours.update(tuple(int(c) for c in row) for row in flat)
            else:
                first_grey = first_grey or path
                values.update(np.unique(arr).astype(np.int64).tolist())
    if first_grey is not None and first_colour is not None:
        raise ValueError(
            f"{first_colour} is a colour mask but {first_grey} is grey: give every mask one "
            "encoding (data.mask_encoding, data.palette)"
        )
    if first_colour is not None:
        palette = [list(c) for c in sorted(colours)]
        if len(palette) >= IGNORE_INDEX:
            raise ValueError(
                f"{first_colour}: the colour masks hold {len(palette)} colours, too many for "
                "classes; give data.palette (the colour of each class) and data.num_classes"
            )
        return MaskSurvey("palette", max(len(palette), 2), palette)
    if value_map:
        values = {int(value_map.get(v, v)) for v in values}
    if ignore_value is not None:
        values.discard(int(ignore_value))
    if values <= {0, 255} and 255 in values and not value_map:
        return MaskSurvey("binary", 2, None)
    top = max(values, default=0)
    if top >= IGNORE_INDEX or min(values, default=0) < 0:
        shown = sorted(values)
        listed = ", ".join(map(str, shown[:6])) + (", …" if len(shown) > 6 else "")
        raise ValueError(
            f"{first_grey}: mask values {listed} are not class ids 0..{IGNORE_INDEX - 1}; set "
            "data.ignore_value (a void label such as 255), data.value_map (raw value → class) or "
            "data.num_classes"
        )
    return MaskSurvey("index", max(top + 1, 2), None)


__all__ = ["MaskSurvey", "survey_masks"]
