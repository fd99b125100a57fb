"""What a data folder holds: its image/mask pairs, found as public datasets ship them.

:func:`find_dataset` looks, in this order, at:

1. ``data.root`` naming a pairs list: a CSV with the columns ``image`` and ``mask`` (``label``
   too; optional ``split``: train, val or test, and ``group``), or MONAI's Decathlon datalist JSON
   (``training``, ``validation`` and ``test`` lists of ``{"image": …, "label": …}``);
2. the keys of :class:`Layout` (``data.files.images``, ``.masks``, ``.valid``): a folder, or a
   name pattern whose ``{stem}`` is the part image and mask share;
3. a ``dataset.json`` in the folder: nnU-Net's raw dataset (``imagesTr/case_0000.png``,
   ``labelsTr/case.png``, the labels and channel names) or a Decathlon datalist;
4. ``train/`` and ``val/`` folders, each holding one of the layouts below;
5. the folder itself: masks in a folder of their own beside the image folder (``images/`` +
   ``masks/``, ``train/`` + ``train_masks/``, ``…_Input/`` + ``…_GroundTruth/``, ``images/`` +
   ``annotations/trimaps/``) or beside their images (``x.tif`` + ``x_mask.tif``), at any depth:
   per-subject subfolders are groups for ``split: group``. Folders named ``test`` are the test
   split, never training data.

What is found is said in one line (``pairs: train/*.jpg ↔ train_masks/*_mask.gif, 5088 pairs``).
What cannot be told apart (two folders that could hold the masks, an image folder with two mask
folders) is a refusal that names what it saw and the key that settles it. Nothing here reads
pixels.
"""

from __future__ import annotations

import csv
import json
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, NamedTuple

from unet_data.pairs import (
    IMAGE_SUFFIXES,
    MASK_FORMS,
    Match,
    glob_of,
    is_image_file,
    is_mask_folder,
    pair_beside,
    pair_files,
    walk_images,
    words,
)

Unpaired = Literal["error", "skip"]
TRAIN_FOLDERS = ("train", "training")
VAL_FOLDERS = ("val", "valid", "validation")
#: Names shown of the files an ``unpaired: skip`` leaves out.
SHOWN = 3


@dataclass(frozen=True)
class Layout:
    """Where a data folder's images and masks are, for what :func:`find_dataset` cannot guess.

    Each of ``images``, ``masks`` and ``valid`` is a folder relative to ``data.root`` (the names
    in it are paired by the usual rules), or a name pattern in which ``{stem}`` is the part an
    image and its mask share, and ``*`` any text (folders too): ``training/images/{stem}_training.tif``.
    A pattern without a suffix matches any image suffix.

    Attributes:
        images: The images.
        masks: The masks.
        valid: Valid-region masks (a field of view): pixels outside, the file's low values, are
            ignored by the loss and the metrics.
        unpaired: ``error`` (default): an image without a mask, or a mask without an image, is an
            error naming it; ``skip``: they are left out, with a count and the first names.
    """

    images: str | None = None
    masks: str | None = None
    valid: str | None = None
    unpaired: Unpaired = "error"

    def __post_init__(self) -> None:
        if self.unpaired not in ("error", "skip"):
            raise ValueError(
                f"data.files.unpaired must be error or skip. Received: {self.unpaired!r}"
            )


class Pair(NamedTuple):
    """An image, its mask, its valid-region mask (if any) and its group (the subfolder of
    per-subject data, a pairs list's ``group``; ``None``: the file name tells it)."""

    image: Path
    mask: Path
    valid: Path | None = None
    group: str | None = None


@dataclass
class Found:
    """A data folder's pairs and what was said about them.

    Attributes:
        root: ``data.root``.
        splits: Pairs by split: ``all`` (the data module draws validation from it), or ``train``
            and ``val`` where the data says (folders, a datalist, a CSV's ``split``), and
            ``test`` where a list names test pairs.
        line: The one line saying what was paired.
        notes: Further lines (files skipped as unpaired).
        mask_forms: The masks' name forms (``_mask``): prediction sets such files aside.
        num_classes: Classes the dataset declares (nnU-Net's labels), else ``None``.
        ignore_value: The label value it declares ignored (nnU-Net's ``ignore``).
        class_names: The names of its classes.
    """

    root: Path
    splits: dict[str, list[Pair]]
    line: str
    notes: list[str] = field(default_factory=list)
    mask_forms: tuple[str, ...] = ()
    num_classes: int | None = None
    ignore_value: int | None = None
    class_names: list[str] | None = None

    @property
    def pairs(self) -> list[Pair]:
        """Every pair but the test split's."""
        return [p for name, ps in self.splits.items() if name != "test" for p in ps]


# -- the entry point ------------------------------------------------------------------------------
def find_dataset(root: str | Path, layout: Layout | None = None) -> Found:
    """The image/mask pairs of ``root`` (see the module's notes for where they are looked for).

    Raises:
        FileNotFoundError: A missing root, folder or listed file (named).
        ValueError: No pairs, a layout that can be read two ways, an unpaired file (unless
            ``layout.unpaired`` is ``skip``) or a list that cannot be read: one line naming the
            file or folder, what was seen and the key to set.
    """
    root, layout = Path(root), layout or Layout()
    if root.is_file():
        if root.suffix.lower() == ".csv":
            return _from_csv(root, layout)
        if root.suffix.lower() == ".json":
            return _from_json(root, _read_json(root), layout)
        raise ValueError(
            f"{root}: data.root is a file but not a pairs list (a .csv with the columns image "
            "and mask, or a Decathlon datalist .json)"
        )
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: no such data folder (data.root)")
    if layout.images or layout.masks:
        return _explicit(root, layout)
    if (root / "dataset.json").is_file():
        return _from_json(root / "dataset.json", _read_json(root / "dataset.json"), layout)
    splits = _split_folders(root, layout)
    if splits is not None:
        return splits
    found = _auto(root, root, layout, skip_test=True)
    return _with_valid(found, layout)


def find_test(root: str | Path, layout: Layout | None = None) -> list[Pair]:
    """The test split's pairs: a list's test entries, nnU-Net's ``imagesTs`` + ``labelsTs``, or
    the pairs of ``root/test`` (any folder whose name says test) in any layout.

    Raises:
        FileNotFoundError: No test split (the line says where it was looked for).
    """
    root, layout = Path(root), layout or Layout()
    listed = root.is_file() or (root / "dataset.json").is_file()
    if listed:
        found = find_dataset(root, layout)
        if found.splits.get("test"):
            return found.splits["test"]
        raise FileNotFoundError(f"{root}: the list names no labelled test pairs (train.py test)")
    folders = [d for d in sorted(root.iterdir()) if d.is_dir() and _is_test_folder(d)] \
        if root.is_dir() else []  # fmt: skip
    for folder in folders:
        try:
            return _auto(folder, root, layout, skip_test=False).splits["all"]
        except ValueError:
            continue
    test = root / "test"
    raise FileNotFoundError(
        f"{test}: no test split (train.py test reads the image/mask pairs of {test}/, e.g. "
        f"{test}/images/ and {test}/masks/, in any layout the training data may have)"
    )


def find_pairs(folder: str | Path) -> list[tuple[Path, Path]]:
    """Image/mask pairs of a data folder as :func:`find_dataset` finds them, every split but the
    test split together, as ``(image, mask)``.

    Raises:
        FileNotFoundError, ValueError: As :func:`find_dataset`.
    """
    return [(p.image, p.mask) for p in find_dataset(folder).pairs]


# -- patterns and folders given as keys -------------------------------------------------------------
class _Spec(NamedTuple):
    files: list[Path]
    stem: Callable[[Path], str | None]
    pattern: bool  # a name pattern with {stem} (else a folder: names paired by the forms)
    where: Path


def _spec(root: Path, text: str, key: str) -> _Spec:
    """The files a key names: a folder (all images under it) or a ``{stem}`` name pattern."""
    text = text.strip().rstrip("/")
    if "{stem}" not in text:
        folders = _folders(root, text, key)
        files = [f for d in folders for f in walk_images(d)]
        return _Spec(files, lambda p: p.stem, False, folders[0])
    folder, _, name = text.rpartition("/")
    if "/" in name or name.count("{stem}") != 1:
        raise ValueError(f"data.files.{key}: {{stem}} once, in the file name. Received: {text!r}")
    head, tail = name.split("{stem}")
    tail_re = ".*".join(re.escape(t) for t in tail.split("*"))
    if not tail.lower().endswith(IMAGE_SUFFIXES):
        tail_re += r"\.[A-Za-z0-9]+"
    regex = re.compile(
        ".*".join(re.escape(t) for t in head.split("*")) + "(?P<stem>.+)" + tail_re + "$",
        re.IGNORECASE,
    )
    folders = _folders(root, folder, key)
    files = [f for d in folders for f in sorted(d.iterdir()) if is_image_file(f)
             and regex.match(f.name)]  # fmt: skip

    def stem(path: Path) -> str | None:
        match = regex.match(path.name)
        return match.group("stem") if match else None

    if not files:
        raise ValueError(
            f"data.files.{key}: no image file in {folders[0]} matches {name!r} "
            f"(e.g. {_first_names(folders[0])})"
        )
    return _Spec(files, stem, True, folders[0])


def _folders(root: Path, text: str, key: str) -> list[Path]:
    if not text or text == ".":
        return [root]
    if any(c in text for c in "*?["):
        found = sorted(d for d in root.glob(text) if d.is_dir())
        if not found:
            raise FileNotFoundError(f"{root / text}: no folder matches (data.files.{key})")
        return found
    folder = root / text
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: no such folder (data.files.{key})")
    return [folder]


def _first_names(folder: Path) -> str:
    names = [f.name for f in sorted(folder.iterdir()) if is_image_file(f)][:2] \
        if folder.is_dir() else []  # fmt: skip
    return ", ".join(names) or "no images there"


def _explicit(root: Path, layout: Layout) -> Found:
    """Pairs of the folders or name patterns that ``data.files`` gives."""
    skip = {f for key in ("valid",) if getattr(layout, key)
            for f in _spec(root, getattr(layout, key), key).files}  # fmt: skip
    masks = _spec(root, layout.masks, "masks") if layout.masks else None
    if layout.images:
        images = _spec(root, layout.images, "images")
    else:  # every other image file under data.root (outside folders named as masks)
        taken = skip | set(masks.files if masks else [])
        files = _prefer(root, [f for f in walk_images(root, _is_test_folder) if f not in taken],
                        masky=False)  # fmt: skip
        images = _Spec(files, lambda p: p.stem, False, root)
    image_files = [f for f in images.files if masks is None or f not in set(masks.files)]
    if masks is not None:
        forms = ("",) if masks.pattern else MASK_FORMS
        match = pair_files(image_files, masks.files, forms, images.stem, masks.stem)
        if not layout.images:  # images were "everything else": only folders that took part
            match = _only_taking_part(match)
    else:
        match = pair_beside(image_files)
        if not match.pairs:
            others = [f for f in walk_images(root, _is_test_folder)
                      if f not in set(image_files) and f not in skip]  # fmt: skip
            others = _prefer(root, others, masky=True)
            match = pair_files(image_files, others, MASK_FORMS, images.stem)
            match = match._replace(lone_masks=[])
    if not match.pairs:
        given = ", ".join(f"data.files.{k}={getattr(layout, k)!r}" for k in ("images", "masks")
                          if getattr(layout, k))  # fmt: skip
        raise ValueError(
            f"{root}: {given} pair no images with masks (images such as "
            f"{', '.join(p.name for p in image_files[:2]) or 'none'}; masks such as "
            f"{', '.join(p.name for p in (masks.files if masks else [])[:2]) or 'none'}); a "
            "pattern's {stem} is the part an image's and its mask's names share"
        )
    notes: list[str] = []
    pairs = _settle(match, layout.unpaired, notes)
    shown = _describe(match, root).split(" ↔ ")
    if images.pattern:
        shown[0] = str(layout.images)
    if masks is not None and masks.pattern:
        shown[1] = str(layout.masks)
    line = f"pairs: {' ↔ '.join(shown)}, {len(pairs)} pairs"
    found = Found(root, {"all": _grouped(pairs, None)}, line, notes,
                  _forms(match))  # fmt: skip
    found = _with_valid(found, layout, images.stem)
    found.line += _subfolders(found.splits["all"])
    return found


def _prefer(root: Path, files: list[Path], masky: bool) -> list[Path]:
    """The files inside (``masky``) or outside folders named as masks, where there are any: the
    other side of a pairing of which one key is given."""

    def named(f: Path) -> bool:
        return any(is_mask_folder(part) for part in f.relative_to(root).parts[:-1])

    chosen = [f for f in files if named(f) == masky]
    return chosen or files


def _only_taking_part(match: Match) -> Match:
    folders = {i.parent for i, _ in match.pairs}
    return match._replace(lone_images=[p for p in match.lone_images if p.parent in folders])


# -- the folder as it ships -------------------------------------------------------------------------
def _is_test_folder(path: Path) -> bool:
    return bool({"test", "testing"} & set(words(path.name)))


class _Candidate(NamedTuple):
    match: Match
    image_dir: Path | None  # None: masks beside their images
    mask_dir: Path | None


def _candidates(folder: Path, files: list[Path]) -> tuple[list[_Candidate], list[str]]:
    """Every way ``files`` pair up: each image folder with each mask folder beside it (by name,
    :func:`~unet_data.pairs.is_mask_folder`), and masks beside their images."""
    under: dict[Path, list[Path]] = {}
    for f in files:
        for d in f.relative_to(folder).parents:
            if d != Path("."):
                under.setdefault(folder / d, []).append(f)
    children: dict[Path, list[Path]] = {}
    for d in sorted(under):
        children.setdefault(d.parent, []).append(d)
    found: list[_Candidate] = []
    problems: list[str] = []
    for kids in children.values():
        masks = [d for d in kids if is_mask_folder(d.name)]
        for image_dir in (d for d in kids if d not in masks):
            for mask_dir in masks:
                try:
                    match = pair_files(under[image_dir], under[mask_dir])
                except ValueError as err:
                    problems.append(str(err))
                    continue
                if match.pairs:
                    found.append(_Candidate(match, image_dir, mask_dir))
    beside = pair_beside(files)
    if beside.pairs:
        found.append(_Candidate(beside, None, None))
    return sorted(found, key=lambda c: -len(c.match.pairs)), problems


def _auto(folder: Path, root: Path, layout: Layout, skip_test: bool) -> Found:
    """The pairs of ``folder`` as it ships (see the module's notes)."""
    files = walk_images(folder, _is_test_folder if skip_test else None)
    if not files:
        raise ValueError(
            f"{folder}: no images ({', '.join(IMAGE_SUFFIXES)}) in it or its subfolders (data.root)"
        )
    candidates, problems = _candidates(folder, files)
    if not candidates:
        if problems:
            raise ValueError(problems[0])
        raise ValueError(_nothing_paired(folder, root, files))
    accepted = [candidates[0]]
    for other in candidates[1:]:
        clash = next((a for a in accepted if _overlap(a, other)), None)
        if clash is None:
            accepted.append(other)
            continue
        shared_images = {i for i, _ in clash.match.pairs} & {i for i, _ in other.match.pairs}
        key = "data.files.masks" if shared_images else "data.files.images"
        raise ValueError(
            f"{folder}: the images pair two ways: {_describe(clash.match, root)} "
            f"({len(clash.match.pairs)} pairs) and {_describe(other.match, root)} "
            f"({len(other.match.pairs)} pairs); name the one that holds the masks with {key}"
        )
    _refuse_unused_mask_folders(accepted, files, root)
    notes: list[str] = []
    pairs: list[Pair] = []
    for cand in accepted:
        pairs.extend(_grouped(_settle(cand.match, layout.unpaired, notes), cand.image_dir))
    described = "; ".join(_describe(c.match, root) for c in accepted)
    line = f"pairs: {described}, {len(pairs)} pairs{_subfolders(pairs)}"
    forms = tuple(dict.fromkeys(f for c in accepted for f in _forms(c.match)))
    return Found(root, {"all": pairs}, line, notes, forms)


def _overlap(a: _Candidate, b: _Candidate) -> bool:
    images = {i for i, _ in a.match.pairs}
    masks = {m for _, m in a.match.pairs}
    return any(i in images or m in masks for i, m in b.match.pairs)


def _refuse_unused_mask_folders(accepted: list[_Candidate], files: list[Path], root: Path) -> None:
    """A folder beside the chosen masks whose name says masks but that pairs with nothing (DRIVE:
    ``mask/`` pairs by ``_mask``, ``1st_manual/`` holds the vessels): which holds the labels
    cannot be guessed."""
    used = {c.mask_dir for c in accepted}
    for cand in accepted:
        if cand.image_dir is None:
            continue
        for other in sorted(cand.image_dir.parent.iterdir()):
            if not other.is_dir() or other in used or not is_mask_folder(other.name):
                continue
            inside = [f for f in files if other in f.parents]
            if not inside:
                continue
            rel = other.relative_to(root).as_posix()
            image = cand.match.pairs[0][0]
            images = image.parent.relative_to(root).as_posix()
            raise ValueError(
                f"{root}: found {_describe(cand.match, root)} ({len(cand.match.pairs)} pairs), "
                f"but {rel}/ ({len(inside)} images such as {inside[0].name}) also looks like "
                "masks and pairs with none of them; name the masks with data.files.masks (a "
                "folder; where the names differ beyond a shared stem, name patterns such as "
                f"data.files.images: {images}/{{stem}}{_tail(image)} and data.files.masks: "
                f"{rel}/{{stem}}{_tail(inside[0])}), and a field-of-view folder with "
                "data.files.valid"
            )


def _tail(path: Path) -> str:
    """The part of a file name after its first ``_``-separated word (``21_manual1.gif`` →
    ``_manual1.gif``), for an example pattern."""
    name = path.name
    return name[name.index("_") :] if "_" in name else path.suffix


def _nothing_paired(folder: Path, root: Path, files: list[Path]) -> str:
    seen: dict[Path, int] = {}
    for f in files:
        seen[f.parent] = seen.get(f.parent, 0) + 1
    listed = ", ".join(f"{(d.relative_to(root).as_posix() if d != root else '.')}/ ({n})"
                       for d, n in list(seen.items())[:4])  # fmt: skip
    return (
        f"{folder}: no image/mask pairs found among the images in {listed}; expected images/ and "
        "masks/ (or X/ and X_masks/, …_GroundTruth/, annotations/), masks beside their images "
        f"(x.png and x_mask.png; mask names: {', '.join(f or 'the same stem' for f in MASK_FORMS)}"
        "), a pairs CSV or a dataset.json (data.root); or name them with data.files.images and "
        "data.files.masks"
    )


def _split_folders(root: Path, layout: Layout) -> Found | None:
    """``train/`` and ``val/`` folders that each hold pairs: the splits as given."""
    names = {d.name.lower(): d for d in root.iterdir() if d.is_dir()}
    train = next((names[n] for n in TRAIN_FOLDERS if n in names), None)
    val = next((names[n] for n in VAL_FOLDERS if n in names), None)
    if train is None or val is None:
        return None
    try:
        found = {"train": _auto(train, root, layout, False), "val": _auto(val, root, layout, False)}
    except ValueError:
        return None  # not a layout each: the folder as a whole is one
    found = {k: _with_valid(f, layout) for k, f in found.items()}
    line = (f"pairs: {found['train'].line.removeprefix('pairs: ')} (training); "
            f"{found['val'].line.removeprefix('pairs: ')} (validation)")  # fmt: skip
    return Found(root, {k: f.splits["all"] for k, f in found.items()}, line,
                 found["train"].notes + found["val"].notes,
                 found["train"].mask_forms)  # fmt: skip


# -- what is said -------------------------------------------------------------------------------------
def _forms(match: Match) -> tuple[str, ...]:
    return (match.form,) if match.form else ()


def _describe(match: Match, root: Path) -> str:
    images = [i for i, _ in match.pairs]
    masks = [m for _, m in match.pairs]
    return f"{glob_of(images, root)} ↔ {glob_of(masks, root, match.form)}"


def _subfolders(pairs: Sequence[Pair]) -> str:
    groups = {p.group for p in pairs if p.group is not None}
    return f" in {len(groups)} subfolders (the groups of split: group)" if len(groups) > 1 else ""


def _grouped(pairs: list[tuple[Path, Path]], base: Path | None) -> list[Pair]:
    """Pairs whose group is the image's subfolder, where the images lie in more than one."""
    parents = {i.parent for i, _ in pairs}
    if len(parents) < 2:
        return [Pair(i, m) for i, m in pairs]
    if base is None:
        base = Path(os.path.commonpath([str(p) for p in parents]))
    return [Pair(i, m, None, i.parent.relative_to(base).as_posix()) for i, m in pairs]


def _settle(match: Match, unpaired: Unpaired, notes: list[str]) -> list[tuple[Path, Path]]:
    """The pairs of ``match``; its unpaired files an error naming the first, or skipped with a
    note (``unpaired: skip``)."""
    lone_images, lone_masks = match.lone_images, match.lone_masks
    if not lone_images and not lone_masks:
        return match.pairs
    masks_at = _common([m for _, m in match.pairs] or lone_masks)
    images_at = _common([i for i, _ in match.pairs] or lone_images)
    if unpaired == "error":
        how = (f"{len(lone_images)} image(s) without a mask, {len(lone_masks)} mask(s) without "
               "an image; data.files.unpaired: skip leaves them out")  # fmt: skip
        if lone_images:
            p = lone_images[0]
            raise ValueError(
                f"{p}: no mask with the stem {p.stem!r} in {masks_at} "
                f"(expected {p.stem}{match.form}.*; {how})"
            )
        m = lone_masks[0]
        stem = m.stem[: len(m.stem) - len(match.form)] if match.form else m.stem
        raise ValueError(f"{m}: no image with the stem {stem!r} in {images_at} ({how})")
    said = []
    for files, what in ((lone_images, "image(s) without a mask"),
                        (lone_masks, "mask(s) without an image")):  # fmt: skip
        if files:
            shown = ", ".join(f.name for f in files[:SHOWN]) + (", …" if len(files) > SHOWN else "")
            said.append(f"{len(files)} {what} ({shown})")
    notes.append("unpaired: skipped " + " and ".join(said) + " (data.files.unpaired: skip)")
    return match.pairs


def _common(files: Sequence[Path]) -> Path:
    return Path(os.path.commonpath([str(f.parent) for f in files])) if files else Path(".")


# -- valid regions ---------------------------------------------------------------------------------
def _with_valid(
    found: Found, layout: Layout, image_stem: Callable[[Path], str | None] | None = None
) -> Found:
    """Each pair given its valid-region mask (``data.files.valid``), matched to the image by
    the name pattern's ``{stem}`` or by the image's own stem and the mask name forms (DRIVE's
    ``21_training.tif`` ↔ ``mask/21_training_mask.gif``)."""
    if not layout.valid:
        return found
    spec = _spec(found.root if found.root.is_dir() else found.root.parent, layout.valid, "valid")
    for split, pairs in found.splits.items():
        images = [p.image for p in pairs]
        forms = ("",) if spec.pattern else MASK_FORMS
        tries = [pair_files(images, spec.files, forms, mask_stem=spec.stem)]
        if image_stem is not None:
            tries.append(pair_files(images, spec.files, forms, image_stem, spec.stem))
        match = max(tries, key=lambda m: len(m.pairs))
        if match.lone_images and layout.unpaired == "error":
            p = match.lone_images[0]
            raise ValueError(
                f"{p}: no valid-region mask in {spec.where} (data.files.valid; "
                f"{len(match.lone_images)} image(s) without one)"
            )
        valid = dict(match.pairs)
        if match.lone_images:
            found.notes.append(
                f"unpaired: skipped {len(match.lone_images)} image(s) without a valid-region mask"
            )
        found.splits[split] = [p._replace(valid=valid[p.image]) for p in pairs if p.image in valid]
        if split in ("all", "train"):
            found.line += f", valid regions {glob_of(list(valid.values()), found.root, match.form)}"
    return found


# -- lists ----------------------------------------------------------------------------------------------
def _read_json(path: Path) -> dict:
    try:
        meta = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise ValueError(f"{path}: cannot read it as JSON ({err})") from None
    if not isinstance(meta, dict):
        raise ValueError(f"{path}: expected a JSON object")
    return meta


def _from_json(path: Path, meta: dict, layout: Layout) -> Found:
    if "channel_names" in meta or "file_ending" in meta:
        return _with_valid(_nnunet(path.parent, meta, layout), layout)
    if isinstance(meta.get("training"), list):
        return _with_valid(_datalist(path, meta, layout), layout)
    raise ValueError(
        f"{path}: neither an nnU-Net dataset.json (channel_names, labels, file_ending) nor a "
        f"Decathlon datalist (a training list of image/label entries); keys found: "
        f"{', '.join(list(meta)[:8])}"
    )


def _listed_file(base: Path, value: object, where: str) -> Path:
    if isinstance(value, list):
        raise ValueError(
            f"{where}: an image of {len(value)} files (one per channel); one file per image is read"
        )
    if not isinstance(value, str) or not value:
        raise ValueError(f"{where}: expected a file name. Received: {value!r}")
    path = Path(value) if Path(value).is_absolute() else base / value
    if not path.is_file():
        raise FileNotFoundError(f"{where}: {path}: no such file")
    return path


def _from_lists(path: Path, splits: dict[str, list[Pair]], what: str, layout: Layout) -> Found:
    if not splits.get("train") and not splits.get("all"):
        raise ValueError(f"{path}: the list holds no training pairs")
    if "train" in splits and not splits.get("val"):
        splits["all"] = splits.pop("train")
        splits.pop("val", None)
    counts = ", ".join(f"{k} {len(v)}" for k, v in splits.items() if v)
    line = f"pairs: {path.name} ({what}), {counts}"
    return Found(path if path.is_dir() else path.parent, splits, line)


def _datalist(path: Path, meta: dict, layout: Layout) -> Found:
    """MONAI's Decathlon datalist: ``training`` (``validation``, ``test``) lists of
    ``{"image": …, "label": …}``, paths relative to the file's folder."""
    splits: dict[str, list[Pair]] = {}
    for key, split in (("training", "train"), ("validation", "val"), ("test", "test")):
        items = meta.get(key) or []
        out = []
        for k, item in enumerate(items):
            where = f"{path}: {key}[{k}]"
            if split == "test" and (not isinstance(item, dict) or "label" not in item):
                continue  # unlabelled test images: nothing to score
            if not isinstance(item, dict) or "image" not in item or "label" not in item:
                raise ValueError(f"{where}: expected an object with image and label")
            out.append(Pair(_listed_file(path.parent, item["image"], where),
                            _listed_file(path.parent, item["label"], where)))  # fmt: skip
        splits[split] = out
    return _from_lists(path, splits, "Decathlon datalist", layout)


def _from_csv(path: Path, layout: Layout) -> Found:
    """A pairs CSV: ``image`` and ``mask`` (or ``label``) columns, optional ``split`` and
    ``group``; paths relative to the file's folder."""
    try:
        with path.open(newline="") as f:
            rows = list(csv.DictReader(f))
            columns = [c.strip().lower() for c in (rows[0].keys() if rows else [])]
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise ValueError(f"{path}: cannot read it as CSV ({err})") from None
    mask_col = "mask" if "mask" in columns else "label"
    if "image" not in columns or mask_col not in columns:
        raise ValueError(
            f"{path}: a pairs CSV needs a header with the columns image and mask "
            f"(found: {', '.join(columns) or 'no rows'})"
        )
    names = {"train": "train", "training": "train", "val": "val", "valid": "val",
             "validation": "val", "test": "test", "": "train"}  # fmt: skip
    splits: dict[str, list[Pair]] = {"train": [], "val": [], "test": []}
    for line, row in enumerate(rows, start=2):
        row = {(k or "").strip().lower(): (v or "").strip() for k, v in row.items()}
        where = f"{path}:{line}"
        split = names.get(row.get("split", "").lower())
        if split is None:
            raise ValueError(
                f"{where}: split must be train, val or test. Received: {row['split']!r}"
            )
        splits[split].append(Pair(_listed_file(path.parent, row["image"], where),
                                  _listed_file(path.parent, row[mask_col], where), None,
                                  row.get("group") or None))  # fmt: skip
    return _from_lists(path, {k: v for k, v in splits.items() if v}, "image,mask", layout)


def _nnunet(root: Path, meta: dict, layout: Layout) -> Found:
    """nnU-Net's raw dataset: ``imagesTr/{case}_0000{ending}`` ↔ ``labelsTr/{case}{ending}``,
    the classes and an ``ignore`` label from ``labels``, test pairs from ``imagesTs`` +
    ``labelsTs``."""
    where = root / "dataset.json"
    ending = str(meta.get("file_ending", ".png"))
    if not ending.lower().endswith(IMAGE_SUFFIXES):
        raise ValueError(
            f"{where}: file_ending {ending!r}; 2-D image files are read "
            f"({', '.join(IMAGE_SUFFIXES)}), not volumes such as .nii.gz"
        )
    labels = meta.get("labels")
    if not isinstance(labels, dict) or not labels:
        raise ValueError(f"{where}: labels must map each class name to its value")
    ignore, classes = None, {}
    for name, value in labels.items():
        if not isinstance(value, int) or isinstance(value, bool):
            raise ValueError(
                f"{where}: label {name!r} is {value!r}; region-based labels (lists) are not read"
            )
        if str(name).lower() == "ignore":
            ignore = value
        else:
            classes[value] = str(name)
    if sorted(classes) != list(range(len(classes))):
        raise ValueError(
            f"{where}: label values {sorted(classes)} are not 0..{len(classes) - 1} (nnU-Net's "
            "own rule: consecutive, background 0)"
        )
    channels = [str(v) for _, v in sorted((meta.get("channel_names") or {}).items(),
                                          key=lambda kv: int(kv[0]))]  # fmt: skip

    def cases(images: Path, labels_dir: Path | None, split: str) -> list[Pair]:
        pattern = re.compile(r"(.+)_(\d{4})" + re.escape(ending) + "$", re.IGNORECASE)
        found: dict[str, list[Path]] = {}
        for f in sorted(images.iterdir()) if images.is_dir() else []:
            match = pattern.match(f.name)
            if match and is_image_file(f):
                found.setdefault(match.group(1), []).append(f)
        many = next(((c, fs) for c, fs in found.items() if len(fs) > 1), None)
        if many is not None:
            raise ValueError(
                f"{images}: case {many[0]!r} has {len(many[1])} channel files "
                f"({', '.join(f.name for f in many[1][:3])}); one file per case is read (an RGB "
                "image holds its three channels in one file, as nnU-Net's natural images do)"
            )
        if labels_dir is None:
            return []
        label_files = [f for f in sorted(labels_dir.iterdir()) if is_image_file(f)]
        match = pair_files([fs[0] for fs in found.values()], label_files, ("",),
                           lambda p: pattern.match(p.name).group(1) if pattern.match(p.name)
                           else None)  # fmt: skip
        return [Pair(i, m) for i, m in _settle(match, layout.unpaired, notes)]

    notes: list[str] = []
    train = cases(root / "imagesTr", root / "labelsTr", "train")
    if not train:
        raise ValueError(
            f"{root}: no nnU-Net training cases (imagesTr/<case>_0000{ending} with "
            f"labelsTr/<case>{ending})"
        )
    splits = {"all": train}
    if (root / "labelsTs").is_dir():
        splits["test"] = cases(root / "imagesTs", root / "labelsTs", "test")
    names = [classes[k] for k in sorted(classes)]
    line = (f"pairs: imagesTr/*_0000{ending} ↔ labelsTr/*{ending}, {len(train)} pairs "
            f"(nnU-Net dataset.json: labels {', '.join(names)}"
            + (f", ignore {ignore}" if ignore is not None else "")
            + (f"; channels {', '.join(channels)}" if channels else "") + ")")  # fmt: skip
    return Found(root, splits, line, notes, (), len(classes), ignore, names)


__all__ = ["Found", "Layout", "Pair", "find_dataset", "find_pairs", "find_test"]
