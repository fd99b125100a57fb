"""Named specs. Presets are data: add an entry, and every parametrised test covers it."""

from __future__ import annotations

from typing import Any

from unet_spec.spec import UNetSpec

PRESETS: dict[str, UNetSpec] = {
    # The starting Keras model: pooled skips stretched back with bilinear resizing, sigmoid head.
    # 572² → 388², 31,031,810 parameters.
    "seed": UNetSpec(
        in_channels=3, num_classes=2, depth=4, base_filters=64, padding="valid",
        skip_source="pooled", skip_merge="resize", upsample="transpose", norm="none",
        dropout=0.0, head="sigmoid",
    ),
    # Ronneberger et al. 2015: pre-pool skips, center crop, dropout at the bottom, softmax.
    # 572² → 388², 31,030,658 parameters.
    "paper": UNetSpec(
        in_channels=1, num_classes=2, depth=4, base_filters=64, padding="valid",
        skip_source="pre_pool", skip_merge="crop", upsample="transpose", norm="none",
        dropout=0.5, head="softmax",
    ),
    # Same padding and batch norm: output as large as the input (any multiple of 16).
    "modern": UNetSpec(
        in_channels=3, num_classes=2, depth=4, base_filters=64, padding="same",
        skip_source="pre_pool", skip_merge="none", upsample="transpose", norm="batch",
        dropout=0.0, head="softmax",
    ),
    # milesial/Pytorch-UNet (``UNet(n_channels=3, n_classes=2)``): same padding, batch norm after
    # bias-free convs, the upsampled map zero-padded to the skip's size, ``[skip, up]``.
    "milesial": UNetSpec(
        in_channels=3, num_classes=2, depth=4, base_filters=64, padding="same",
        skip_source="pre_pool", skip_merge="pad", upsample="transpose", norm="batch",
        concat_order="skip_up", conv_bias=False, head="softmax",
    ),
    # Its ``bilinear=True`` variant: aligned-corners bilinear ×2 with no conv, the bottleneck at
    # half width, each decoder level's first conv at half its input.
    "milesial-bilinear": UNetSpec(
        in_channels=3, num_classes=2, depth=4, base_filters=64, padding="same",
        skip_source="pre_pool", skip_merge="pad", upsample="bilinear", align_corners=True,
        up_conv_kernel=0, widths=(64, 128, 256, 512, 512), decoder_widths=(64, 64, 128, 256),
        decoder_mid_widths=(64, 128, 256, 512), norm="batch", concat_order="skip_up",
        conv_bias=False, head="softmax",
    ),
    # MONAI's ``BasicUNet(spatial_dims=2)`` with its defaults: features (32, 32, 64, 128, 256, 32),
    # instance norm, LeakyReLU(0.1), the upsampled map padded by replicating its far edge.
    "basicunet": UNetSpec(
        in_channels=1, num_classes=2, depth=4, base_filters=32, padding="same",
        skip_source="pre_pool", skip_merge="pad", pad_mode="replicate", pad_align="end",
        upsample="transpose", widths=(32, 32, 64, 128, 256), norm="instance",
        activation="leaky_relu", negative_slope=0.1, concat_order="skip_up", head="softmax",
    ),
    # zhixuhao/unet: nearest ×2 then a 2×2 'same' conv with ReLU, ``[skip, up]``, dropout after
    # level 4 and the bottleneck, a 3×3 conv to 2 channels before the 1×1 sigmoid head.
    "zhixuhao": UNetSpec(
        in_channels=1, num_classes=1, depth=4, base_filters=64, padding="same",
        skip_source="pre_pool", skip_merge="none", upsample="nearest", up_conv_kernel=2,
        up_activation=True, concat_order="skip_up", dropout=0.5, dropout_at=("enc4", "mid"),
        head_convs=(2,), head="sigmoid",
    ),
}  # fmt: skip

# Width-16 variants that train on a CPU in minutes.
PRESETS["seed-small"] = PRESETS["seed"].replace(base_filters=16)
PRESETS["paper-small"] = PRESETS["paper"].replace(base_filters=16, dropout=0.1)
PRESETS["modern-small"] = PRESETS["modern"].replace(base_filters=16)
PRESETS["modern-bilinear-small"] = PRESETS["modern"].replace(base_filters=16, upsample="bilinear")
PRESETS["milesial-small"] = PRESETS["milesial"].replace(base_filters=16)
# The plain U-Net of the Attention U-Net family (LeeJunHyun/Image_Segmentation's ``U_Net`` and
# the single-file repos that copy it) at width 16: same padding, conv → batch norm → ReLU, an up
# step of nearest ×2 then a 3×3 conv with its own batch norm and ReLU, ``[skip, up]``, one logit
# map.
PRESETS["attention-plain-small"] = UNetSpec(
    in_channels=3, num_classes=1, depth=4, base_filters=16, padding="same",
    skip_source="pre_pool", skip_merge="none", upsample="nearest", up_conv_kernel=3,
    up_norm=True, up_activation=True, norm="batch", concat_order="skip_up", head="sigmoid",
)  # fmt: skip

# A natural input size per preset (for summaries, tests and benchmarks).
DEFAULT_SIZES: dict[str, int] = {
    "seed": 572, "paper": 572, "modern": 256,
    "seed-small": 252, "paper-small": 252, "modern-small": 128, "modern-bilinear-small": 128,
    "milesial": 256, "milesial-bilinear": 256, "basicunet": 128, "zhixuhao": 256,
    "milesial-small": 128, "attention-plain-small": 128,
}  # fmt: skip


def get_preset(name: str) -> UNetSpec:
    """The spec registered as ``name``.

    Raises:
        ValueError: For an unknown name; the message lists the known ones.
    """
    try:
        return PRESETS[name]
    except KeyError:
        raise ValueError(
            f"unknown preset {name!r}; known presets: {', '.join(sorted(PRESETS))}"
        ) from None


def make_spec(
    preset: str | None,
    overrides: dict[str, Any] | None = None,
    in_channels: int | None = None,
    num_classes: int | None = None,
) -> UNetSpec:
    """The spec named by ``preset`` with ``overrides`` and the two channel counts applied.

    Without a preset, the overrides apply to :class:`UNetSpec`'s defaults (the paper's model).

    Raises:
        ValueError: Unknown preset or field, or an invalid value (the field is named).
    """
    base = get_preset(preset) if preset else UNetSpec()
    fields = {**base.to_dict(), **(overrides or {})}
    if in_channels is not None:
        fields["in_channels"] = in_channels
    if num_classes is not None:
        fields["num_classes"] = num_classes
    return UNetSpec.from_dict(fields)
