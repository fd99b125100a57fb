"""Test-session set-up shared by tests/ and parity_tests/.

Under pytest-xdist each worker gets one thread per framework, so two workers use the two cores
without oversubscribing them. The torch stack is imported before TensorFlow (see unet_keras._imports).
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
if os.environ.get("PYTEST_XDIST_WORKER"):
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "TF_NUM_INTRAOP_THREADS"):
        os.environ.setdefault(var, "1")
    os.environ.setdefault("TF_NUM_INTEROP_THREADS", "1")

import torch  # noqa: E402

if os.environ.get("PYTEST_XDIST_WORKER"):
    torch.set_num_threads(1)
