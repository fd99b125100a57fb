"""milesial/Pytorch-UNet state dicts (``torch.save(model.state_dict())``, ``*.pth`` or ``*.pt``).

The layout, as its ``unet/unet_parts.py`` and ``unet_model.py`` build it:

- ``inc`` and ``downK`` (``maxpool_conv.1``): ``DoubleConv`` = ``double_conv.{0,1,3,4}`` (3×3 conv,
  pad 1 → BatchNorm2d → ReLU, twice); ``down{depth}`` is the bottleneck;
- ``upJ`` (``J = 1`` the deepest): ``up`` is a 2×2 ``ConvTranspose2d`` to half the channels, or, in the
  ``bilinear=True`` variant, ``nn.Upsample(scale_factor=2, mode='bilinear', align_corners=True)``
  with no weights (the bottleneck is then at half width and each ``DoubleConv(in, out, in // 2)``
  has a first conv at half its input); the upsampled map is zero-padded to the skip's size (split
  around it, the extra row/column after) and ``torch.cat([skip, up])`` feeds ``upJ.conv``;
- ``outc.conv``: the 1×1 head (logits out).

Conv biases: checkpoints from before the project dropped them have ``double_conv.{0,3}.bias``.
Newer files carry a non-tensor ``mask_values`` entry (the training masks' values), which is set
aside. Nothing here is an installable package, so a port is proven against milesial's own forward
pass only when the user names its class (``--source-model unet.unet_model:UNet``).
"""

from __future__ import annotations

import sys
from typing import Any

from unet_bridge.sources.state_dicts import (
    most_biased,
    numbered_depth,
    require,
    state_dict_source,
    width_fields,
)
from unet_spec import UNetSpec

NAME = "milesial"
TITLE = NAME
HOMEPAGE = "https://github.com/milesial/Pytorch-UNet"
#: Keys every milesial state dict holds: the first conv and the head.
KEYS = ("inc.double_conv.0.weight", "outc.conv.weight")
# Not stored in a state dict: milesial's code fixes them (BatchNorm2d defaults, the predict
# script's sigmoid for one class and softmax for more); a given spec may set them.
FREE_FIELDS = ("head", "bn_momentum")


def _enc(level: int, depth: int) -> str:
    return "inc.double_conv" if level == 1 else f"down{level - 1}.maxpool_conv.1.double_conv"


def _up(level: int, depth: int) -> str:
    return f"up{depth + 1 - level}"


def names(spec: UNetSpec) -> dict[str, str]:
    """Canonical block name → milesial module path."""
    d = spec.depth
    out: dict[str, str] = {}
    for level in range(1, d + 2):
        prefix = "mid" if level == d + 1 else f"enc{level}"
        for i, idx in ((1, 0), (2, 3)):
            out[f"{prefix}.conv{i}"] = f"{_enc(level, d)}.{idx}"
            out[f"{prefix}.bn{i}"] = f"{_enc(level, d)}.{idx + 1}"
    for level in range(1, d + 1):
        up = _up(level, d)
        out[f"dec{level}.up"] = f"{up}.up"
        for i, idx in ((1, 0), (2, 3)):
            out[f"dec{level}.conv{i}"] = f"{up}.conv.double_conv.{idx}"
            out[f"dec{level}.bn{i}"] = f"{up}.conv.double_conv.{idx + 1}"
    out["head"] = "outc.conv"
    return out


def milesial_spec(
    in_channels: int,
    num_classes: int,
    bilinear: bool = False,
    base: int = 64,
    depth: int = 4,
    bias: bool = False,
) -> UNetSpec:
    """The spec of milesial's ``UNet(n_channels, n_classes, bilinear)`` (its widths start at
    ``base=64`` with ``depth=4``; forks that change those follow the same rules)."""
    factor = 2 if bilinear else 1
    widths = [base * 2**k for k in range(depth)] + [base * 2**depth // factor]
    dec = [base] + [base * 2 ** (level - 1) // factor for level in range(2, depth + 1)]
    mid = [base * 2 ** (level - 1) for level in range(1, depth + 1)] if bilinear else dec
    channels = width_fields(widths, dec, mid, [] if bilinear else dec)
    return _spec(in_channels, num_classes, channels, bilinear, bias)


def _spec(
    in_channels: int, num_classes: int, channels: dict[str, Any], bilinear: bool, bias: bool
) -> UNetSpec:
    """A milesial spec from its channel fields (:func:`~unet_bridge.sources.state_dicts.
    width_fields`, so the spec of milesial's own class equals the ``milesial`` preset)."""
    return UNetSpec(
        in_channels=in_channels, num_classes=num_classes, **channels,
        padding="same", skip_source="pre_pool", skip_merge="pad", pad_mode="zeros",
        pad_align="center", concat_order="skip_up",
        upsample="bilinear" if bilinear else "transpose", align_corners=bilinear,
        up_conv_kernel=0 if bilinear else 1,
        norm="batch", bn_epsilon=1e-5, bn_momentum=0.1, conv_bias=bias,
        head="softmax" if num_classes > 1 else "sigmoid",
    )  # fmt: skip


def infer(shapes: dict[str, tuple[int, ...]]) -> tuple[UNetSpec, list[str]]:
    """The spec a milesial state dict's shapes describe, and every mismatch with its layout.

    Raises:
        ValueError: Shapes too far from the layout to infer a spec (the tensors named).
    """
    depth = numbered_depth(shapes, "down", "downK.maxpool_conv.*")
    need = [f"{_enc(level, depth)}.{i}.weight" for level in range(1, depth + 2) for i in (0, 3)]
    need += [f"{_up(level, depth)}.conv.double_conv.{i}.weight" for level in range(1, depth + 1)
             for i in (0, 3)]  # fmt: skip
    need.append("outc.conv.weight")
    require(shapes, need)
    bad = [k for k in need if len(shapes[k]) != 4]
    if bad:
        raise ValueError(f"{bad[0]} has shape {shapes[bad[0]]}: a 2-D conv kernel has 4 dimensions")
    widths = [shapes[f"{_enc(level, depth)}.3.weight"][0] for level in range(1, depth + 2)]
    dec = [
        shapes[f"{_up(level, depth)}.conv.double_conv.3.weight"][0] for level in range(1, depth + 1)
    ]
    mid = [
        shapes[f"{_up(level, depth)}.conv.double_conv.0.weight"][0] for level in range(1, depth + 1)
    ]
    transposed = [
        level for level in range(1, depth + 1) if f"{_up(level, depth)}.up.weight" in shapes
    ]
    problems: list[str] = []
    if transposed and len(transposed) != depth:
        odd = sorted(set(range(1, depth + 1)) - set(transposed))
        problems.append(
            "upsampling kind: "
            + ", ".join(f"{_up(level, depth)}.up" for level in odd)
            + " has no transposed conv while the other up steps have one"
        )
    up = [shapes[f"{_up(level, depth)}.up.weight"][1] for level in transposed] if transposed else []
    bias = most_biased(shapes, need[:-1])
    in_channels = shapes["inc.double_conv.0.weight"][1]
    num_classes = shapes["outc.conv.weight"][0]
    bilinear = len(up) != depth
    channels = width_fields(widths, dec, mid, [] if bilinear else up)
    spec = _spec(in_channels, num_classes, channels, bilinear, bias)
    return spec, problems


def notes(spec: UNetSpec, given: UNetSpec | None, other: list[str]) -> list[str]:
    """What the file held, for the read's note (nothing here runs milesial's code: it is no
    installable package, so the port is proven against it when the user names its class)."""
    bilinear = spec.upsample == "bilinear"
    era = "conv biases (an older checkpoint)" if spec.conv_bias else "bias-free convs"
    parts = [f"{NAME} state dict, {'bilinear' if bilinear else 'transposed-conv'} variant, {era}"]
    own = milesial_spec(spec.in_channels, spec.num_classes, bilinear, bias=spec.conv_bias)
    if spec.replace(head=own.head) != own:
        parts.append(f"widths {spec.filters(1)}.., depth {spec.depth}: not milesial's own 64.., 4")
    if other:
        parts.append(f"non-tensor entries set aside: {', '.join(other)}")
    return parts


def check_spec(spec: UNetSpec) -> None:
    """Raise a one-line ``ValueError`` naming the fields where ``spec`` is not milesial's layout."""
    bilinear = spec.upsample == "bilinear"
    own = milesial_spec(
        spec.in_channels, spec.num_classes, bilinear, spec.filters(1), spec.depth, spec.conv_bias
    )
    if spec.activation == "relu":  # the slope of a ReLU means nothing
        spec = spec.replace(negative_slope=own.negative_slope)
    if spec.dropout == 0:  # dropout sites do nothing at rate 0
        spec = spec.replace(dropout_at=own.dropout_at)
    diff = {k: v for k, v in spec.diff(own).items() if k not in FREE_FIELDS}
    if diff:
        raise ValueError(
            f"the spec cannot be written as a {NAME} state dict: "
            + ", ".join(f"{k}={a!r} (milesial: {b!r})" for k, (a, b) in diff.items())
        )


def runnable_hint(spec: UNetSpec) -> str:
    """The options that run milesial's own class for ``spec``, from a checkout of its code."""
    bilinear = "true" if spec.upsample == "bilinear" else "false"
    args = f'{{"n_channels": {spec.in_channels}, "n_classes": {spec.num_classes}, "bilinear": {bilinear}}}'
    return (
        f"--source-model unet.unet_model:UNet --source-args '{args}' (from a checkout of its code)"
    )


SOURCE = state_dict_source(
    sys.modules[__name__],
    "milesial/Pytorch-UNet state dict (both variants, with or without conv biases)",
    HOMEPAGE,
    runnable_hint,
)
