"""Image files and image/mask pairs: the suffixes every reader accepts, and the rules that pair
masks with their images as public datasets name them.

A mask is named after its image: the same stem, or the stem plus one of :data:`MASK_FORMS`
(``x.jpg`` ↔ ``x_mask.gif``, ``ISIC_1.jpg`` ↔ ``ISIC_1_segmentation.png``). Masks lie in a
folder of their own (:func:`pair_files`: ``images/`` + ``masks/``, ``train/`` + ``train_masks/``,
their subfolders matched by name) or beside their images (:func:`pair_beside`: ``x.tif`` and
``x_mask.tif`` in one folder, per-subject folders too). One form is chosen per pairing, the one
that pairs the most files, so the pairing can be said in one line (:func:`glob_of`).
:func:`split_masks` sets aside the masks among files given for prediction. Listing and pairing
files reads no pixels.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import NamedTuple

#: Image files every reader accepts (compared in lower case).
IMAGE_SUFFIXES = (".png", ".tif", ".tiff", ".jpg", ".jpeg", ".bmp", ".gif", ".webp")
#: How a mask's stem is formed from its image's (compared in lower case; ``""``: the same stem).
MASK_FORMS = ("", "_mask", "_masks", "_label", "_seg", "_segmentation", "_gt", "_manual1")
# Words that name a folder of masks (a part of the name, in lower case), and "gt" as a whole word.
_MASK_WORDS = ("mask", "label", "annot", "truth", "seg", "manual", "trimap", "target")


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


def walk_images(folder: Path, skip: Callable[[Path], bool] | None = None) -> list[Path]:
    """Image files under ``folder`` at any depth, sorted; hidden folders (``.git``, a cache),
    macOS's ``__MACOSX`` and the folders ``skip`` names are not entered."""
    found: list[Path] = []
    for current, dirs, files in os.walk(folder):
        here = Path(current)
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and d != "__MACOSX"
                         and not (skip is not None and skip(here / d)))  # fmt: skip
        found.extend(here / f for f in sorted(files) if is_image_file(here / f))
    return found


def words(name: str) -> list[str]:
    """The words of a folder name in lower case (``ISIC2018_Task1_Training_GroundTruth`` →
    ``isic2018, task1, training, ground, truth``; ``gtFine`` → ``gt, fine``)."""
    return re.findall(r"[a-z0-9]+", re.sub(r"([a-z])([A-Z])", r"\1_\2", name).lower())


def is_mask_folder(name: str) -> bool:
    """A folder whose name says it holds masks (``masks``, ``train_masks``, ``labelsTr``,
    ``annotations``, ``…_GroundTruth``, ``1st_manual``, ``SegmentationClass``, ``gtFine``)."""
    parts = words(name)
    return "gt" in parts or any(w in part for part in parts for w in _MASK_WORDS)


class Match(NamedTuple):
    """A pairing: the mask name form (one of :data:`MASK_FORMS`), the pairs, and the files on
    either side left without a partner."""

    form: str
    pairs: list[tuple[Path, Path]]
    lone_images: list[Path]
    lone_masks: list[Path]


Stem = Callable[[Path], "str | None"]


def _stem(path: Path) -> str:
    return path.stem


def _keyed(files: Iterable[Path], stem: Stem, by_folder: bool) -> dict[str, Path]:
    """Files by key: the stem in lower case, or with ``by_folder`` the folder below the files'
    common folder and the stem; files whose ``stem`` is ``None`` are left out.

    Raises:
        ValueError: Two files with one key (``x.png`` and ``x.jpg`` in one folder).
    """
    files = [f for f in files if stem(f) is not None]
    base = Path(os.path.commonpath([f.parent for f in files])) if files else Path()
    keyed: dict[str, Path] = {}
    for f in files:
        key = str(stem(f)).lower()
        if by_folder:
            key = f"{f.parent.relative_to(base).as_posix()}/{key}"
        if key in keyed:
            raise ValueError(f"{f}: same name as {keyed[key]} (one image or mask per name)")
        keyed[key] = f
    return keyed


def _unique_stems(files: Iterable[Path], stem: Stem) -> bool:
    seen: set[str] = set()
    for f in files:
        s = stem(f)
        if s is None:
            continue
        if s.lower() in seen:
            return False
        seen.add(s.lower())
    return True


def pair_files(
    images: Sequence[Path],
    masks: Sequence[Path],
    forms: Sequence[str] = MASK_FORMS,
    image_stem: Stem = _stem,
    mask_stem: Stem = _stem,
) -> Match:
    """Pair ``images`` with ``masks`` kept apart (two folders, their subfolders matched by name).

    A mask's key is its image's plus a form of ``forms``; the form that pairs the most wins (the
    same stem first, on a tie). Keys are stems, or, where one side repeats a stem (``a/1.png``
    and ``b/1.png``), the path below each side's common folder with the stem.

    Args:
        images: Image files.
        masks: Mask files.
        forms: The mask name forms to try.
        image_stem: The key stem of an image (a name pattern's ``{stem}``; ``None``: not one).
        mask_stem: The key stem of a mask.

    Raises:
        ValueError: Two files with one key.
    """
    by_folder = not (_unique_stems(images, image_stem) and _unique_stems(masks, mask_stem))
    ikeys = _keyed(images, image_stem, by_folder)
    mkeys = _keyed(masks, mask_stem, by_folder)
    best: Match | None = None
    for form in forms:
        pairs = [(p, mkeys[k + form]) for k, p in ikeys.items() if k + form in mkeys]
        if best is None or len(pairs) > len(best.pairs):
            used = {m for _, m in pairs}
            paired = {i for i, _ in pairs}
            best = Match(form, pairs, [p for p in ikeys.values() if p not in paired],
                         [m for m in mkeys.values() if m not in used])  # fmt: skip
    assert best is not None
    return best


def pair_beside(files: Sequence[Path], forms: Sequence[str] = MASK_FORMS[1:]) -> Match:
    """Pair masks that lie beside their images (``x.tif`` and ``x_mask.tif`` in one folder).

    The form that pairs the most wins; only folders that hold at least one pair take part (an
    image in another folder is no image without a mask).
    """
    folders: dict[Path, dict[str, Path]] = {}
    for f in files:
        folders.setdefault(f.parent, {})[f.stem.lower()] = f
    best: Match | None = None
    for form in forms:
        pairs: list[tuple[Path, Path]] = []
        lone_images: list[Path] = []
        lone_masks: list[Path] = []
        for stems in folders.values():
            masks = {s: p for s, p in stems.items() if s.endswith(form) and len(s) > len(form)}
            found = [
                (stems[s[: -len(form)]], p) for s, p in masks.items() if s[: -len(form)] in stems
            ]
            if not found:
                continue
            pairs.extend(found)
            with_mask = {i for i, _ in found}
            lone_images.extend(p for s, p in stems.items() if s not in masks and p not in with_mask)
            lone_masks.extend(p for s, p in masks.items() if s[: -len(form)] not in stems)
        if pairs and (best is None or len(pairs) > len(best.pairs)):
            best = Match(form, sorted(pairs), lone_images, lone_masks)
    return best if best is not None else Match("", [], [], [])


def split_masks(
    paths: Sequence[Path], forms: Sequence[str] = MASK_FORMS[1:]
) -> tuple[list[Path], list[Path], list[str]]:
    """Files given for prediction without the masks among them: a file named as a mask of another
    file beside it (``x_mask.tif`` beside ``x.tif``, by ``forms``).

    Returns:
        The images, the masks set aside, and the name forms found (``*_mask.tif``).
    """
    stems_of: dict[Path, set[str]] = {}
    for p in paths:
        stems_of.setdefault(p.parent, set()).add(p.stem.lower())
    images, masks, found = [], [], []
    for p in paths:
        stem = p.stem.lower()
        form = next((f for f in forms if f and stem.endswith(f) and len(stem) > len(f)
                     and stem[: -len(f)] in stems_of[p.parent]), None)  # fmt: skip
        if form is None:
            images.append(p)
            continue
        masks.append(p)
        shown = f"*{form}{p.suffix.lower()}"
        if shown not in found:
            found.append(shown)
    return images, masks, found


def glob_of(files: Sequence[Path], root: Path, form: str = "") -> str:
    """The files as one pattern relative to ``root`` (``train_masks/*_mask.gif``,
    ``kaggle_3m/*/*.tif``), for the line that says what was paired."""
    if not files:
        return "(none)"
    parents = {f.parent for f in files}
    common = Path(os.path.commonpath([str(p) for p in parents]))
    try:
        rel = common.relative_to(root).as_posix()
    except ValueError:
        rel = common.as_posix()
    depths = {len(p.relative_to(common).parts) for p in parents}
    middle = "*/" * depths.pop() if len(depths) == 1 else "**/"
    suffixes = sorted({f.suffix.lower() for f in files})
    ext = suffixes[0] if len(suffixes) == 1 else ".*"
    prefix = "" if rel in ("", ".") else f"{rel}/"
    return f"{prefix}{middle}*{form}{ext}"


__all__ = [
    "IMAGE_SUFFIXES",
    "MASK_FORMS",
    "Match",
    "glob_of",
    "image_files",
    "is_image_file",
    "is_mask_folder",
    "pair_beside",
    "pair_files",
    "split_masks",
    "walk_images",
    "words",
]
