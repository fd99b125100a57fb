"""Load triton before TensorFlow.

TensorFlow followed by triton (which lightning, torchmetrics, torchvision and ``torch._dynamo`` load)
crashes the interpreter with a segmentation fault; triton first works. Importing triton here, before
Keras pulls in TensorFlow, makes ``import unet_keras`` then ``import unet_torch``/``lightning`` safe.
Triton is absent from CPU-only torch builds, where the crash cannot happen.
"""

from __future__ import annotations

import contextlib
import sys


def preload_triton() -> None:
    if "tensorflow" in sys.modules:
        return  # too late to help; unet_torch raises a clear error if it comes to that
    with contextlib.suppress(ImportError):
        import triton  # noqa: F401
