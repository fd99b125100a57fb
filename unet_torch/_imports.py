"""Guard against the TensorFlow-before-triton crash.

Loading TensorFlow and then triton (pulled in by lightning, torchmetrics, torchvision and
``torch._dynamo``) crashes the interpreter with a segmentation fault; the other order works.
``unet_keras`` loads triton before TensorFlow, so importing the two packages is safe in either order.
A user who imported TensorFlow directly first gets this clear error instead of a crash.
"""

from __future__ import annotations

import importlib.util
import sys


def check_import_order() -> None:
    if "tensorflow" in sys.modules and "triton" not in sys.modules:
        if importlib.util.find_spec("triton") is not None:
            raise ImportError(
                "unet_torch: TensorFlow was imported before triton, and loading triton now would "
                "crash the interpreter. Import unet_torch (or torch/lightning) before tensorflow, "
                "or import unet_keras instead of tensorflow directly (it orders the imports)."
            )
