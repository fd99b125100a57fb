"""Keras side: ``build_unet(spec)``, the seed-compatible ``unet_model``, canonical adapters and
hub folders (``from_pretrained``, ``save_pretrained``)."""

from unet_keras._imports import preload_triton

preload_triton()

from unet_keras.adapters import from_canonical, to_canonical, to_nchw, to_nhwc  # noqa: E402
from unet_keras.builder import build_unet, unet_model  # noqa: E402
from unet_keras.hub import from_pretrained, save_pretrained  # noqa: E402

__all__ = [
    "build_unet",
    "from_canonical",
    "from_pretrained",
    "save_pretrained",
    "to_canonical",
    "to_nchw",
    "to_nhwc",
    "unet_model",
]
