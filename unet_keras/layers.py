"""Keras layers for plan blocks that Keras has no built-in layer for.

Keras' ``UpSampling2D(interpolation="bilinear")`` samples at half-pixel centers; milesial's
bilinear U-Net upsamples with aligned corners, which no Keras layer offers, and MONAI pads with the
edge replicated, which TensorFlow's ``pad`` has no mode for. Instance normalisation exists as
``GroupNormalization`` with one group per channel, but that layer computes ``x * inv - mean *
inv``: two large terms that cancel when a map's spread is small beside its mean (a ReLU output on
a small map), losing digits that ``(x - mean) * inv`` (PyTorch's order) keeps. All three are written with ``keras.ops``
gathers and arithmetic only, so they save in ``.keras`` files and export to SavedModel and LiteRT,
and they work for any input size (the sizes are read at run time).
"""

from __future__ import annotations

import keras
from keras import ops


def _source_positions(n, factor: int):
    """Indices ``(i0, i1)`` and weight of ``i1`` along an axis of size ``n`` upsampled ``factor``×
    with aligned corners: output ``j`` samples input ``j * (n - 1) / (n * factor - 1)``, computed
    in float32 as PyTorch's CPU and CUDA kernels do."""
    out = n * factor
    scale = ops.cast(n - 1, "float32") / ops.cast(ops.maximum(out - 1, 1), "float32")
    src = ops.cast(ops.arange(out), "float32") * scale
    i0 = ops.minimum(ops.cast(ops.floor(src), "int32"), n - 1)
    i1 = ops.minimum(i0 + 1, n - 1)
    return i0, i1, src - ops.cast(i0, "float32")


@keras.saving.register_keras_serializable(package="unet")
class AlignedBilinearUpsampling(keras.layers.Layer):
    """×``factor`` bilinear upsampling with aligned corners (``F.interpolate(...,
    mode="bilinear", align_corners=True)``), NHWC.

    Each spatial axis is interpolated in turn from its two neighbouring rows (columns): the same
    weights as PyTorch's kernel, summed in a different order, so the two agree to float32
    rounding.
    """

    def __init__(self, factor: int = 2, **kwargs) -> None:
        super().__init__(**kwargs)
        self.factor = int(factor)

    def call(self, x):
        for axis in (1, 2):
            i0, i1, frac = _source_positions(ops.shape(x)[axis], self.factor)
            shape = [1, 1, 1, 1]
            shape[axis] = -1
            frac = ops.reshape(ops.cast(frac, x.dtype), shape)
            a, b = ops.take(x, i0, axis=axis), ops.take(x, i1, axis=axis)
            x = a + (b - a) * frac
        return x

    def compute_output_shape(self, input_shape):
        n, h, w, c = input_shape
        scale = lambda s: None if s is None else s * self.factor  # noqa: E731
        return n, scale(h), scale(w), c

    def get_config(self) -> dict:
        return {**super().get_config(), "factor": self.factor}


@keras.saving.register_keras_serializable(package="unet")
class PadTo(keras.layers.Layer):
    """Pad ``x`` to the spatial size of ``ref`` (called on ``[x, ref]``), NHWC.

    ``mode``: ``"zeros"`` or ``"replicate"`` (the edge row/column repeated); ``align``:
    ``"center"`` (split, the extra row/column after) or ``"end"`` (all after). Both are a gather of
    clipped indices (replicate), times a 0/1 mask of the rows and columns inside ``x`` (zeros).
    """

    def __init__(self, mode: str = "zeros", align: str = "center", **kwargs) -> None:
        super().__init__(**kwargs)
        if mode not in ("zeros", "replicate") or align not in ("center", "end"):
            raise ValueError(
                f"PadTo: mode must be 'zeros' or 'replicate' and align 'center' or 'end'. "
                f"Received: mode={mode!r}, align={align!r}"
            )
        self.mode, self.align = mode, align

    def call(self, inputs):
        x, ref = inputs
        for axis in (1, 2):
            n, target = ops.shape(x)[axis], ops.shape(ref)[axis]
            before = 0 if self.align == "end" else (target - n) // 2
            positions = ops.arange(target) - before
            index = ops.clip(positions, 0, n - 1)
            x = ops.take(x, index, axis=axis)
            if self.mode == "zeros":
                inside = ops.logical_and(positions >= 0, positions <= n - 1)
                shape = [1, 1, 1, 1]
                shape[axis] = -1
                x = x * ops.reshape(ops.cast(inside, x.dtype), shape)
        return x

    def compute_output_shape(self, input_shapes):
        (n, _, _, c), (_, h, w, _) = input_shapes
        return n, h, w, c

    def get_config(self) -> dict:
        return {**super().get_config(), "mode": self.mode, "align": self.align}


def _map_mean(x):
    """The mean of each map ``(N, 1, 1, C)``: of each row first, then of the row means (every row
    has as many pixels, so this is the mean). A one-pass float32 sum over a whole map rounds once
    per pixel; two short sums keep the error near PyTorch's pairwise sum."""
    return ops.mean(ops.mean(x, axis=2, keepdims=True), axis=1, keepdims=True)


@keras.saving.register_keras_serializable(package="unet")
class InstanceNormalization(keras.layers.Layer):
    """Instance normalisation with a scale and offset per channel (``nn.InstanceNorm2d(affine=
    True)``), NHWC: each map is centred first, then scaled by the inverse of its (biased) standard
    deviation, in PyTorch's order of operations.

    Weights ``gamma`` and ``beta`` (``(channels,)``), in that order, as ``GroupNormalization``.
    """

    def __init__(self, epsilon: float = 1e-5, **kwargs) -> None:
        super().__init__(**kwargs)
        self.epsilon = float(epsilon)

    def build(self, input_shape) -> None:
        channels = input_shape[-1]
        self.gamma = self.add_weight(shape=(channels,), initializer="ones", name="gamma")
        self.beta = self.add_weight(shape=(channels,), initializer="zeros", name="beta")

    def call(self, x):
        centred = x - _map_mean(x)
        variance = _map_mean(ops.square(centred))
        return centred * ops.rsqrt(variance + self.epsilon) * self.gamma + self.beta

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self) -> dict:
        return {**super().get_config(), "epsilon": self.epsilon}
