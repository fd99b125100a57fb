"""The starting model, built the way its own code builds it: auto-named Keras layers.

This is the kind of model people bring to ``unet port``: nothing in it knows about plan names, so
porting has to match its layers by order, kind and shape. ``base_filters`` shrinks the widths so
tests can train and port it on a CPU in seconds; 64 reproduces the starting model exactly.
"""

from __future__ import annotations

# isort: off
import unet_keras  # noqa: F401  # loads triton before TensorFlow (see unet_keras._imports)
import keras
from keras import layers
# isort: on


def encoder_block(inputs, num_filters: int):
    x = layers.Conv2D(num_filters, 3, padding="valid")(inputs)
    x = layers.Activation("relu")(x)
    x = layers.Conv2D(num_filters, 3, padding="valid")(x)
    x = layers.Activation("relu")(x)
    # Only the pooled tensor leaves the block: the skips carry pooled features.
    return layers.MaxPool2D(pool_size=(2, 2), strides=2)(x)


def decoder_block(inputs, skip_features, num_filters: int):
    x = layers.Conv2DTranspose(num_filters, (2, 2), strides=2, padding="valid")(inputs)
    skip_features = layers.Resizing(x.shape[1], x.shape[2])(skip_features)
    x = layers.Concatenate()([x, skip_features])
    x = layers.Conv2D(num_filters, 3, padding="valid")(x)
    x = layers.Activation("relu")(x)
    x = layers.Conv2D(num_filters, 3, padding="valid")(x)
    return layers.Activation("relu")(x)


def seed_unet(
    input_shape: tuple[int, int, int] = (256, 256, 3),
    num_classes: int = 1,
    base_filters: int = 64,
    bottleneck_convs: int = 2,
) -> keras.Model:
    """The starting model (``base_filters=64``) or a narrower copy of it.

    ``bottleneck_convs`` other than 2 gives a model with an extra or a missing layer, which a port
    must refuse.
    """
    f = base_filters
    inputs = keras.Input(shape=input_shape)
    e1 = encoder_block(inputs, f)
    e2 = encoder_block(e1, 2 * f)
    e3 = encoder_block(e2, 4 * f)
    e4 = encoder_block(e3, 8 * f)
    b1 = e4
    for _ in range(bottleneck_convs):
        b1 = layers.Conv2D(16 * f, 3, padding="valid")(b1)
        b1 = layers.Activation("relu")(b1)
    d1 = decoder_block(b1, e4, 8 * f)
    d2 = decoder_block(d1, e3, 4 * f)
    d3 = decoder_block(d2, e2, 2 * f)
    d4 = decoder_block(d3, e1, f)
    outputs = layers.Conv2D(num_classes, 1, padding="valid", activation="sigmoid")(d4)
    return keras.Model(inputs, outputs, name="U-Net")
