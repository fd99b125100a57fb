"""``build_unet(spec)``: the Keras twin, built by walking the spec's plan.

Every layer is named after its plan block (``enc1.conv1`` → ``enc1_conv1``, see
:attr:`unet_spec.Block.keras_name`), the weight contract shared with PyTorch.
Spatial sizes for ``Resizing`` and ``Cropping2D`` come from the plan's layout, never recomputed here.
"""

from __future__ import annotations

from collections.abc import Sequence

import keras
from keras import layers

from unet_keras.layers import AlignedBilinearUpsampling, InstanceNormalization, PadTo
from unet_spec import Block, Layout, UNetSpec, build_plan


def _make_layer(
    block: Block, spec: UNetSpec, layout: Layout | None, kernel_initializer: str
) -> keras.Layer:
    name, kind = block.keras_name, block.kind
    if kind == "conv":
        return layers.Conv2D(block.out_channels, block.kernel, padding=block.padding,
                             use_bias=block.bias, kernel_initializer=kernel_initializer, name=name)  # fmt: skip
    if kind == "upconv":
        return layers.Conv2DTranspose(block.out_channels, block.kernel, strides=block.stride,
                                      padding="valid", kernel_initializer=kernel_initializer,
                                      name=name)  # fmt: skip
    if kind == "batchnorm":
        # One convention for both frameworks: the spec holds PyTorch's momentum.
        return layers.BatchNormalization(
            epsilon=block.epsilon, momentum=1.0 - spec.bn_momentum, name=name
        )
    if kind == "instancenorm":
        # Keras' GroupNormalization (one group per channel) cancels digits on small maps.
        return InstanceNormalization(epsilon=block.epsilon, name=name)
    if kind == "relu":
        return layers.Activation("relu", name=name)
    if kind == "leakyrelu":
        return layers.LeakyReLU(negative_slope=block.slope, name=name)
    if kind == "maxpool":
        return layers.MaxPooling2D(pool_size=block.kernel, strides=block.stride, name=name)
    if kind == "dropout":
        return layers.Dropout(block.rate, name=name)
    if kind == "upsample":
        if block.align_corners:
            return AlignedBilinearUpsampling(block.stride, name=name)
        return layers.UpSampling2D(size=block.stride, interpolation=block.mode, name=name)
    if kind == "pad":
        return PadTo(block.mode, block.align, name=name)
    if kind == "concat":
        return layers.Concatenate(axis=-1, name=name)
    if kind in ("resize", "crop"):
        if layout is None:
            raise ValueError(
                f"layer {block.name}: skip_merge={spec.skip_merge!r} needs a fixed input size. "
                "Received: input_size=None"
            )
        info = layout[block.name]
        if kind == "resize":
            return layers.Resizing(*info.shape[1:], interpolation="bilinear", name=name)
        top, bottom, left, right = info.crop
        return layers.Cropping2D(((top, bottom), (left, right)), name=name)
    raise ValueError(f"layer {block.name}: unknown block kind {kind!r}")


def build_unet(
    spec: UNetSpec,
    input_size: int | Sequence[int] | None = None,
    *,
    head_activation: bool = False,
    name: str = "unet",
    kernel_initializer: str = "glorot_uniform",
) -> keras.Model:
    """Build the Keras model of ``spec`` (NHWC).

    Args:
        spec: The architecture.
        input_size: ``N`` or ``(H, W)``. Required when a skip is resized or cropped (the sizes
            are baked into those layers); otherwise ``None`` builds a model for any size.
        head_activation: Fold ``spec.head`` into the last convolution (as the seed model does).
            By default the model outputs logits, like the PyTorch twin.
        name: Model name.
        kernel_initializer: How the convolution kernels start (a Keras initializer name; Keras'
            own default). ``"zeros"`` where weights are loaded next (:func:`from_canonical`):
            nothing random is drawn for kernels about to be overwritten, which is about a quarter
            of a build's time.

    Example:
        >>> from unet_spec import get_preset
        >>> build_unet(get_preset("paper-small"), 188).output_shape
        (None, 4, 4, 2)
    """
    plan = build_plan(spec)
    layout = plan.layout(input_size) if input_size is not None else None
    hw = layout.input_size if layout is not None else (None, None)
    tensors = {"input": keras.Input(shape=(*hw, spec.in_channels), name="input")}
    for block in plan.blocks[1:]:
        layer = _make_layer(block, spec, layout, kernel_initializer)
        if block is plan.output and head_activation and spec.head != "none":
            layer = layers.Conv2D(block.out_channels, block.kernel, activation=spec.head,
                                  kernel_initializer=kernel_initializer, name=block.keras_name)  # fmt: skip
        if block.kind in ("concat", "pad"):
            tensors[block.name] = layer([tensors[n] for n in block.inputs])
        else:  # resize/crop read only the skip: the reference size is baked into the layer
            tensors[block.name] = layer(tensors[block.inputs[0]])
    return keras.Model(tensors["input"], tensors[plan.output.name], name=name)


def unet_model(
    input_shape: tuple[int, int, int] = (256, 256, 3), num_classes: int = 1
) -> keras.Model:
    """The seed model, layer for layer: valid 3×3 convs from 64 to 1024 filters, pooled skips
    resized bilinearly to the decoder, 2×2 transposed convs, sigmoid head.

    ``unet_model((572, 572, 3), 2)`` outputs ``(None, 388, 388, 2)`` with 31,031,810 parameters.
    """
    from unet_spec import get_preset

    h, w, c = input_shape
    spec = get_preset("seed").replace(in_channels=c, num_classes=num_classes)
    return build_unet(spec, (h, w), head_activation=True, name="unet")
