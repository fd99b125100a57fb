"""A stand-in for zhixuhao/unet's ``unet()`` (``model.py``): the same Keras layer graph, written
for this suite.

zhixuhao/unet is not a package, so the suite cannot import its builder. This module rebuilds the
layout its README and ``model.py`` describe, with auto-named layers as that code leaves them:

- four levels of two 3×3 'same' convs with ReLU fused into ``Conv2D`` (64 → 512 filters,
  he_normal), 2×2 max pooling; ``Dropout(0.5)`` after level 4's convs, whose output is both the
  pooled input and the skip;
- a bottleneck of two 3×3 convs (1024 filters), then ``Dropout(0.5)``;
- each up step ``UpSampling2D(2)`` (nearest) then a 2×2 'same' conv with ReLU, concatenated as
  ``[skip, up]``, then two 3×3 convs with ReLU;
- a 3×3 conv to 2 channels with ReLU, then a 1×1 conv to 1 channel with sigmoid;
- input ``(256, 256, 1)``.

``filters`` and ``depth`` shrink it for tests (64 and 4 reproduce the original), ``input_size``
may hold ``None`` for a model of any size. The suite's zhixuhao proof is against this stand-in.
"""

from __future__ import annotations

# isort: off
import unet_keras  # noqa: F401  # loads triton before TensorFlow (see unet_keras._imports)
import keras
from keras import layers
# isort: on


def _conv(filters: int, kernel: int, activation: str | None = "relu") -> layers.Conv2D:
    return layers.Conv2D(
        filters, kernel, activation=activation, padding="same", kernel_initializer="he_normal"
    )


def zhixuhao_unet(
    input_size: tuple[int | None, int | None, int] = (256, 256, 1),
    filters: int = 64,
    depth: int = 4,
) -> keras.Model:
    """The layer graph of zhixuhao/unet's ``unet(input_size=...)``; dropout after the deepest
    level and the bottleneck, as there."""
    inputs = keras.Input(input_size)
    x = inputs
    skips = []
    for level in range(depth):
        width = filters * 2**level
        x = _conv(width, 3)(x)
        x = _conv(width, 3)(x)
        if level == depth - 1:
            x = layers.Dropout(0.5)(x)
        skips.append(x)
        x = layers.MaxPooling2D(pool_size=(2, 2))(x)
    x = _conv(filters * 2**depth, 3)(x)
    x = _conv(filters * 2**depth, 3)(x)
    x = layers.Dropout(0.5)(x)
    for level in reversed(range(depth)):
        width = filters * 2**level
        up = _conv(width, 2)(layers.UpSampling2D(size=(2, 2))(x))
        x = layers.concatenate([skips[level], up], axis=3)
        x = _conv(width, 3)(x)
        x = _conv(width, 3)(x)
    x = _conv(2, 3)(x)
    outputs = layers.Conv2D(1, 1, activation="sigmoid")(x)
    return keras.Model(inputs=inputs, outputs=outputs)
