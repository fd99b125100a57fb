"""Test-session set-up shared by tests/ and parity_tests/.

Under pytest-xdist each worker gets one thread per framework, so two workers use the two cores
without oversubscribing them, and imports the torch stack before TensorFlow (unet_keras._imports
makes either order safe). The controller runs no test and imports neither. A worker is an entry
point as ``train.py`` and ``unet`` are, and makes their choice for its process: ``malloc`` keeps
freed memory (:func:`unet_runtime.keep_freed_memory`), so the activation maps that every test
allocates and frees again do not come back as new pages each time. The allocator's own tests probe
fresh interpreters with a clean environment.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import subprocess
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
if os.environ.get("PYTEST_XDIST_WORKER"):
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "TF_NUM_INTRAOP_THREADS"):
        os.environ.setdefault(var, "1")
    os.environ.setdefault("TF_NUM_INTEROP_THREADS", "1")
    # In the workers only: xdist's controller runs no test, and spawns the workers sooner
    # without torch.
    import torch

    from unet_runtime import keep_freed_memory

    torch.set_num_threads(1)
    keep_freed_memory()


@pytest.fixture
def plant_keras_weights(monkeypatch: pytest.MonkeyPatch) -> Callable:
    """Make every Keras twin the bridge builds or writes hold edited weights: a planted defect.

    ``plant(edit)`` calls ``edit(weights)`` on a copy of the canonical weights before each build
    (``unet_bridge.parity.keras_model``) and each Keras file write (the registry's ``.keras`` and
    ``.weights.h5`` writers).
    """

    def plant(edit: Callable[[dict[str, np.ndarray]], None]) -> None:
        import dataclasses

        from unet_bridge import formats, parity

        def edited(function: Callable) -> Callable:
            def call(spec_or_weights, *args, **kwargs):
                # keras_model(spec, weights, ...) and write(weights, spec, ...) alike.
                if isinstance(spec_or_weights, dict):
                    spec_or_weights = dict(spec_or_weights)
                    edit(spec_or_weights)
                    return function(spec_or_weights, *args, **kwargs)
                weights = dict(args[0])
                edit(weights)
                return function(spec_or_weights, weights, *args[1:], **kwargs)

            return call

        monkeypatch.setattr(parity, "keras_model", edited(parity.keras_model))
        for suffix in (".keras", ".weights.h5"):
            fmt = formats.FORMATS[suffix]
            planted = dataclasses.replace(fmt, write=edited(fmt.write))
            monkeypatch.setitem(formats.FORMATS, suffix, planted)

    return plant


@pytest.fixture
def run_train() -> Callable[..., subprocess.CompletedProcess]:
    """``run_train(cwd, *argv)`` runs ``train.py ARGV`` in folder ``cwd`` the way ``train.py``
    does (``unet_train.cli.main``), in this process: its exit status and what it printed. A fresh
    interpreter per command costs more than the command; what a run sets for the whole process is
    put back (the working folder, the environment, where LightningCLI exports the seed, and
    PyTorch's deterministic algorithms). Commands that must own their process (DDP relaunches
    its command; the terminal a user sees) run ``train.py`` in a subprocess instead."""

    def run(cwd: Path, *argv: str) -> subprocess.CompletedProcess:
        import torch

        from unet_train.cli import main

        here, env = os.getcwd(), dict(os.environ)
        deterministic = torch.are_deterministic_algorithms_enabled()
        out, err = io.StringIO(), io.StringIO()
        # Lightning's log lines (and the project's, logged through Lightning's rank-zero helpers)
        # go where a terminal would show them: stderr.
        lines = logging.StreamHandler(err)
        loggers = [logging.getLogger(name) for name in ("lightning.pytorch", "lightning.fabric")]
        try:
            os.chdir(cwd)
            for logger in loggers:
                logger.addHandler(lines)
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                try:
                    code = main(list(argv))
                except SystemExit as exit_:  # --print_config, or an argument the parser refuses
                    code = exit_.code or 0
        finally:
            for logger in loggers:
                logger.removeHandler(lines)
            os.chdir(here)
            os.environ.clear()
            os.environ.update(env)
            torch.use_deterministic_algorithms(deterministic)
        return subprocess.CompletedProcess(list(argv), code, out.getvalue(), err.getvalue())

    return run
