"""Process infrastructure shared by every layer: malloc tuning, the machine line, atomic files.

Nothing here knows about U-Nets. Importing this package loads only the standard library, and it
changes nothing in the process: :func:`keep_freed_memory` is called by the entry points (``train.py``,
the ``unet`` command, the benchmarks), or by a library user who wants the same allocator behaviour.
"""

from unet_runtime.allocator import ENV_VAR, freed_memory_kept, keep_freed_memory
from unet_runtime.files import atomic_path, atomic_write_bytes, check_destination, suffix_in
from unet_runtime.machine import machine_info, machine_line

__all__ = [
    "suffix_in",
    "ENV_VAR",
    "atomic_path",
    "atomic_write_bytes",
    "check_destination",
    "freed_memory_kept",
    "keep_freed_memory",
    "machine_info",
    "machine_line",
]
