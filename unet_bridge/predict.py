"""Predictors from any weight file: one loader for ``unet predict``, evaluation and user code.

Weights come through the format registry (every readable suffix); the backend picks the runtime.
Every predictor is a :class:`unet_spec.tiling.TiledPredictor`, so all of them tile, pad and label
images exactly as validation does.
"""

from __future__ import annotations

import os
from typing import Any

from unet_bridge.formats import load_any_weights
from unet_spec import UNetSpec

#: Runtimes a predictor can run on.
BACKENDS = ("torch", "keras")


def load_predictor(
    path: str | os.PathLike[str],
    backend: str = "torch",
    spec: UNetSpec | None = None,
    device: str = "cpu",
    **kwargs: Any,
) -> Any:
    """A tiled predictor for the weights in ``path`` on ``backend``.

    Args:
        path: Weights in any readable format (``.safetensors``, ``.pt``, ``.ckpt``, ``.keras``,
            ``.weights.h5``).
        backend: ``torch`` or ``keras``.
        spec: The expected spec; required for a file that carries none.
        device: PyTorch device (``cpu``, ``cuda``, ``cuda:1``, ``mps``); Keras runs where
            TensorFlow places it.
        **kwargs: Passed to the predictor (e.g. ``channels_last`` for PyTorch).

    Raises:
        FileNotFoundError: No such file.
        ValueError: An unknown backend or format, or a file that does not fit ``spec``.
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(BACKENDS)}. Received: {backend!r}")
    if backend == "torch":
        # The torch stack loads before any Keras reader (see unet_keras._imports).
        from unet_torch.predict import TorchPredictor

        weights, stored, _ = load_any_weights(path, spec)
        return TorchPredictor(stored, weights, device, **kwargs)
    from unet_keras.predict import KerasPredictor

    weights, stored, _ = load_any_weights(path, spec)
    return KerasPredictor(stored, weights, **kwargs)


__all__ = ["BACKENDS", "load_predictor"]
