"""The base of the framework predictors: a ``forward`` on tiles, whole images through the engine."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from unet_infer.tiling import predict_images
from unet_infer.tta import tta_mode
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
        """``(C, H, W)`` image of any size → ``(K, H, W)`` output (see :func:`predict_images` for
        the arguments; ``tta``: a choice of :func:`unet_infer.tta.tta_mode`)."""
        image = np.asarray(image)
        if image.ndim != 3:
            raise ValueError(f"image must be (C, H, W). Received: shape={image.shape}")
        mode = tta_mode(tta)
        return predict_images(
            image[None], self.forward, self.spec, tile, overlap, batch_size,
            tta=mode, progress=None if mode else progress,
        )[0]  # fmt: skip
