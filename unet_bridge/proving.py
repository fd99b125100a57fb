"""Prove, then write: the one path by which a port, an export or a training run's artefact lands.

The artefact is written to a temporary stand-in beside the destination
(:func:`unet_runtime.atomic_path`), proven there (reloaded and run against what it must compute),
and renamed into place only when the proof holds. A failed proof raises :class:`RejectedError`
carrying the result, and nothing is left at the destination.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Protocol, TypeVar

from unet_runtime import atomic_path


class Verdict(Protocol):
    """What a proof returns: whether it held, and why in one line."""

    @property
    def ok(self) -> bool: ...

    @property
    def summary(self) -> str: ...


V = TypeVar("V", bound=Verdict)


class RejectedError(Exception):
    """A written artefact failed its proof; nothing was left at the destination."""

    def __init__(self, result: Verdict) -> None:
        super().__init__(result.summary)
        self.result = result


def land(
    dst: str | os.PathLike[str],
    write: Callable[[Path], object],
    prove: Callable[[Path], V],
    *,
    folder: bool = False,
    finish: Callable[[Path, V], object] | None = None,
) -> V:
    """Write with ``write(tmp)``, prove with ``prove(tmp)``, then ``finish(tmp, verdict)`` (a model
    card, say) and rename ``tmp`` to ``dst``.

    Raises:
        RejectedError: The proof failed; nothing is at ``dst``.
    """
    with atomic_path(Path(dst), folder=folder) as tmp:
        write(tmp)
        verdict = prove(tmp)
        if not verdict.ok:
            # Leaving the block by an exception is what keeps the artefact from landing.
            raise RejectedError(verdict)
        if finish is not None:
            finish(tmp, verdict)
    return verdict


__all__ = ["RejectedError", "Verdict", "land"]
