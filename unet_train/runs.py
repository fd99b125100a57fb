"""Run folders claimed atomically, so that runs started together never share one.

Lightning's CSV and TensorBoard loggers pick ``version_<n>`` as one more than the highest folder
they see, and create it only when they first write. Two runs started together in one folder (a
parallel sweep) see the same folders and pick the same number; the second then writes into the
first one's ``metrics.csv``. :func:`claim_version` closes that gap the way ``mkdir`` allows: it
creates ``version_<n>`` in every logger's folder with :func:`os.mkdir`, which exactly one process
can do, and a number another run holds already is passed over for the next one.

Only the process that writes the run claims it. The other processes of a multi-process run
(``LOCAL_RANK``, ``NODE_RANK``, ... above 0, as Lightning's launcher and SLURM or ``torchrun``
set them) claim nothing: Lightning gives them rank zero's folder (``Trainer.log_dir`` is
broadcast) and their loggers write nothing.

Standard library only (no logger is built here), so a process that only claims starts at once.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable
from pathlib import Path

#: Environment variables by which launchers (Lightning's, ``torchrun``, SLURM, LSF) give a process
#: its place in a multi-process run; any of them above 0 marks a process that does not write.
RANK_VARIABLES = (
    "RANK",
    "LOCAL_RANK",
    "NODE_RANK",
    "GROUP_RANK",
    "SLURM_PROCID",
    "JSM_NAMESPACE_RANK",
)


def writes_the_run() -> bool:
    """Whether this process is rank zero of its run (or the run has one process)."""
    for name in RANK_VARIABLES:
        value = os.environ.get(name, "0").strip() or "0"
        if value.isdigit() and int(value) > 0:
            return False
    return True


def _make_folder(folder: Path) -> bool:
    """Create ``folder`` (and its parents); True if this call created it, False if it existed."""
    while True:
        try:
            os.mkdir(folder)
            return True
        except FileExistsError:
            return False
        except FileNotFoundError:
            # The parent is missing, or a failed run removed its empty name folder just now.
            os.makedirs(folder.parent, exist_ok=True)


def claim_version(roots: Iterable[str | os.PathLike], start: int) -> tuple[int, list[Path]]:
    """Claim the first ``version_<n>``, ``n >= start``, free in every one of ``roots``.

    Args:
        roots: The folders that hold the loggers' ``version_<n>`` folders (``save_dir/name``).
        start: The first number to try (the one the loggers would pick on their own).

    Returns:
        The number claimed and the folders this call created (to remove if the run fails before
        it writes anything). A process that is not rank zero claims nothing: it gets ``start``
        and no folders.
    """
    folders = list(dict.fromkeys(Path(root) for root in roots))
    if not writes_the_run():
        return start, []
    version = start
    while True:
        made = []
        for root in folders:
            folder = root / f"version_{version}"
            if not _make_folder(folder):
                break  # held by another run: give back what this number took, try the next
            made.append(folder)
        else:
            return version, made
        for folder in made:
            with contextlib.suppress(OSError):
                folder.rmdir()
        version += 1


__all__ = ["RANK_VARIABLES", "claim_version", "writes_the_run"]
