"""Whole-image inference with the PyTorch twin, through the framework-free tiling engine.

Example:
    >>> import numpy as np
    >>> from unet_spec import get_preset, random_weights
    >>> spec = get_preset("modern-small")
    >>> predictor = TorchPredictor(spec, random_weights(spec))
    >>> predictor.predict(np.zeros((3, 50, 70), np.float32), tile=64).shape
    (2, 50, 70)
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch

from unet_infer import TiledPredictor
from unet_spec import UNetSpec
from unet_torch.adapters import load_canonical
from unet_torch.model import UNet, probabilities


def resolve_device(device: str) -> torch.device:
    """The one reading of a device name, for every entry point: ``"auto"`` (CUDA when PyTorch sees
    a GPU, else the CPU), ``"cpu"``, ``"cuda"`` or ``"cuda:N"``; ``ValueError`` when CUDA is asked
    for but absent, or for any other name."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except RuntimeError:
        dev = None
    if dev is None or dev.type not in ("cpu", "cuda"):
        raise ValueError(f"device must be auto, cpu, cuda or cuda:N. Received: device={device!r}")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} asked for, but PyTorch sees no CUDA GPU")
    return dev


class TorchPredictor(TiledPredictor):
    """A :class:`~unet_torch.model.UNet` in eval mode wrapped as the tiling engine's ``forward``.

    Args:
        spec: The architecture.
        weights: Canonical weights (name → array), checked against ``spec``.
        device: ``"cpu"`` or ``"cuda"``.
        channels_last: Run in NHWC memory order, which oneDNN (CPU) and cuDNN (tensor cores)
            convolve faster than NCHW; the results are the same function. On the CPU the model
            already runs inference channels-last with fused convolution + ReLU whatever this says
            (:class:`~unet_torch.model.UNet`), so the flag matters on CUDA.
        head: Apply the spec's head so :meth:`forward` returns probabilities (else logits).
    """

    def __init__(
        self,
        spec: UNetSpec,
        weights: Mapping[str, np.ndarray],
        device: str = "cpu",
        *,
        channels_last: bool = True,
        head: bool = True,
    ) -> None:
        self.spec = spec
        self.device = resolve_device(device)
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        model = load_canonical(UNet(spec), weights)
        self.model = model.eval().to(self.device, memory_format=self.memory_format)
        self.head = head

    @torch.inference_mode()
    def forward(self, x: np.ndarray) -> np.ndarray:
        """``(N, C, h, w)`` float32 numpy → ``(N, K, oh, ow)`` float32 numpy (NCHW both ways)."""
        t = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
        t = t.to(self.device, non_blocking=True).contiguous(memory_format=self.memory_format)
        out = self.model(t)
        if self.head:
            out = probabilities(out, self.spec.head)
        return out.float().cpu().contiguous().numpy()
