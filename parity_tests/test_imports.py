"""Both import orders of the two framework packages work in one process.

TensorFlow followed by triton (loaded by lightning, torchmetrics, torchvision, torch._dynamo)
crashes the interpreter with a segmentation fault (exit 139); ``unet_keras`` loads triton first.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys

import pytest

# Both twins built and run after the imports (a small valid-padding spec: the point is the order).
_USE_BOTH = """
import numpy as np, torch
from unet_spec import get_preset, random_weights, check_against_noise
spec = get_preset("paper-small").replace(depth=2, base_filters=4)
w = random_weights(spec)
t = unet_torch.load_canonical(unet_torch.UNet(spec), w).eval()
k = unet_keras.from_canonical(unet_keras.build_unet(spec, 60), w, spec)
x = np.random.default_rng(0).random((1, 1, 60, 60), dtype=np.float32)
with torch.inference_mode():
    a = t(torch.from_numpy(x)).numpy()
    a64 = unet_torch.float64_reference(t, torch.from_numpy(x)).numpy()
b = unet_keras.to_nchw(np.asarray(k(unet_keras.to_nhwc(x))))
check = check_against_noise(b, a, a64, labels="argmax")
assert check.passed, check
print("OK")
"""

ORDERS = {
    "keras-then-torch": "import unet_keras\nimport unet_torch\n"
    "import lightning, torchmetrics, torchvision, torch._dynamo\n",
    "torch-then-keras": "import unet_torch, lightning, torchmetrics, torchvision, torch._dynamo\n"
    "import unet_keras\n",
    "keras-only-then-lightning": "import unet_keras, keras\nkeras.layers.Dense(2)\n"
    "import lightning.pytorch\nimport unet_torch\n",
}


def _run(code: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300
    )


@pytest.mark.parametrize("order", sorted(ORDERS))
def test_import_order(order: str) -> None:
    proc = _run(ORDERS[order] + _USE_BOTH)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip().endswith("OK")


def test_tensorflow_first_gives_a_clear_error_not_a_crash() -> None:
    # Asked here, not in a process of its own: the subprocesses run this interpreter
    # (sys.executable) on the same path, so they find what this process finds.
    if importlib.util.find_spec("triton") is None:
        pytest.skip("this torch build has no triton, so the crash cannot happen")
    proc = _run("import tensorflow\nimport unet_torch\n")
    assert proc.returncode == 1  # an ImportError, not a segmentation fault (139)
    assert "Import unet_torch (or torch/lightning) before tensorflow" in proc.stderr
