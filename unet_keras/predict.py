"""Whole-image inference with the Keras twin, through the framework-free tiling engine.

The engine speaks NCHW numpy; this module converts to and from the Keras NHWC layout with the
adapters, the only place that knows layouts.

Example:
    >>> import numpy as np
    >>> from unet_spec import get_preset, random_weights
    >>> spec = get_preset("modern-small")
    >>> predictor = KerasPredictor(spec, random_weights(spec))
    >>> predictor.predict(np.zeros((3, 50, 70), np.float32), tile=64).shape
    (2, 50, 70)
"""

from __future__ import annotations

from collections.abc import Mapping

import keras
import numpy as np

from unet_infer import TiledPredictor
from unet_keras.adapters import from_canonical, to_nchw, to_nhwc
from unet_keras.builder import build_unet
from unet_spec import UNetSpec, check_weights
from unet_spec.sizes import any_size


class KerasPredictor(TiledPredictor):
    """A model from :func:`~unet_keras.builder.build_unet` wrapped as the tiling engine's ``forward``.

    Models that resize or crop their skips are built for one input size; a model is built (and
    kept) for each tile size met, all sharing the same weights.

    Args:
        spec: The architecture.
        weights: Canonical weights (name → array), checked against ``spec``.
        head: Fold the spec's head into the model so :meth:`forward` returns probabilities.
        use_predict: Call ``model.predict`` (Keras' batched loop) instead of ``model(x)``; the
            direct call is faster for the few tiles of one batch.
    """

    def __init__(
        self,
        spec: UNetSpec,
        weights: Mapping[str, np.ndarray],
        *,
        head: bool = True,
        use_predict: bool = False,
    ) -> None:
        self.spec = spec
        self.weights = dict(weights)
        self.head = head
        self.use_predict = use_predict
        self._models: dict[tuple[int, int] | None, keras.Model] = {}
        check_weights(self.weights, spec)  # now, so bad weights fail before any image is read

    def model_for(self, size: tuple[int, int]) -> keras.Model:
        """The model for ``size`` (one size-free model when the spec has no resize/crop layers)."""
        key = None if any_size(self.spec) else size
        if key not in self._models:
            model = build_unet(self.spec, key, head_activation=self.head)
            self._models[key] = from_canonical(model, self.weights, self.spec)
        return self._models[key]

    def forward(self, x: np.ndarray) -> np.ndarray:
        """``(N, C, h, w)`` float32 numpy → ``(N, K, oh, ow)`` float32 numpy (NCHW both ways)."""
        model = self.model_for(tuple(x.shape[-2:]))
        nhwc = to_nhwc(np.asarray(x, dtype=np.float32))
        if self.use_predict:
            out = model.predict(nhwc, batch_size=len(nhwc), verbose=0)
        else:
            out = keras.ops.convert_to_numpy(model(nhwc, training=False))
        return to_nchw(out.astype(np.float32, copy=False))
