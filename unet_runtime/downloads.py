"""A local folder for a path or a hub id, fetched through huggingface_hub's cache.

Both twins' ``from_pretrained`` and a training run's ``model.init_from`` take a folder or a hub id
(``user/name``). The twins may not import the bridge, so the one download lives here, on the floor
every package stands on: like the atomic writer beside it, it knows nothing of U-Nets (the caller
names the files to fetch). huggingface_hub is imported only when a hub id is fetched, so the cache,
``HF_HUB_OFFLINE=1``, ``revision`` and ``local_files_only`` work as everywhere else in that
ecosystem.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path


def looks_like_hub_id(name: str) -> bool:
    """Whether ``name`` (not an existing path) reads as a hub id ``owner/name`` rather than as a
    local path: two non-empty parts around one ``/``, no leading ``.`` or ``~``, no ``\\``.

    Example:
        >>> looks_like_hub_id("acme/unet-demo"), looks_like_hub_id("./runs/demo")
        (True, False)
    """
    parts = name.split("/")
    return len(parts) == 2 and all(parts) and not name.startswith((".", "~")) and "\\" not in name


def fetch_folder(
    path_or_id: str | os.PathLike[str],
    files: Sequence[str],
    *,
    revision: str | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    local_files_only: bool = False,
    force_download: bool = False,
    token: str | bool | None = None,
) -> Path:
    """A local folder for ``path_or_id``.

    A local folder is returned as it is. A hub id is fetched with huggingface_hub's
    ``snapshot_download``, ``files`` only (its cache, ``HF_HUB_OFFLINE=1`` and
    ``local_files_only`` honoured); the other arguments are huggingface_hub's.

    Raises:
        FileNotFoundError: A local path that does not exist or is a file, or a hub id that is not
            on the hub or not in the cache while offline (one line).
    """
    name = os.fspath(path_or_id)
    path = Path(name)
    if path.is_dir():
        return path
    if path.exists():
        raise FileNotFoundError(f"{path}: a file, not a folder ({', '.join(files)})")
    if not looks_like_hub_id(name):
        raise FileNotFoundError(f"{path}: no such folder")
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    try:
        local = snapshot_download(
            name, revision=revision, cache_dir=cache_dir, local_files_only=local_files_only,
            force_download=force_download, token=token, allow_patterns=list(files),
        )  # fmt: skip
    except LocalEntryNotFoundError:
        raise FileNotFoundError(
            f"{name}: not a local folder, and not in the hub cache while offline "
            "(HF_HUB_OFFLINE or local_files_only)"
        ) from None
    except HfHubHTTPError as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise FileNotFoundError(f"{name}: not found on the hub ({first})") from None
    return Path(local)


__all__ = ["fetch_folder", "looks_like_hub_id"]
