"""The base of the framework predictors: a ``forward`` on tiles, whole images through the engine."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from unet_infer.tiling import predict_tiled
from unet_spec.spec import UNetSpec


class TiledPredictor:
    """Base of the framework predictors: a ``forward`` on tiles plus whole-image :meth:`predict`.

    Subclasses set ``spec`` and implement :meth:`forward` (NCHW float32 numpy in and out); the
    tiling, stitching and test-time augmentation are shared here.
    """

    spec: UNetSpec

    def forward(self, x: np.ndarray) -> np.ndarray:
        """``(N, C, h, w)`` float32 → ``(N, K, oh, ow)`` float32."""
        raise NotImplementedError

    def predict(
        self,
        image: np.ndarray,
        tile: int | None = None,
        overlap: float = 0.25,
        batch_size: int = 1,
        *,
        tta: bool | str | None = False,
        progress: Callable[[int], object] | None = None,
    ) -> np.ndarray:
        """``(C, H, W)`` image of any size → ``(K, H, W)`` output: :func:`predict_tiled` with
        :meth:`forward` (``tta``: a choice of :func:`unet_infer.tta.tta_mode`)."""
        return predict_tiled(
            image, self.forward, self.spec, tile, overlap, batch_size, tta=tta, progress=progress
        )
