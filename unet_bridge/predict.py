"""Predictors from any weight file: one loader for ``unet predict``, evaluation and user code.

Weights come through the format registry (every readable suffix); the backend picks the runtime.
The ``onnx`` backend runs an exported ``.onnx`` artefact (``unet export``) in onnxruntime; its spec
comes from the artefact's metadata. Every predictor is a :class:`unet_infer.tiling.TiledPredictor`,
so all of them tile, pad and label images exactly as validation does.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from unet_bridge.formats import load_any_weights
from unet_infer.tiling import TiledPredictor
from unet_spec import UNetSpec

#: Runtimes a predictor can run on.
BACKENDS = ("torch", "keras", "onnx")


class OnnxPredictor(TiledPredictor):
    """An exported ``.onnx`` model in onnxruntime, wrapped as the tiling engine's ``forward``.

    Args:
        path: The ``.onnx`` file (its ``metadata_props`` hold the spec, see ``unet export``).
        spec: The expected spec; must equal the stored one when both exist.
        head: Apply the spec's head so :meth:`forward` returns probabilities (else logits).

    A model exported for one input size (a spec that resizes or crops its skips) is tiled at that
    size; a dynamic one at any valid tile.
    """

    def __init__(self, path: str | os.PathLike[str], spec: UNetSpec | None = None, *,
                 head: bool = True) -> None:  # fmt: skip
        from unet_bridge.export import SPEC_KEY, onnx_session

        self.path = Path(path)
        self.session = onnx_session(self.path)
        stored = self.session.get_modelmeta().custom_metadata_map.get(SPEC_KEY)
        if stored is None and spec is None:
            raise ValueError(
                f"{path}: the ONNX file carries no U-Net spec; give --preset or --spec"
            )
        stored_spec = UNetSpec.from_json(stored) if stored is not None else None
        if spec is not None and stored_spec is not None and spec != stored_spec:
            differ = [k for k, v in spec.to_dict().items() if stored_spec.to_dict()[k] != v]
            raise ValueError(f"{path}: the stored spec differs in {', '.join(differ)}")
        self.spec = stored_spec or spec
        self.head = head
        shape = self.session.get_inputs()[0].shape
        h, w = shape[2], shape[3]
        self.fixed = int(h) if isinstance(h, int) and h == w else None

    def forward(self, x: np.ndarray) -> np.ndarray:
        """``(N, C, h, w)`` float32 numpy → ``(N, K, oh, ow)`` float32 numpy (NCHW both ways)."""
        from unet_bridge.export import run_onnx
        from unet_bridge.parity import head

        logits = run_onnx(self.path, x, self.session)
        if not self.head:
            return logits
        return head(logits, self.spec.head).astype(np.float32)

    def predict(self, image: np.ndarray, tile: int | None = None, *args: Any, **kwargs: Any):
        """As :meth:`TiledPredictor.predict`; a fixed-size model takes only its own tile."""
        if self.fixed is not None:
            if tile is not None and tile != self.fixed:
                raise ValueError(
                    f"{self.path}: the model was exported for {self.fixed}x{self.fixed} inputs; "
                    f"tile {tile} cannot run (drop --tile or export at that size)"
                )
            tile = self.fixed
        return super().predict(image, tile, *args, **kwargs)


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
            ``.weights.h5``); for the ``onnx`` backend an exported ``.onnx`` file.
        backend: ``torch``, ``keras`` or ``onnx``.
        spec: The expected spec; required for a file that carries none.
        device: PyTorch device (``cpu``, ``cuda``, ``cuda:1``, ``mps``); Keras runs where
            TensorFlow places it; onnxruntime runs on the CPU.
        **kwargs: Passed to the predictor (e.g. ``channels_last`` for PyTorch).

    Raises:
        FileNotFoundError: No such file.
        ValueError: An unknown backend or format, or a file that does not fit ``spec``.
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(BACKENDS)}. Received: {backend!r}")
    if backend == "onnx":
        if not Path(path).name.endswith(".onnx"):
            raise ValueError(
                f"{path}: the onnx backend runs an exported .onnx file (`unet export W.safetensors "
                "model.onnx`)"
            )
        if not Path(path).is_file():
            raise FileNotFoundError(f"{path}: no such file")
        return OnnxPredictor(path, spec, **kwargs)
    if backend == "torch":
        # The torch stack loads before any Keras reader (see unet_keras._imports).
        from unet_torch.predict import TorchPredictor

        weights, stored, _ = load_any_weights(path, spec)
        return TorchPredictor(stored, weights, device, **kwargs)
    from unet_keras.predict import KerasPredictor

    weights, stored, _ = load_any_weights(path, spec)
    return KerasPredictor(stored, weights, **kwargs)


__all__ = ["BACKENDS", "OnnxPredictor", "load_predictor"]
