"""What a measured number depends on: the CPU, its vector ISA as the frameworks see it, threads.

Every results table (benchmarks, training results, parity figures) records :func:`machine_info`,
because float noise and speed both change from one CPU to the next (oneDNN picks different kernels
and accumulation orders for AVX2 and AVX-512). Torch is queried only if it is installed, so this
module stays free of framework imports.
"""

from __future__ import annotations

import os
import platform
from functools import cache
from typing import Any

from unet_runtime.allocator import freed_memory_kept


@cache
def cpu_model() -> str:
    """The CPU's marketing name (``/proc/cpuinfo`` on Linux, ``platform.processor()`` elsewhere)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def machine_info() -> dict[str, Any]:
    """CPU model, torch's CPU capability, the oneDNN ISA cap, thread counts, versions, and whether
    ``malloc`` keeps freed memory (:func:`unet_runtime.keep_freed_memory`).

    ``cpu_capability`` is ``torch.backends.cpu.get_cpu_capability()`` (``AVX512``, ``AVX2``, …);
    ``onednn_max_cpu_isa`` is the ``ONEDNN_MAX_CPU_ISA`` cap in force (``default``: none).
    """
    info: dict[str, Any] = {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "onednn_max_cpu_isa": os.environ.get("ONEDNN_MAX_CPU_ISA", "default"),
        "python": platform.python_version(),
        "malloc": "keeps freed memory" if freed_memory_kept() else "system",
    }
    try:
        import torch
    except ImportError:
        return info
    info["cpu_capability"] = torch.backends.cpu.get_cpu_capability()
    info["torch_threads"] = torch.get_num_threads()
    info["torch"] = torch.__version__
    return info


def machine_line(info: dict[str, Any] | None = None) -> str:
    """One line for the head of a results table, e.g.
    ``AMD EPYC, 2 cores, torch AVX512, oneDNN ISA default, 2 threads, malloc system``."""
    info = machine_info() if info is None else info

    def count(n: Any, noun: str) -> str:
        return f"{n} {noun}" if n == 1 else f"{n} {noun}s"

    parts = [f"{info['cpu']}", count(info["cores"], "core")]
    if "cpu_capability" in info:
        parts.append(f"torch {info['cpu_capability']}")
    parts.append(f"oneDNN ISA {info['onednn_max_cpu_isa']}")
    if "torch_threads" in info:
        parts.append(count(info["torch_threads"], "thread"))
    if "malloc" in info:
        parts.append(f"malloc {info['malloc']}")
    return ", ".join(parts)
