"""Keep freed memory in the process for the next allocation (glibc's ``malloc``).

A U-Net forward or training step allocates and frees the same large activation maps on every call:
at 572², one 64-channel map is 83 MB. glibc serves any block above its mmap threshold (32 MiB at
most) with a fresh ``mmap`` and unmaps it on ``free``, so every such map comes back as new pages
that the kernel faults in and zeroes one 4 KiB page at a time, one fault per page, on every
call. PyTorch's CPU allocator calls ``malloc`` directly, so that cost lands on every
convolution's output; TensorFlow keeps freed memory in its own CPU allocator and never pays it.
``benchmarks/README.md`` has the measured effect on inference and on a training step.

:func:`keep_freed_memory` sets the two documented ``mallopt`` parameters that make glibc reuse
freed blocks instead (``M_MMAP_MAX = 0``: large blocks come from the heap; ``M_TRIM_THRESHOLD =
-1``: the heap is never handed back to the system), which is what ``MALLOC_MMAP_MAX_=0
MALLOC_TRIM_THRESHOLD_=-1`` in the environment does before a process starts. The price is that the
process keeps its peak memory reserved after the peak has passed, as TensorFlow's allocator and
PyTorch's CUDA caching allocator do. It is a choice for the whole process, so only entry points
make it: ``train.py``, the ``unet`` command and the benchmarks call it first thing; building a
model never does. A library user calls it once, or sets the two ``MALLOC_*_`` variables above
before the process starts. No library offers this (PyTorch exposes no CPU caching allocator),
hence the few lines of ``ctypes`` here.
"""

from __future__ import annotations

import ctypes
import functools
import os
import platform

#: ``mallopt`` parameter numbers from glibc's ``<malloc.h>``.
M_TRIM_THRESHOLD = -1
M_MMAP_MAX = -4

#: Set to ``system`` to leave ``malloc`` as it is.
ENV_VAR = "UNET_MALLOC"

_applied = False


def _chosen_elsewhere() -> bool:
    """Whether the user opted out or the environment already chose how ``malloc`` behaves."""
    env = os.environ
    tunables = env.get("GLIBC_TUNABLES", "")
    return (
        env.get(ENV_VAR, "").lower() == "system"
        or "malloc" in env.get("LD_PRELOAD", "")  # jemalloc, tcmalloc, mimalloc ...
        or any(
            k in env
            for k in ("MALLOC_MMAP_MAX_", "MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_")
        )
        or any(k in tunables for k in ("mmap_max", "mmap_threshold", "trim_threshold"))
    )


@functools.cache
def _glibc() -> bool:
    # platform.libc_ver reads the interpreter's binary: once per process is enough.
    return platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"


def keep_freed_memory() -> bool:
    """Make glibc's ``malloc`` keep freed blocks for reuse; returns whether it is in force.

    Does nothing (and returns False) on a C library other than glibc, when ``UNET_MALLOC=system``
    is set, or when the environment already chooses the allocator (``LD_PRELOAD`` of another
    malloc, ``GLIBC_TUNABLES`` or ``MALLOC_*_`` settings). Safe to call more than once.
    """
    global _applied
    if _applied:
        return True
    if _chosen_elsewhere() or not _glibc():
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    # mallopt returns 1 on success; M_TRIM_THRESHOLD -1 disables trimming (mallopt(3)).
    _applied = mallopt(M_MMAP_MAX, 0) == 1 and mallopt(M_TRIM_THRESHOLD, -1) == 1
    return _applied


def freed_memory_kept() -> bool:
    """Whether :func:`keep_freed_memory` is in force in this process."""
    return _applied
