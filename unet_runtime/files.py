"""One atomic writer for every file and folder the project writes.

A writer gets a temporary path in the destination's folder that ends like the destination (Keras,
TensorFlow and LiteRT insist on their suffixes), writes there, and the result is renamed into place
only when the writer returns. A crash or an error leaves the old file or nothing, never a
half-written one; the result has the permissions of a normally created file (the umask applied),
not the private mode of a temporary file.

It lives in ``unet_runtime``, the floor every package stands on, because both framework spokes
write files too. :func:`suffix_in` is the one rule by which a file's suffix picks its handler (a
format, a runtime, a source layout).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path


def suffix_in(path: str | os.PathLike[str], known: Iterable[str]) -> str | None:
    """The longest of ``known`` that the file name of ``path`` ends with (``.weights.h5`` before
    ``.h5``), the name being more than the suffix; ``None`` when none is.

    Example:
        >>> suffix_in("run/model.weights.h5", [".h5", ".weights.h5", ".keras"])
        '.weights.h5'
        >>> suffix_in(".onnx", [".onnx"]) is None
        True
    """
    name = Path(path).name
    matches = [s for s in known if name.endswith(s) and len(name) > len(s)]
    return max(matches, key=len) if matches else None


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def check_destination(path: str | os.PathLike[str], folder_ok: bool = False) -> Path:
    """Refuse a destination whose folder is missing or read-only, or that is an existing folder.

    Raises:
        FileNotFoundError: The parent folder does not exist.
        PermissionError: The parent folder is not writable.
        ValueError: ``path`` is an existing folder (with ``folder_ok``: any existing folder, since a
            folder artefact is never merged into an old one).
    """
    path = Path(path)
    if path.is_dir():
        what = "already exists" if folder_ok else "is a folder; give a file name"
        raise ValueError(f"{path}: the destination {what}")
    folder = path.parent
    if not folder.is_dir():
        raise FileNotFoundError(f"{path}: folder {folder} does not exist")
    # Permission bits count even for root, whom os.access always lets write.
    if not os.access(folder, os.W_OK) or not stat.S_IMODE(folder.stat().st_mode) & 0o222:
        raise PermissionError(f"{path}: folder {folder} is not writable")
    return path


def _suffix(path: Path) -> str:
    # Keras checks for ".weights.h5" as a whole, so that double suffix is kept together.
    suffixes = path.suffixes
    return (
        "".join(suffixes[-2:]) if len(suffixes) >= 2 and suffixes[-2] == ".weights" else path.suffix
    )


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str], folder: bool = False) -> Iterator[Path]:
    """A temporary path beside ``path`` (same suffix) that becomes ``path`` when the block succeeds.

    Args:
        path: The destination.
        folder: The writer makes a folder (a TensorFlow SavedModel) rather than a file. An existing
            folder at ``path`` is an error, never merged into or replaced.

    Example:
        >>> import tempfile, pathlib
        >>> dst = pathlib.Path(tempfile.mkdtemp()) / "model.bin"
        >>> with atomic_path(dst) as tmp:
        ...     _ = tmp.write_bytes(b"weights")
        >>> dst.read_bytes()
        b'weights'
    """
    path = check_destination(path, folder_ok=folder)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=_suffix(path))
    os.close(fd)
    tmp = Path(name)
    if folder:
        tmp.unlink()  # the writer creates the folder
    try:
        yield tmp
        if folder:
            if not tmp.is_dir():
                raise FileNotFoundError(f"{path}: the writer made no folder")
            os.chmod(tmp, 0o777 & ~_umask())
            if path.exists():
                raise ValueError(f"{path}: the destination already exists")
        else:
            if not tmp.is_file():
                raise FileNotFoundError(f"{path}: the writer made no file")
            os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600 files
            with open(tmp, "rb+") as f:
                os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            tmp.unlink(missing_ok=True)


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_path`)."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


__all__ = ["atomic_path", "atomic_write_bytes", "check_destination"]
