"""The framework-free description of a U-Net.

A :class:`UNetSpec` holds only architecture choices. It is validated when it is built and serialises
to JSON without loss, so the same spec travels in checkpoints, canonical weight files and configs.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, fields
from typing import Any, Literal

Padding = Literal["valid", "same"]
SkipSource = Literal["pooled", "pre_pool"]
SkipMerge = Literal["resize", "crop", "none"]
Upsample = Literal["transpose", "bilinear"]
Norm = Literal["none", "batch"]
Head = Literal["sigmoid", "softmax", "none"]

_CHOICES: dict[str, tuple[str, ...]] = {
    "padding": ("valid", "same"),
    "skip_source": ("pooled", "pre_pool"),
    "skip_merge": ("resize", "crop", "none"),
    "upsample": ("transpose", "bilinear"),
    "norm": ("none", "batch"),
    "head": ("sigmoid", "softmax", "none"),
}


@dataclass(frozen=True)
class UNetSpec:
    """Architecture of a U-Net, shared by the PyTorch and the Keras builders.

    Attributes:
        in_channels: Channels of the input image (1 grey, 3 RGB, ...).
        num_classes: Output channels (one logit map per class).
        depth: Number of 2×2 max-poolings on the contracting path.
        base_filters: Filters of the first level; each deeper level doubles them.
        padding: ``"valid"`` (unpadded 3×3 convs, output smaller than input, as in the paper) or
            ``"same"`` (output as large as the input).
        skip_source: ``"pre_pool"`` (skips carry the features before pooling, as in the paper) or
            ``"pooled"`` (after pooling, as in the seed model).
        skip_merge: How a skip is brought to the decoder's size: ``"resize"`` (bilinear),
            ``"crop"`` (center crop) or ``"none"`` (sizes already agree).
        upsample: ``"transpose"`` (2×2 transposed conv, stride 2) or ``"bilinear"`` (×2 bilinear
            upsampling followed by a 1×1 conv that halves the channels).
        norm: ``"none"`` or ``"batch"`` (batch norm after every 3×3 conv).
        bn_epsilon: Batch-norm epsilon, the same number in both frameworks.
        bn_momentum: Batch-norm momentum in the PyTorch convention (weight of the new batch); the
            Keras layer gets ``1 - bn_momentum``.
        dropout: Dropout rate at the end of the contracting path (0 disables it).
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

    def __post_init__(self) -> None:
        for name, lo, hi in (
            ("in_channels", 1, 64),
            ("num_classes", 1, 1024),
            ("depth", 1, 8),
            ("base_filters", 1, 4096),
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
        for name, lo, hi, lo_open in (
            ("dropout", 0.0, 1.0, False),
            ("bn_epsilon", 0.0, 1.0, True),
            ("bn_momentum", 0.0, 1.0, True),
        ):
            value = getattr(self, name)
            ok = isinstance(value, (int, float)) and not isinstance(value, bool)
            ok = ok and (lo < value if lo_open else lo <= value) and value < hi
            if not ok:
                interval = f"({lo}, {hi})" if lo_open else f"[{lo}, {hi})"
                raise ValueError(
                    f"UNetSpec.{name} must be a number in {interval}. Received: {name}={value!r}"
                )
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
        if self.skip_merge == "none" and self.padding != "same":
            raise ValueError(
                "UNetSpec.skip_merge='none' needs padding='same' (with valid padding the skip is "
                f"larger than the decoder features). Received: padding={self.padding!r}"
            )

    # -- derived numbers -------------------------------------------------------------------------
    def filters(self, level: int) -> int:
        """Filters at ``level`` (1 = first encoder level, ``depth + 1`` = bottleneck)."""
        return self.base_filters * 2 ** (level - 1)

    # -- serialisation ---------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

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
