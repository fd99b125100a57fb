"""Predictors from any weight file or exported artefact: one loader for ``unet predict``,
evaluation and user code.

Weights come through the format registry (every readable suffix) and run on the ``torch`` or
``keras`` twin. An exported artefact (``unet export``: ``.onnx``, ``.tflite``, ``.savedmodel``,
``.pt2``) runs in its own runtime; its spec comes from the artefact's metadata. Every predictor is
a :class:`unet_infer.TiledPredictor`, so all of them tile, pad and label images exactly as
validation does.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import numpy as np

from unet_bridge.artefacts import ARTEFACTS
from unet_bridge.sources import read_any
from unet_infer import TiledPredictor
from unet_runtime import suffix_in
from unet_spec import UNetSpec

#: Runtimes a predictor can run on: the two twins, and the runtime of each exported format.
ARTEFACT_BACKENDS = {suffix.lstrip("."): suffix for suffix in ARTEFACTS}
BACKENDS = ("torch", "keras", *ARTEFACT_BACKENDS)


def backend_for(path: str | os.PathLike[str]) -> str:
    """The backend a file runs on when none is named: the runtime of an exported artefact's
    suffix, the PyTorch twin for weights."""
    suffix = suffix_in(path, ARTEFACT_BACKENDS.values())
    return suffix.lstrip(".") if suffix is not None else "torch"  # a runtime is named as its suffix


class ArtefactPredictor(TiledPredictor):
    """An exported artefact in its own runtime, wrapped as the tiling engine's ``forward``.

    Args:
        path: The artefact (``unet export`` writes the spec into it).
        spec: The expected spec; must equal the stored one when both exist.
        head: Apply the spec's head so :meth:`forward` returns probabilities (else logits).

    An artefact exported for one input size (a spec that resizes or crops its skips) is tiled at
    that size; a dynamic one at any valid tile.
    """

    def __init__(self, path: str | os.PathLike[str], spec: UNetSpec | None = None, *,
                 head: bool = True) -> None:  # fmt: skip
        from unet_bridge.export import SIZES_KEY, export_of

        self.path = Path(path)
        artefact = export_of(self.path)
        self.run = artefact.load(self.path)
        metadata = artefact.read_metadata(self.path)
        stored_spec = artefact.spec(self.path)
        if stored_spec is None and spec is None:
            raise ValueError(
                f"{path}: the {artefact.fmt.description} carries no U-Net spec; give --preset or "
                "--spec"
            )
        if spec is not None and stored_spec is not None and spec != stored_spec:
            differ = ", ".join(stored_spec.diff(spec))
            raise ValueError(f"{path}: the stored spec differs in {differ}")
        self.spec = stored_spec or spec
        self.head = head
        fixed = re.search(r"H = W = (\d+) only", metadata.get(SIZES_KEY, ""))
        self.fixed = int(fixed.group(1)) if fixed else None

    def forward(self, x: np.ndarray) -> np.ndarray:
        """``(N, C, h, w)`` float32 numpy → ``(N, K, oh, ow)`` float32 numpy (NCHW both ways)."""
        from unet_bridge.parity import head

        logits = self.run(x)
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
    backend: str | None = None,
    spec: UNetSpec | None = None,
    device: str = "cpu",
    **kwargs: Any,
) -> Any:
    """A tiled predictor for the weights in ``path`` on ``backend``.

    Args:
        path: Weights in any readable format (``.safetensors``, ``.pt``, ``.ckpt``, ``.keras``,
            ``.weights.h5``), or an exported artefact (``.onnx``, ``.tflite``, ``.savedmodel``,
            ``.pt2``).
        backend: ``torch`` or ``keras`` for weights; ``onnx``, ``tflite``, ``savedmodel`` or
            ``pt2`` for an artefact of that format. Default: :func:`backend_for` the suffix.
        spec: The expected spec; required for a file that carries none.
        device: PyTorch device (``cpu``, ``cuda``, ``cuda:1``, ``mps``); Keras runs where
            TensorFlow places it; onnxruntime runs on the CPU.
        **kwargs: Passed to the predictor (e.g. ``channels_last`` for PyTorch).

    Raises:
        FileNotFoundError: No such file.
        ValueError: An unknown backend or format, or a file that does not fit ``spec``.
    """
    backend = backend or backend_for(path)
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(BACKENDS)}. Received: {backend!r}")
    if backend in ARTEFACT_BACKENDS:
        suffix = ARTEFACT_BACKENDS[backend]
        if backend_for(path) != backend:
            raise ValueError(
                f"{path}: the {backend} backend runs an exported {suffix} artefact "
                f"(`unet export W.safetensors model{suffix}`)"
            )
        if not Path(path).exists():
            raise FileNotFoundError(f"{path}: no such file")
        return ArtefactPredictor(path, spec, **kwargs)
    if backend_for(path) != "torch":
        raise ValueError(
            f"{path}: an exported artefact runs in its own runtime: use --backend "
            f"{backend_for(path)} (or leave --backend out)"
        )
    if backend == "torch":
        # The torch stack loads before any Keras reader (see unet_keras._imports).
        from unet_torch.predict import TorchPredictor

        weights, stored, _, _ = read_any(path, spec=spec)[1]
        return TorchPredictor(stored, weights, device, **kwargs)
    from unet_keras.predict import KerasPredictor

    weights, stored, _, _ = read_any(path, spec=spec)[1]
    return KerasPredictor(stored, weights, **kwargs)


__all__ = ["ARTEFACT_BACKENDS", "BACKENDS", "ArtefactPredictor", "backend_for", "load_predictor"]
