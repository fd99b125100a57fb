"""A quiet terminal for the entry points: the frameworks' start-up noise off, real warnings kept.

On a machine without a GPU, the frameworks announce it at length: TensorFlow's C++ logging prints
CUDA-driver and CPU-feature lines, PyTorch warns that CUDA failed to initialise, Lightning prints a
product tip and a deprecation warning of its own code. None of it is the user's to act on.
:func:`quiet_frameworks` turns each off by its own control and nothing else: TensorFlow's
``TF_CPP_MIN_LOG_LEVEL``, :mod:`warnings` filters on the exact messages, a :mod:`logging` filter on
the exact Lightning record. Every other warning still shows.

One kind needs more: TensorFlow writes a few lines to the process's stderr while its libraries load,
before its logging reads ``TF_CPP_MIN_LOG_LEVEL`` (tensorflow/tensorflow#100442). For that one
import, stderr goes to a temporary file, and what was written there is written back without those
exact lines. The import is wrapped when it happens, wherever it happens, so commands that never
load TensorFlow never pay for it.

Nothing happens at import: ``train.py`` and the ``unet`` command call :func:`quiet_frameworks`.
"""

from __future__ import annotations

import contextlib
import importlib.abc
import importlib.util
import logging
import os
import re
import sys
import tempfile
import warnings
from collections.abc import Iterator

#: Lines TensorFlow's native libraries write while loading on a machine without CUDA.
NATIVE_NOISE = (
    re.compile(rb"^WARNING: All log messages before absl::InitializeLog\(\) is called"),
    re.compile(rb"^[IWE]\d{4} .*cudart_stub\.cc:\d+\] Could not find cuda drivers"),
    re.compile(rb"^[IWE]\d{4} .*\] failed call to cuInit"),
    re.compile(rb"^[IW]\d{4} .*cpu_feature_guard\.cc:\d+\] This TensorFlow binary is optimized"),
    re.compile(rb"^To enable the following instructions: .* rebuild TensorFlow"),
    re.compile(rb"^[IW]\d{4} .*\] oneDNN custom operations are on"),
)

#: Warnings of the frameworks that are not the user's (message patterns, from their start).
WARNINGS = (
    # PyTorch on a machine without a usable CUDA driver: it falls back to the CPU, as asked.
    r"CUDA initialization: ",
    # Lightning's own use of a PyTorch API that PyTorch deprecated (lightning/pytorch/utilities/
    # _pytree.py), printed on every run.
    r"`isinstance\(treespec, LeafSpec\)` is deprecated",
)

#: Lightning's advertisement, logged at INFO on every run.
LIGHTNING_TIP = "💡 Tip: For seamless cloud logging"


class _DropRecords(logging.Filter):
    def __init__(self, prefix: str) -> None:
        super().__init__()
        self.prefix = prefix

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(self.prefix)


@contextlib.contextmanager
def native_stderr_filtered(patterns=NATIVE_NOISE) -> Iterator[None]:
    """Send the process's stderr (file descriptor 2, where C++ libraries write) to a temporary file,
    then write back what went there, less the lines matching ``patterns``."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as capture:
        os.dup2(capture.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            kept = [
                line
                for line in capture.read().splitlines(keepends=True)
                if not any(p.search(line) for p in patterns)
            ]
            if kept:
                os.write(2, b"".join(kept))


class _QuietTensorFlowImport(importlib.abc.MetaPathFinder):
    """Wraps the first import of ``tensorflow`` in :func:`native_stderr_filtered` (then leaves)."""

    def __init__(self) -> None:
        self._finding = False

    def find_spec(self, name, path=None, target=None):  # type: ignore[override]
        # Libraries look for TensorFlow (``importlib.util.find_spec``) without importing it: the
        # finder stays until the import itself runs.
        if name != "tensorflow" or self._finding:
            return None
        self._finding = True
        try:
            spec = importlib.util.find_spec(name)
        finally:
            self._finding = False
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        run = spec.loader.exec_module

        def exec_module(module):  # the loader stays TensorFlow's; only this call is wrapped
            with contextlib.suppress(ValueError):
                sys.meta_path.remove(self)
            with native_stderr_filtered():
                run(module)

        spec.loader.exec_module = exec_module  # type: ignore[method-assign]
        return spec


def quiet_frameworks() -> None:
    """Silence the frameworks' start-up noise (see the module's notes); call it from an entry point
    before the frameworks load. Settings the user made (``TF_CPP_MIN_LOG_LEVEL``, ``-W`` options)
    keep precedence where the frameworks allow it."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    if "tensorflow" not in sys.modules and not any(
        isinstance(f, _QuietTensorFlowImport) for f in sys.meta_path
    ):
        sys.meta_path.insert(0, _QuietTensorFlowImport())
    for message in WARNINGS:
        warnings.filterwarnings("ignore", message=message, append=bool(sys.warnoptions))
    rank_zero = logging.getLogger("lightning.pytorch.utilities.rank_zero")
    if not any(isinstance(f, _DropRecords) for f in rank_zero.filters):
        rank_zero.addFilter(_DropRecords(LIGHTNING_TIP))


__all__ = ["LIGHTNING_TIP", "NATIVE_NOISE", "native_stderr_filtered", "quiet_frameworks"]
