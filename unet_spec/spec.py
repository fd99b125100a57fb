"""The framework-free description of a U-Net.

A :class:`UNetSpec` holds only architecture choices. It is validated when it is built and serialises
to JSON without loss, so the same spec travels in checkpoints, canonical weight files and configs.

The fields cover the U-Net family as it is built in the wild (the paper, the seed model,
milesial/Pytorch-UNet, MONAI's ``BasicUNet``, zhixuhao/unet, keras-unet). Every field has a default
that keeps older specs meaning what they meant, so a file written before a field existed still
loads as the same network.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, fields
from typing import Any, Literal

Padding = Literal["valid", "same"]
SkipSource = Literal["pooled", "pre_pool"]
SkipMerge = Literal["resize", "crop", "pad", "none"]
Upsample = Literal["transpose", "bilinear", "nearest"]
Norm = Literal["none", "batch", "instance"]
Activation = Literal["relu", "leaky_relu"]
ConcatOrder = Literal["up_skip", "skip_up"]
PadMode = Literal["zeros", "replicate"]
PadAlign = Literal["center", "end"]
Head = Literal["sigmoid", "softmax", "none"]

_CHOICES: dict[str, tuple[str, ...]] = {
    "padding": ("valid", "same"),
    "skip_source": ("pooled", "pre_pool"),
    "skip_merge": ("resize", "crop", "pad", "none"),
    "upsample": ("transpose", "bilinear", "nearest"),
    "norm": ("none", "batch", "instance"),
    "activation": ("relu", "leaky_relu"),
    "concat_order": ("up_skip", "skip_up"),
    "pad_mode": ("zeros", "replicate"),
    "pad_align": ("center", "end"),
    "head": ("sigmoid", "softmax", "none"),
}
_BOOLS = ("conv_bias", "act_before_norm", "align_corners", "up_activation", "up_norm")
# Width tuples: field name → how many entries a spec of depth D needs.
_WIDTHS = {
    "widths": lambda depth: depth + 1,
    "decoder_widths": lambda depth: depth,
    "decoder_mid_widths": lambda depth: depth,
    "up_widths": lambda depth: depth,
}


@dataclass(frozen=True)
class UNetSpec:
    """Architecture of a U-Net, shared by the PyTorch and the Keras builders.

    Levels are numbered from 1 (the full-resolution level) to ``depth``; the bottleneck is level
    ``depth + 1``. Every per-level tuple lists level 1 first.

    Attributes:
        in_channels: Channels of the input image (1 grey, 3 RGB, ...).
        num_classes: Output channels (one logit map per class).
        depth: Number of 2×2 max-poolings on the contracting path.
        base_filters: Filters of the first level; each deeper level doubles them (unless
            ``widths`` lists them).
        padding: ``"valid"`` (unpadded 3×3 convs, output smaller than input, as in the paper) or
            ``"same"`` (output as large as the input).
        skip_source: ``"pre_pool"`` (skips carry the features before pooling, as in the paper) or
            ``"pooled"`` (after pooling, as in the seed model).
        skip_merge: How the skip and the upsampled map are brought to one size: ``"resize"`` (the
            skip, bilinear), ``"crop"`` (the skip, center crop), ``"pad"`` (the upsampled map is
            padded to the skip's size, so any input size works, as in milesial/Pytorch-UNet and
            MONAI) or ``"none"`` (sizes already agree).
        pad_mode: What ``"pad"`` fills with: ``"zeros"`` or ``"replicate"`` (the edge row/column).
        pad_align: Where ``"pad"`` puts the rows/columns: ``"center"`` (split, the extra one after:
            milesial) or ``"end"`` (all after: MONAI's ``UpCat``).
        concat_order: ``"up_skip"`` (``[upsampled, skip]``, the paper) or ``"skip_up"`` (milesial,
            MONAI, zhixuhao/unet).
        upsample: ``"transpose"`` (2×2 transposed conv, stride 2), ``"bilinear"`` or ``"nearest"``
            (×2 interpolation, then the conv of ``up_conv_kernel``).
        align_corners: Bilinear interpolation with aligned corners (milesial's ``bilinear=True``)
            instead of half-pixel centers.
        up_conv_kernel: Kernel of the conv after ×2 interpolation (1: a 1×1 conv; 2: a 2×2 'same'
            conv, zhixuhao/unet; 0: no conv, the channels pass unchanged, milesial's bilinear
            variant). Only for ``"bilinear"`` and ``"nearest"``; leave it at 1 for ``"transpose"``.
        up_activation: Apply ``activation`` after the up step's conv (zhixuhao/unet).
        up_norm: Apply ``norm`` (with ``bn_epsilon``/``bn_momentum``) after the up step's conv,
            ordered with ``up_activation`` as ``act_before_norm`` says: ``Upsample`` → conv →
            ``BatchNorm2d`` → ReLU, the plain U-Net of the Attention U-Net family (also after a
            transposed conv). Needs an up-step conv and ``norm`` other than ``"none"``.
        widths: Filters per encoder level and the bottleneck (``depth + 1`` values); empty means
            ``base_filters`` doubling per level.
        decoder_widths: Output filters of each decoder level (``depth`` values); empty means the
            encoder width of the same level.
        decoder_mid_widths: Filters of each decoder level's first conv; empty means
            ``decoder_widths`` (milesial's bilinear variant halves them).
        up_widths: Channels out of each level's up step when it has a conv; empty means the
            decoder width of that level.
        conv_bias: Whether the 3×3 convs have a bias (the up-step convs and the 1×1 head always
            do). milesial and keras-unet drop it before batch norm.
        activation: ``"relu"`` or ``"leaky_relu"`` (with ``negative_slope``).
        negative_slope: Slope of ``"leaky_relu"`` for negative inputs.
        norm: ``"none"``, ``"batch"`` or ``"instance"`` (affine; after every 3×3 conv).
        act_before_norm: Apply the activation before the norm (keras-unet's ``custom_unet``)
            instead of after it.
        bn_epsilon: Epsilon of the norm layers, the same number in both frameworks.
        bn_momentum: Batch-norm momentum in the PyTorch convention (weight of the new batch); the
            Keras layer gets ``1 - bn_momentum``.
        dropout: Dropout rate at ``dropout_at`` (0 disables it).
        dropout_at: Where dropout is applied: ``"encK"`` (after encoder level K's convs, before
            pooling; the skip carries the dropped features), ``"bottom"`` (after the last pooling),
            ``"mid"`` (after the bottleneck convs), ``"decK"`` (after decoder level K's convs).
        head_convs: Filters of extra 3×3 convs (each followed by the activation) before the 1×1
            head (zhixuhao/unet has one with 2 filters).
        head: Activation that turns logits into probabilities: ``"sigmoid"``, ``"softmax"`` or
            ``"none"``. Models output logits; the head is applied where probabilities are needed.

    Example:
        >>> spec = UNetSpec(in_channels=1, num_classes=2, depth=2, base_filters=8)
        >>> UNetSpec.from_json(spec.to_json()) == spec
        True
    """

    in_channels: int = 1
    num_classes: int = 2
    depth: int = 4
    base_filters: int = 64
    padding: Padding = "valid"
    skip_source: SkipSource = "pre_pool"
    skip_merge: SkipMerge = "crop"
    upsample: Upsample = "transpose"
    norm: Norm = "none"
    bn_epsilon: float = 1e-5
    bn_momentum: float = 0.1
    dropout: float = 0.0
    head: Head = "softmax"
    pad_mode: PadMode = "zeros"
    pad_align: PadAlign = "center"
    concat_order: ConcatOrder = "up_skip"
    align_corners: bool = False
    up_conv_kernel: int = 1
    up_activation: bool = False
    up_norm: bool = False
    widths: tuple[int, ...] = ()
    decoder_widths: tuple[int, ...] = ()
    decoder_mid_widths: tuple[int, ...] = ()
    up_widths: tuple[int, ...] = ()
    conv_bias: bool = True
    activation: Activation = "relu"
    negative_slope: float = 0.01
    act_before_norm: bool = False
    dropout_at: tuple[str, ...] = ("mid",)
    head_convs: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        for name, lo, hi in (
            ("in_channels", 1, 64),
            ("num_classes", 1, 1024),
            ("depth", 1, 8),
            ("base_filters", 1, 4096),
            ("up_conv_kernel", 0, 3),
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
                raise ValueError(
                    f"UNetSpec.{name} must be an integer in [{lo}, {hi}]. Received: {name}={value!r}"
                )
        for name, allowed in _CHOICES.items():
            value = getattr(self, name)
            if value not in allowed:
                raise ValueError(
                    f"UNetSpec.{name} must be one of {', '.join(map(repr, allowed))}. "
                    f"Received: {name}={value!r}"
                )
        for name in _BOOLS:
            if not isinstance(getattr(self, name), bool):
                raise ValueError(
                    f"UNetSpec.{name} must be true or false. Received: {name}={getattr(self, name)!r}"
                )
        for name, lo, hi, lo_open in (
            ("dropout", 0.0, 1.0, False),
            ("bn_epsilon", 0.0, 1.0, True),
            ("bn_momentum", 0.0, 1.0, True),
            ("negative_slope", 0.0, 1.0, False),
        ):
            value = getattr(self, name)
            ok = isinstance(value, (int, float)) and not isinstance(value, bool)
            ok = ok and (lo < value if lo_open else lo <= value) and value < hi
            if not ok:
                interval = f"({lo}, {hi})" if lo_open else f"[{lo}, {hi})"
                raise ValueError(
                    f"UNetSpec.{name} must be a number in {interval}. Received: {name}={value!r}"
                )
        for name, count in _WIDTHS.items():
            self._check_widths(name, count(self.depth))
        self._check_widths("head_convs", None)
        self._check_dropout_at()
        self._check_combinations()

    def _check_widths(self, name: str, count: int | None) -> None:
        value = getattr(self, name)
        if isinstance(value, list):  # JSON gives lists; the frozen spec holds tuples
            value = tuple(value)
            object.__setattr__(self, name, value)
        ok = isinstance(value, tuple) and all(
            isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= 8192 for v in value
        )
        if not ok or (count is not None and value and len(value) != count):
            need = f"{count} integers in [1, 8192] (or none)" if count else "integers in [1, 8192]"
            raise ValueError(f"UNetSpec.{name} must list {need}. Received: {name}={value!r}")

    def _check_dropout_at(self) -> None:
        value = self.dropout_at
        if isinstance(value, list):
            value = tuple(value)
            object.__setattr__(self, "dropout_at", value)
        sites = [f"enc{k}" for k in range(1, self.depth + 1)] + ["bottom", "mid"]
        sites += [f"dec{k}" for k in range(1, self.depth + 1)]
        if not isinstance(value, tuple) or any(v not in sites for v in value):
            raise ValueError(
                f"UNetSpec.dropout_at must list sites among {', '.join(sites)}. "
                f"Received: dropout_at={value!r}"
            )
        if len(set(value)) != len(value):
            raise ValueError(
                f"UNetSpec.dropout_at lists a site twice. Received: dropout_at={value!r}"
            )

    def _check_combinations(self) -> None:
        if self.skip_source == "pooled" and self.skip_merge != "resize":
            raise ValueError(
                "UNetSpec.skip_merge must be 'resize' when skip_source='pooled' (pooled skips are "
                f"smaller than the decoder features). Received: skip_merge={self.skip_merge!r}"
            )
        if self.head == "softmax" and self.num_classes < 2:
            raise ValueError(
                "UNetSpec.head='softmax' needs num_classes >= 2 (use 'sigmoid' for one class). "
                f"Received: num_classes={self.num_classes!r}"
            )
        if self.skip_merge in ("none", "pad") and self.padding != "same":
            raise ValueError(
                f"UNetSpec.skip_merge={self.skip_merge!r} needs padding='same' (with valid padding "
                f"the skip is larger than the decoder features). Received: padding={self.padding!r}"
            )
        if self.upsample == "transpose" and self.up_conv_kernel != 1:
            raise ValueError(
                "UNetSpec.up_conv_kernel is the conv after interpolation; upsample='transpose' has "
                f"none (leave it at 1). Received: up_conv_kernel={self.up_conv_kernel!r}"
            )
        if self.align_corners and self.upsample != "bilinear":
            raise ValueError(
                "UNetSpec.align_corners needs upsample='bilinear'. "
                f"Received: upsample={self.upsample!r}"
            )
        if self.up_activation and not self.up_has_conv:
            raise ValueError(
                "UNetSpec.up_activation needs an up-step conv (up_conv_kernel > 0). "
                f"Received: up_conv_kernel={self.up_conv_kernel!r}"
            )
        if self.up_norm and not self.up_has_conv:
            raise ValueError(
                "UNetSpec.up_norm needs an up-step conv (up_conv_kernel > 0). "
                f"Received: up_norm=True, up_conv_kernel={self.up_conv_kernel!r}"
            )
        if self.up_norm and self.norm == "none":
            raise ValueError(
                "UNetSpec.up_norm applies the spec's norm, and norm='none' has none (use 'batch' "
                f"or 'instance'). Received: up_norm=True, norm={self.norm!r}"
            )
        if self.up_widths and not self.up_has_conv:
            raise ValueError(
                "UNetSpec.up_widths needs an up-step conv; without one the channels pass "
                f"unchanged. Received: up_widths={self.up_widths!r}"
            )

    # -- derived numbers -------------------------------------------------------------------------
    @property
    def up_has_conv(self) -> bool:
        """Whether each up step ends in a conv (a transposed conv, or one after interpolation)."""
        return self.upsample == "transpose" or self.up_conv_kernel > 0

    def filters(self, level: int) -> int:
        """Filters of encoder ``level`` (1 = first level, ``depth + 1`` = bottleneck)."""
        if self.widths:
            return self.widths[level - 1]
        return self.base_filters * 2 ** (level - 1)

    def decoder_width(self, level: int) -> int:
        """Output filters of decoder ``level`` (its second conv)."""
        return self.decoder_widths[level - 1] if self.decoder_widths else self.filters(level)

    def decoder_mid_width(self, level: int) -> int:
        """Filters of decoder ``level``'s first conv."""
        if self.decoder_mid_widths:
            return self.decoder_mid_widths[level - 1]
        return self.decoder_width(level)

    def up_width(self, level: int) -> int:
        """Channels out of decoder ``level``'s up step."""
        if not self.up_has_conv:  # interpolation alone keeps the channels of the level below
            return (
                self.filters(self.depth + 1)
                if level == self.depth
                else self.decoder_width(level + 1)
            )
        return self.up_widths[level - 1] if self.up_widths else self.decoder_width(level)

    # -- serialisation ---------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {
            f.name: list(v) if isinstance(v := getattr(self, f.name), tuple) else v
            for f in fields(self)
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> UNetSpec:
        if not isinstance(data, dict):
            raise ValueError(
                f"A UNetSpec needs a mapping of fields. Received: {type(data).__name__}"
            )
        known = {f.name for f in fields(cls)}
        extra = sorted(set(data) - known)
        if extra:
            raise ValueError(
                f"UNetSpec has no field(s) {', '.join(map(repr, extra))}; "
                f"known fields: {', '.join(sorted(known))}"
            )
        return cls(**data)

    @classmethod
    def from_json(cls, text: str) -> UNetSpec:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise ValueError(f"UNetSpec JSON is not valid JSON: {err}") from None
        return cls.from_dict(data)

    def replace(self, **changes: Any) -> UNetSpec:
        """A copy with ``changes`` applied (validated again)."""
        return dataclasses.replace(self, **changes)

    def diff(self, other: UNetSpec) -> dict[str, tuple[Any, Any]]:
        """Fields whose values differ, as ``{field: (self_value, other_value)}``."""
        a, b = self.to_dict(), other.to_dict()
        return {k: (a[k], b[k]) for k in a if a[k] != b[k]}

    # Convenience views on the plan (kept here so users need one import).
    def plan(self):
        from unet_spec.plan import build_plan

        return build_plan(self)

    def layout(self, size: int | tuple[int, int]):
        return self.plan().layout(size)
