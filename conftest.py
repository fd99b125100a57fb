"""Test-session set-up shared by tests/ and parity_tests/.

Under pytest-xdist each worker gets one thread per framework, so two workers use the two cores
without oversubscribing them. The torch stack is imported before TensorFlow (see unet_keras._imports).
"""

from __future__ import annotations

import os
from collections.abc import Callable

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
if os.environ.get("PYTEST_XDIST_WORKER"):
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "TF_NUM_INTRAOP_THREADS"):
        os.environ.setdefault(var, "1")
    os.environ.setdefault("TF_NUM_INTEROP_THREADS", "1")

import torch

if os.environ.get("PYTEST_XDIST_WORKER"):
    torch.set_num_threads(1)


@pytest.fixture
def plant_keras_weights(monkeypatch: pytest.MonkeyPatch) -> Callable:
    """Make every Keras twin the bridge builds load edited weights: a planted porting defect.

    ``plant(edit)`` calls ``edit(weights)`` on a copy of the canonical weights before each build.
    ``run_parity`` looks the builder up in ``unet_bridge.parity``, so the patch goes there.
    """

    def plant(edit: Callable[[dict[str, np.ndarray]], None]) -> None:
        from unet_bridge import parity

        build = parity.keras_model

        def edited(spec, weights, size, *args, **kwargs):
            weights = dict(weights)
            edit(weights)
            return build(spec, weights, size, *args, **kwargs)

        monkeypatch.setattr(parity, "keras_model", edited)

    return plant
