"""Grouped validation splits: frames of one sequence or slices of one volume stay on one side."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

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
    items: Sequence[Any],
    pattern: str = GROUP_PATTERN,
    val_groups: Sequence[str] | None = None,
    val_fraction: float = 0.2,
    seed: int = 0,
    key: Callable[[Any], str] | None = None,
) -> tuple[list[Any], list[Any], list[str]]:
    """Split image/mask pairs so that no group has images on both sides.

    Frames of one video or slices of one volume are near-duplicates of their neighbours; a split
    that scatters them over training and validation measures memory, not generalization. Here
    whole groups are held out: ``val_groups`` when given, else groups drawn in a seeded order until
    at least ``val_fraction`` of the images are held out (at least one group stays for training).

    ``items`` are image/mask pairs (grouped by :func:`group_of` their image) or anything ``key``
    names the group of (:class:`SampleRef`: a volume's slices form the volume's group).

    Returns:
        ``(train, val, held_out_groups)``.

    Raises:
        ValueError: Fewer than two groups, an unknown group in ``val_groups``, or no group left for
            training.
    """
    groups: dict[str, list[tuple[Path, Path]]] = {}
    for pair in items:
        name = key(pair) if key is not None else group_of(pair[0], pattern)
        groups.setdefault(name, []).append(pair)
    names = sorted(groups)
    if len(names) < 2:
        only = f" {names[0]!r}" if names else ""
        raise ValueError(
            f"{len(items)} images form one group{only} under data.group_pattern {pattern!r}; a "
            "grouped split needs at least two: set data.group_pattern to the part of the names "
            "that names a subject or sequence (its first group), or keep each subject's images in "
            "a subfolder of its own (the subfolder is the group), or use split: tail for slices "
            "of one volume"
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
