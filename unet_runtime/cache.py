"""The user's cache folder: where the project keeps what it can compute again.

Tools in this field keep caches out of the user's data (``~/.cache/huggingface``, ``~/.cache/torch``);
the project does the same, with its own variable to move it.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

#: Environment variable naming the cache folder (wins over the platform's rule).
CACHE_ENV_VAR = "UNET_CACHE_DIR"


def cache_dir() -> Path:
    """``$UNET_CACHE_DIR``, else the platform's user cache folder plus ``unet``:
    ``$XDG_CACHE_HOME/unet`` or ``~/.cache/unet`` on Linux, ``~/Library/Caches/unet`` on macOS,
    ``%LOCALAPPDATA%\\unet\\Cache`` on Windows (the rules of ``platformdirs``, written out here to
    keep this package free of dependencies). Nothing is created: writers make the folder."""
    if os.environ.get(CACHE_ENV_VAR):
        return Path(os.environ[CACHE_ENV_VAR]).expanduser()
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Caches" / "unet"
    if sys.platform == "win32" and os.environ.get("LOCALAPPDATA"):
        return Path(os.environ["LOCALAPPDATA"]) / "unet" / "Cache"
    base = os.environ.get("XDG_CACHE_HOME") or ""
    return (Path(base) if os.path.isabs(base) else Path.home() / ".cache") / "unet"


__all__ = ["CACHE_ENV_VAR", "cache_dir"]
