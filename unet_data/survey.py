"""What a folder of masks holds: the encoding, the classes and, for colour masks, the palette.

A data module that is given no ``num_classes`` (or no ``palette`` for colour masks) measures them
here, so a folder trains without the user counting classes first. Every mask is decoded once (the
classes of one mask say nothing of the others); Pillow and tifffile are imported inside.

Masks are read as they are encoded. JPEG masks (:data:`~unet_data.masks.LOSSY_SUFFIXES`) hold
values scattered around the levels that were written: the levels are measured as the values (or
colours) that hold many pixels, and every other value is snapped to the nearest level when read
(``snap``); two grey levels are a binary mask thresholded at their midpoint. The survey says so in
one line with the share of pixels moved, and refuses where the values do not form a few clusters,
or where more classes are asked for than the clusters hold: compression noise is never a class.
Lossless masks keep their values; a set of values that looks like a few levels with noise between
them (resampled masks), or class ids that do not start at 0 (the Oxford-IIIT Pet trimaps' 1, 2, 3),
is a refusal that names the cause and the keys that fix it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np

from unet_data.images import image_info, is_tiff, open_image, tiff_slice
from unet_data.masks import IGNORE_INDEX, grey_of, is_lossy, snap_to

#: A level holds at least this share of the pixels (JPEG noise spreads over many values, each
#: holding far less; a class rarer than this in JPEG masks is lost in their noise anyway).
LEVEL_SHARE = 0.01
#: Half-width of a level's cluster, in 8-bit units: JPEG at quality 50 to 95 rings up to about
#: this far from a sharp edge's levels; levels closer than this cannot be told from noise.
LEVEL_RADIUS = 24
#: The same for colours, per channel: chroma subsampling spreads a colour further than a grey.
COLOUR_RADIUS = 32
#: Share of pixels that must lie within the radius of a level for the values to be clusters (the
#: rest are edges between levels: a large share in small images).
CLUSTERED = 0.8
#: More levels than this cannot be separate clusters of noise (at most 256 / (2 * 24 + 1), about
#: 5, fit side by side in 8 bits; more "levels" are values of a genuine index mask, or the noise).
MAX_LEVELS = 8
#: Distinct values above which a lossless mask is checked for noise between a few levels.
MANY_VALUES = 32


class MaskSurvey(NamedTuple):
    """The encoding every mask of a dataset fits, its number of classes, the palette of colour
    masks (``None`` otherwise), and for masks whose values scatter around their levels: the
    measured level → class map of grey masks, ``snap`` (values go to the nearest level when read)
    and the one-line ``note`` saying what moved."""

    encoding: str
    num_classes: int
    palette: list[list[int]] | None
    value_map: dict[int, int] | None = None
    snap: bool = False
    note: str | None = None


def _mask_arrays(path: Path):
    """Each mask of ``path`` (each slice of a volume) as stored: ``(H, W)`` values or ``(H, W, 3)``
    colours. A palette PNG gives its indices: they are the class ids, as :func:`read_mask` reads."""
    if is_tiff(path):
        slices = image_info(path).slices
        for k in range(slices):
            arr = tiff_slice(path, k if slices > 1 else None)
            if arr is None:  # a codec tifffile lacks: Pillow reads the page
                arr = np.asarray(open_image(path))
            yield arr[..., :3] if arr.ndim == 3 else arr
        return
    img = open_image(path)
    if img.mode in ("LA", "La", "1"):
        img = img.convert("LA" if img.mode != "1" else "L").getchannel(0)
    elif img.mode not in ("L", "P", "I", "F") and not img.mode.startswith("I;"):
        img = img.convert("RGB")
    yield np.asarray(img)


class _Tally:
    """Pixels per grey value and per colour over every mask."""

    def __init__(self) -> None:
        self.grey = np.zeros(256, np.int64)
        self.other: Counter[int] = Counter()  # negative or very large grey values
        self.colours: Counter[int] = Counter()  # (r << 16) | (g << 8) | b
        self.first_grey: Path | None = None
        self.first_colour: Path | None = None

    def add_grey(self, arr: np.ndarray, path: Path) -> None:
        self.first_grey = self.first_grey or path
        values = arr.astype(np.int64).ravel()
        low, high = int(values.min(initial=0)), int(values.max(initial=0))
        if low >= 0 and high < 2**16:
            counts = np.bincount(values, minlength=self.grey.size)
            if counts.size > self.grey.size:
                counts[: self.grey.size] += self.grey
                self.grey = counts
            else:
                self.grey += counts
        else:
            found, counts = np.unique(values, return_counts=True)
            self.other.update(dict(zip(found.tolist(), counts.tolist(), strict=True)))

    def add_colour(self, rgb: np.ndarray, path: Path) -> None:
        self.first_colour = self.first_colour or path
        flat = rgb.reshape(-1, 3).astype(np.int64)
        codes, counts = np.unique((flat[:, 0] << 16) | (flat[:, 1] << 8) | flat[:, 2],
                                  return_counts=True)  # fmt: skip
        self.colours.update(dict(zip(codes.tolist(), counts.tolist(), strict=True)))

    def grey_values(self) -> tuple[np.ndarray, np.ndarray]:
        """The grey values present and their pixel counts (ascending values)."""
        found = np.flatnonzero(self.grey)
        values = np.concatenate([found, np.array(list(self.other), np.int64)])
        counts = np.concatenate([self.grey[found], np.array(list(self.other.values()), np.int64)])
        order = np.argsort(values, kind="stable")
        return values[order], counts[order]

    def colour_values(self) -> tuple[np.ndarray, np.ndarray]:
        codes = np.array(sorted(self.colours), np.int64)
        counts = np.array([self.colours[c] for c in codes.tolist()], np.int64)
        rgb = np.stack([codes >> 16, (codes >> 8) & 255, codes & 255], axis=1)
        return rgb.reshape(-1, 3), counts


class _Clusters(NamedTuple):
    levels: list[int]  # indices into the values, most pixels first
    near: float  # share of pixels within the radius of a level


def _clusters(values: np.ndarray, counts: np.ndarray, radius: float) -> _Clusters:
    """The levels of ``values`` (``(n,)`` grey or ``(n, 3)`` colours): values holding at least
    :data:`LEVEL_SHARE` of the pixels, each farther than ``radius`` from a more common one."""
    points = values.reshape(len(values), -1).astype(np.float64)
    total = max(int(counts.sum()), 1)
    levels: list[int] = []
    for i in np.argsort(-counts, kind="stable").tolist():
        if counts[i] < LEVEL_SHARE * total or len(levels) > MAX_LEVELS:
            break
        if all(np.abs(points[i] - points[j]).max() > radius for j in levels):
            levels.append(i)
    if not levels:
        return _Clusters([], 0.0)
    dist = np.abs(points[:, None, :] - points[levels][None]).max(axis=-1).min(axis=1)
    return _Clusters(levels, float(counts[dist <= radius].sum()) / total)


def _colour_levels(rgb: np.ndarray, counts: np.ndarray, radius: float) -> tuple[list, float]:
    """The level colours of JPEG colour masks, and the share of pixels within ``radius`` of one.

    Chroma subsampling spreads even a flat colour over many nearby colours, none holding many
    pixels on its own, so levels are found by density: the densest cell of 8³ colours (with its
    neighbours) starts a mean shift to the mode of the pixels within ``radius``; the level is the
    most common colour there; pixels within twice the radius are its noise and set aside; and so
    on while a level holds :data:`LEVEL_SHARE` of the pixels.
    """
    total = max(int(counts.sum()), 1)
    rgb = rgb.astype(np.float64)
    code = (rgb[:, 0] // 8) * 1024 + (rgb[:, 1] // 8) * 32 + rgb[:, 2] // 8
    free = np.ones(len(rgb), bool)
    levels: list[tuple[int, int, int]] = []
    while len(levels) <= MAX_LEVELS and counts[free].sum() >= LEVEL_SHARE * total:
        grid = np.bincount(code[free].astype(np.int64), weights=counts[free],
                           minlength=32**3).reshape(32, 32, 32)  # fmt: skip
        padded = np.pad(grid, 1)
        density = sum(padded[i : i + 32, j : j + 32, k : k + 32]
                      for i in range(3) for j in range(3) for k in range(3))  # fmt: skip
        centre = np.array(np.unravel_index(int(density.argmax()), density.shape)) * 8 + 4.0
        for _ in range(20):  # mean shift to the mode
            near = free & (np.abs(rgb - centre).max(axis=1) <= radius)
            if not near.any():
                break
            moved = (rgb[near] * counts[near, None]).sum(axis=0) / counts[near].sum()
            done = np.abs(moved - centre).max() < 0.5
            centre = moved
            if done:
                break
        near = free & (np.abs(rgb - centre).max(axis=1) <= radius)
        if counts[near].sum() < LEVEL_SHARE * total:
            break
        best = np.flatnonzero(near)[int(counts[near].argmax())]
        levels.append(tuple(int(c) for c in rgb[best]))
        free &= np.abs(rgb - centre).max(axis=1) > 2 * radius
    if not levels:
        return [], 0.0
    pal = np.array(levels, np.float64)
    dist = np.abs(rgb[:, None, :] - pal[None]).max(axis=-1).min(axis=1)
    return sorted(levels), float(counts[dist <= radius].sum()) / total


def _listed(values: Sequence[int], limit: int = 6) -> str:
    shown = [str(int(v)) for v in list(values)[:limit]]
    return ", ".join(shown) + (", …" if len(values) > limit else "")


def survey_masks(
    masks: Sequence[str | Path],
    ignore_value: int | None = None,
    value_map: dict[int, int] | None = None,
    encoding: str = "auto",
    palette: Sequence[Sequence[int]] | None = None,
    num_classes: int | None = None,
) -> MaskSurvey:
    """Measure the encoding and the classes of ``masks`` (every file decoded once).

    Rules: grey masks holding only 0 and 255 are ``binary`` (two classes); other grey masks are
    ``index`` (class ids ``0..max``, after ``value_map``, without ``ignore_value``); colour masks
    are ``palette``, one class per colour in colour order (black first), ``ignore_value`` naming a
    position in that list as for :func:`read_mask` (its pixels ignored, the class ids unchanged).
    JPEG masks (and masks read as ``binary`` by request) are measured as levels with noise around
    them: see the module's notes.

    Args:
        masks: The mask files.
        ignore_value: ``data.masks.ignore_value``.
        value_map: ``data.masks.value_map`` (raw value → class id).
        encoding: ``data.masks.encoding`` as given (``binary`` asks for a threshold).
        palette: ``data.masks.palette`` as given (JPEG colour masks snap to it).
        num_classes: ``data.num_classes`` as given: for JPEG masks, checked against the levels.

    Raises:
        ValueError: No masks, grey and colour masks mixed, or values that cannot be class ids
            (each names a file, the cause and the config keys that would fix it).
    """
    if not masks:
        raise ValueError("no masks to measure")
    tally, lossy = _Tally(), False
    for path in masks:
        path = Path(path)
        lossy = lossy or is_lossy(path)
        for arr in _mask_arrays(path):
            if arr.ndim == 3:
                # A grey mask saved as RGB reads as grey where a threshold or levels are wanted.
                grey = grey_of(arr) if (is_lossy(path) or encoding in ("binary", "index")) else None
                if grey is None:
                    tally.add_colour(arr, path)
                    continue
                arr = grey
            tally.add_grey(arr, path)
    if tally.first_grey is not None and tally.first_colour is not None:
        raise ValueError(
            f"{tally.first_colour} is a colour mask but {tally.first_grey} is grey: give every "
            "mask one encoding (data.masks.encoding, data.masks.palette)"
        )
    if tally.first_colour is not None:
        return _colour_survey(tally, lossy, palette, num_classes)
    return _grey_survey(tally, lossy, ignore_value, value_map, encoding, num_classes)


def _cause(lossy: bool) -> str:
    return "JPEG-compressed masks" if lossy else "masks read as binary"


def _check_asked(num_classes: int | None, found: int, levels: str, lossy: bool, first) -> None:
    if num_classes is not None and num_classes > found:
        raise ValueError(
            f"{first}: data.num_classes={num_classes} but the {_cause(lossy)} cluster at "
            f"{found} level(s) ({levels}); compression noise is not a class: leave "
            f"data.num_classes unset (or set it to {found}), or save the masks losslessly (PNG)"
        )


def _colour_survey(
    tally: _Tally,
    lossy: bool,
    palette: Sequence[Sequence[int]] | None,
    num_classes: int | None,
) -> MaskSurvey:
    rgb, counts = tally.colour_values()
    first = tally.first_colour
    if palette is not None:  # the user's colours: JPEG noise snaps to them
        return MaskSurvey("palette", max(len(palette), 2), [list(c) for c in palette], snap=lossy)
    if lossy or len(rgb) > MANY_VALUES:
        colours, near = _colour_levels(rgb, counts, COLOUR_RADIUS)
        shown = ", ".join(str(list(c)) for c in colours[:6])
        if lossy:
            if near < CLUSTERED or len(colours) > MAX_LEVELS:
                raise ValueError(
                    f"{first}: the JPEG colour masks hold {len(rgb)} colours that do not cluster "
                    f"near a few ({near:.0%} of pixels near the {len(colours)} densest); JPEG "
                    "noise cannot be told from classes here: save the masks losslessly (PNG), "
                    "or give data.masks.palette (the colour of each class)"
                )
            _check_asked(num_classes, len(colours), shown, lossy, first)
            on_level = np.isin(
                rgb @ np.array([1 << 16, 1 << 8, 1]),
                np.array(colours, np.int64) @ np.array([1 << 16, 1 << 8, 1]),
            )
            moved = 1.0 - float(counts[on_level].sum()) / max(int(counts.sum()), 1)
            note = (f"masks: JPEG-compressed colour masks; each colour snapped to the nearest of "
                    f"{len(colours)} ({shown}), {moved:.1%} of pixels moved")  # fmt: skip
            return MaskSurvey("palette", max(len(colours), 2), [list(c) for c in colours],
                              snap=True, note=note)  # fmt: skip
        if near >= CLUSTERED and len(colours) <= MAX_LEVELS:
            raise ValueError(
                f"{first}: the colour masks hold {len(rgb)} colours, {near:.0%} of pixels "
                f"near {len(colours)} of them ({shown}): colours between the classes (resampled "
                "masks?); save masks with one colour per class (nearest-neighbour resizing), or "
                "give data.masks.palette (the colour of each class) and data.num_classes"
            )
    if len(rgb) >= IGNORE_INDEX:
        raise ValueError(
            f"{first}: the colour masks hold {len(rgb)} colours, too many for "
            "classes; give data.masks.palette (the colour of each class) and data.num_classes"
        )
    measured = [[int(c) for c in row] for row in rgb]
    return MaskSurvey("palette", max(len(measured), 2), measured)


def _grey_survey(
    tally: _Tally,
    lossy: bool,
    ignore_value: int | None,
    value_map: dict[int, int] | None,
    encoding: str,
    num_classes: int | None,
) -> MaskSurvey:
    values, counts = tally.grey_values()
    first = tally.first_grey
    radius = LEVEL_RADIUS * (257 if values.size and values.max() > 255 else 1)  # 16-bit masks
    if lossy or encoding == "binary" or values.size > MANY_VALUES:
        found = _clusters(values, counts, radius)
        levels = sorted(int(values[i]) for i in found.levels)
        exact = set(values.tolist()) <= set(levels)
        clustered = found.near >= CLUSTERED and len(levels) <= MAX_LEVELS
        if (lossy or encoding == "binary") and not exact:
            if not clustered:
                raise ValueError(
                    f"{first}: the {_cause(lossy)} hold {values.size} values that do not "
                    f"cluster near a few levels ({found.near:.0%} of pixels near the "
                    f"{len(levels)} most common); save the masks losslessly (PNG) with one value "
                    "per class"
                )
            return _snapped(values, counts, levels, lossy, ignore_value, value_map, encoding,
                            num_classes, first)  # fmt: skip
        if not lossy and clustered and values.size > 4 * max(len(levels), 1) and not value_map:
            raise ValueError(
                f"{first}: mask values look like {len(levels)} level(s) ({_listed(levels)}) with "
                f"{values.size - len(levels)} other values between them ({found.near:.0%} of "
                "pixels near the levels): resampled masks? Save masks with one value per class "
                "(nearest-neighbour resizing), set data.masks.encoding: binary to threshold two "
                "levels at their midpoint, or data.num_classes to take every value as a class"
            )
    present = set(values.tolist())
    if value_map:
        present = {int(value_map.get(v, v)) for v in present}
    if ignore_value is not None:
        present.discard(int(ignore_value))
    if present <= {0, 255} and 255 in present and not value_map:
        return MaskSurvey("binary", 2, None)
    top = max(present, default=0)
    if top >= IGNORE_INDEX or min(present, default=0) < 0:
        raise ValueError(
            f"{first}: mask values {_listed(sorted(present))} are not class ids "
            f"0..{IGNORE_INDEX - 1}; set data.masks.ignore_value (a void label such as 255), "
            "data.masks.value_map (raw value → class) or data.num_classes"
        )
    low = min(present, default=0)
    if low > 0 and not value_map:
        shifted = {v: k for k, v in enumerate(sorted(present))}
        raise ValueError(
            f"{first}: mask values {_listed(sorted(present))} start at {low}: class 0 would "
            "never occur (a class the model learns never to predict, with a Dice of 0 in the "
            f"mean); set data.masks.value_map to count from 0 (e.g. {shifted}), data.masks.ignore_value for a "
            "value that marks unlabelled pixels, or data.num_classes to keep the ids as they are "
            "(the Oxford-IIIT Pet trimaps: docs/data.md)"
        )
    return MaskSurvey("index", max(top + 1, 2), None)


def _snapped(
    values: np.ndarray,
    counts: np.ndarray,
    levels: list[int],
    lossy: bool,
    ignore_value: int | None,
    value_map: dict[int, int] | None,
    encoding: str,
    num_classes: int | None,
    first,
) -> MaskSurvey:
    """The survey of grey masks whose values go to the nearest of their levels when read."""
    classes = [v for v in levels if v != ignore_value]
    if len(classes) < 2 and not value_map:
        raise ValueError(
            f"{first}: the {_cause(lossy)} hold values {_listed(values.tolist())} in one cluster "
            f"(near {_listed(classes) or 'none'}): class ids this close do not survive JPEG "
            "compression; save the masks losslessly (PNG)"
        )
    if value_map:  # the user's levels
        mapping = {int(k): int(v) for k, v in value_map.items()}
        found = max(mapping.values(), default=0) + 1
        encoding = "index" if encoding == "auto" else encoding
    elif encoding == "binary" or (encoding == "auto" and len(classes) == 2):
        if len(classes) > 2:
            raise ValueError(
                f"{first}: data.masks.encoding is binary but the masks cluster at {len(classes)} "
                f"levels ({_listed(classes)}); set data.masks.value_map (level → class) or leave "
                "data.masks.encoding at auto"
            )
        low, high = (classes[0], classes[-1]) if len(classes) == 2 else (0, 255)
        mapping, found, encoding = {low: 0, high: 1}, 2, "binary"
    else:
        mapping = {v: k for k, v in enumerate(classes)}
        found, encoding = max(len(classes), 2), "index"
    targets = list(mapping) + ([int(ignore_value)] if ignore_value is not None else [])
    if not value_map:
        _check_asked(num_classes, max(len(classes), 1), _listed(classes), lossy, first)
    moved = float(counts[snap_to(values, targets) != values].sum()) / max(int(counts.sum()), 1)
    if encoding == "binary":
        low, high = sorted(k for k, v in mapping.items() if v in (0, 1))[:2]
        how = f"thresholded at {(low + high) / 2:g} (levels {low} and {high})"
    else:
        how = f"each value snapped to the nearest of {len(targets)} levels ({_listed(targets)})"
    note = f"masks: {_cause(lossy)}, {how}; {moved:.1%} of pixels moved"
    return MaskSurvey(encoding, max(found, 2), None, mapping, True, note)


__all__ = ["MaskSurvey", "survey_masks"]
