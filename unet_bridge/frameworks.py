"""Both frameworks in one process: the import order and the numeric environment.

TensorFlow followed by triton crashes the interpreter, so every path that needs both frameworks
imports them through :func:`import_frameworks`; :func:`environment_guard` then makes both compute in
true fp32 and records what parity numbers depend on.
"""

from __future__ import annotations

import os
import platform
from typing import Any

import numpy as np

from unet_runtime.machine import machine_info


def import_frameworks() -> None:
    """Import the torch stack, then Keras (the only safe order; see ``unet_keras._imports``)."""
    # isort: off
    import unet_torch  # noqa: F401
    import unet_keras  # noqa: F401
    # isort: on


def environment_guard() -> dict[str, Any]:
    """Make both frameworks compute in true fp32 and describe the environment.

    TF32 is turned off for PyTorch (matmul and cuDNN) and TensorFlow. oneDNN is left as configured
    (``TF_ENABLE_ONEDNN_OPTS``; on by default on x86 Linux) but recorded, since it changes
    TensorFlow's accumulation order on CPUs.

    Returns:
        Versions, devices, threads and numeric settings, for reports.
    """
    import_frameworks()
    import keras
    import torch

    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.set_float32_matmul_precision("highest")
    info: dict[str, Any] = {
        **machine_info(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "torch": torch.__version__,
        "keras": keras.__version__,
        "keras_backend": keras.backend.backend(),
        "torch_threads": torch.get_num_threads(),
        "torch_mkldnn": bool(torch.backends.mkldnn.is_available()),
        "torch_cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "torch_tf32": False,
        "TF_ENABLE_ONEDNN_OPTS": os.environ.get("TF_ENABLE_ONEDNN_OPTS", "default (on)"),
    }
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        tf.config.experimental.enable_tensor_float_32_execution(False)
        info["tensorflow"] = tf.__version__
        info["tf_tf32"] = bool(tf.config.experimental.tensor_float_32_execution_enabled())
        info["tf_gpus"] = [d.name for d in tf.config.list_physical_devices("GPU")]
        info["tf_intra_op_threads"] = tf.config.threading.get_intra_op_parallelism_threads()
    return info
