"""MONAI's ``BasicUNet`` (2-D) state dicts and modules.

The layout, as ``monai/networks/nets/basic_unet.py`` builds it from ``features`` (six numbers):

- ``conv_0`` and ``down_K`` (``convs``, after a 2×2 max pooling): ``TwoConv`` = ``conv_0``/``conv_1``,
  each a ``Convolution``: ``conv`` (3×3, padding 1, bias per ``bias``), then ``adn`` in the order
  norm (``adn.N``: instance norm with affine parameters by default, or batch norm) → dropout →
  activation (LeakyReLU, slope 0.1 by default); ``down_4`` is the bottleneck;
- ``upcat_K``: ``upsample.deconv`` (2×2 transposed conv, stride 2, always with a bias) to half the
  channels (``upcat_1``: not halved); when the skip is larger the upsampled map is padded by one
  row/column at the far edge, replicating it (``is_pad``); ``torch.cat([skip, up])`` feeds ``convs``
  (a ``TwoConv``);
- ``final_conv``: the 1×1 head (logits out, always with a bias).

The activation, its slope and the norm's epsilon are constructor arguments, not tensors: a file
says nothing about them, so BasicUNet's defaults are assumed (a given spec may set them). With
``monai`` installed the port is proven against ``BasicUNet`` itself, built with those settings and
loaded strictly.
"""

from __future__ import annotations

import sys
from typing import Any

from unet_bridge.reads import Reference, module_reference
from unet_bridge.sources import _torch as tio
from unet_bridge.sources.state_dicts import (
    most_biased,
    numbered_depth,
    require,
    state_dict_source,
    width_fields,
)
from unet_spec import UNetSpec

NAME = "monai"
TITLE = f"{NAME} BasicUNet"
HOMEPAGE = "https://docs.monai.io/en/stable/networks.html#basicunet"
#: Keys every BasicUNet state dict holds: the first conv and the head.
KEYS = ("conv_0.conv_0.conv.weight", "final_conv.weight")
# Constructor arguments a state dict does not record (BasicUNet's defaults are assumed).
FREE_FIELDS = ("activation", "negative_slope", "bn_epsilon", "bn_momentum", "head")


def _enc(level: int, depth: int) -> str:
    return "conv_0" if level == 1 else f"down_{level - 1}.convs"


def names(spec: UNetSpec) -> dict[str, str]:
    """Canonical block name → BasicUNet module path."""
    d = spec.depth
    norm = {"batch": "bn", "instance": "norm"}.get(spec.norm)
    out: dict[str, str] = {}
    for level in range(1, d + 2):
        prefix = "mid" if level == d + 1 else f"enc{level}"
        for i in (1, 2):
            out[f"{prefix}.conv{i}"] = f"{_enc(level, d)}.conv_{i - 1}.conv"
            if norm:
                out[f"{prefix}.{norm}{i}"] = f"{_enc(level, d)}.conv_{i - 1}.adn.N"
    for level in range(1, d + 1):
        out[f"dec{level}.up"] = f"upcat_{level}.upsample.deconv"
        for i in (1, 2):
            out[f"dec{level}.conv{i}"] = f"upcat_{level}.convs.conv_{i - 1}.conv"
            if norm:
                out[f"dec{level}.{norm}{i}"] = f"upcat_{level}.convs.conv_{i - 1}.adn.N"
    out["head"] = "final_conv"
    return out


def basicunet_spec(
    in_channels: int = 1,
    out_channels: int = 2,
    features: tuple[int, ...] = (32, 32, 64, 128, 256, 32),
    norm: str = "instance",
    bias: bool = True,
    negative_slope: float | None = 0.1,
    eps: float = 1e-5,
) -> UNetSpec:
    """The spec of ``BasicUNet(spatial_dims=2, ...)`` (``negative_slope=None``: ReLU)."""
    f = tuple(features)
    dec = [f[5], f[1], f[2], f[3]]
    up = [f[1], f[2] // 2, f[3] // 2, f[4] // 2]
    channels = width_fields(list(f[:5]), dec, dec, up)
    return _spec(in_channels, out_channels, channels, norm, bias, negative_slope, eps)


def _spec(
    in_channels: int,
    num_classes: int,
    channels: dict[str, Any],
    norm: str,
    bias: bool,
    negative_slope: float | None = 0.1,
    eps: float = 1e-5,
) -> UNetSpec:
    """A BasicUNet spec from its channel fields (:func:`~unet_bridge.sources.state_dicts.
    width_fields`) and the constructor arguments a state dict does not record."""
    return UNetSpec(
        in_channels=in_channels, num_classes=num_classes, **channels,
        padding="same", skip_source="pre_pool", skip_merge="pad", pad_mode="replicate",
        pad_align="end", concat_order="skip_up", upsample="transpose",
        norm=norm, bn_epsilon=eps, conv_bias=bias,
        activation="relu" if negative_slope is None else "leaky_relu",
        negative_slope=0.01 if negative_slope is None else negative_slope,
        head="softmax" if num_classes > 1 else "sigmoid",
    )  # fmt: skip


def infer(shapes: dict[str, tuple[int, ...]]) -> tuple[UNetSpec, list[str]]:
    """The spec a BasicUNet state dict's shapes describe, and the mismatches found on the way.

    Raises:
        ValueError: Shapes too far from the layout to infer a spec (the tensors named).
    """
    if "conv_0.conv_0.conv.weight" not in shapes:
        seen = ", ".join(list(shapes)[:3]) or "no tensors"
        raise ValueError(f"no conv_0.conv_0.conv.weight (the first conv); the file has {seen}, ...")
    first = shapes["conv_0.conv_0.conv.weight"]
    if len(first) != 4:
        raise ValueError(
            f"conv_0.conv_0.conv.weight has shape {first}: a {len(first) - 2}-D BasicUNet "
            f"(spatial_dims={len(first) - 2}); the twins are 2-D"
        )
    depth = numbered_depth(shapes, "down_", "down_K.convs.*")
    need = [f"{_enc(level, depth)}.conv_{i}.conv.weight" for level in range(1, depth + 2)
            for i in (0, 1)]  # fmt: skip
    need += [f"upcat_{level}.convs.conv_{i}.conv.weight" for level in range(1, depth + 1)
             for i in (0, 1)]  # fmt: skip
    need.append("final_conv.weight")
    require(shapes, need)
    problems: list[str] = []
    other_up = sorted({k.split(".")[2] for k in shapes if k.startswith("upcat_") and
                       ".upsample." in k and ".upsample.deconv." not in k})  # fmt: skip
    if other_up:
        problems.append(
            f"upsampling kind: upcat_K.upsample.{other_up[0]} (BasicUNet upsample='nontrainable' "
            "or 'pixelshuffle'); the twins take upsample='deconv'"
        )
    widths = [
        shapes[f"{_enc(level, depth)}.conv_1.conv.weight"][0] for level in range(1, depth + 2)
    ]
    dec = [shapes[f"upcat_{level}.convs.conv_1.conv.weight"][0] for level in range(1, depth + 1)]
    mid = [shapes[f"upcat_{level}.convs.conv_0.conv.weight"][0] for level in range(1, depth + 1)]
    up = [
        shapes.get(f"upcat_{level}.upsample.deconv.weight", (0, 0))[1]
        for level in range(1, depth + 1)
    ]
    bias = most_biased(shapes, need[:-1])
    norm_key = "conv_0.conv_0.adn.N"
    if f"{norm_key}.running_mean" in shapes:
        norm = "batch"
    elif f"{norm_key}.weight" in shapes:
        norm = "instance"
    else:
        norm = "none"
    in_channels = first[1]
    num_classes = shapes["final_conv.weight"][0]
    channels = width_fields(widths, dec, mid, [u or d for u, d in zip(up, dec, strict=True)])
    spec = _spec(in_channels, num_classes, channels, norm, bias)
    return spec, problems


def notes(spec: UNetSpec, given: UNetSpec | None, other: list[str]) -> list[str]:
    """What the file held and what was assumed, for the read's note."""
    parts = [f"{TITLE} state dict, {spec.norm} norm"]
    if given is None:
        parts.append(
            "activation LeakyReLU(0.1) and norm eps 1e-5 assumed (BasicUNet's defaults; a state "
            "dict does not record them)"
        )
    if spec.norm == "none":
        parts.append("no norm tensors: read as norm=None (an instance norm without affine "
                     "parameters would store none either)")  # fmt: skip
    if other:
        parts.append(f"non-tensor entries set aside: {', '.join(other)}")
    return parts


def features_of(spec: UNetSpec) -> tuple[int, ...]:
    """BasicUNet's ``features`` for ``spec`` (which :func:`check_spec` has accepted)."""
    return (*(spec.filters(k) for k in range(1, 6)), spec.decoder_width(1))


def check_spec(spec: UNetSpec) -> None:
    """Raise a one-line ``ValueError`` naming the fields where ``spec`` is not a BasicUNet."""
    if spec.depth != 4:
        raise ValueError(
            f"the spec cannot be written as a {NAME} BasicUNet state dict: depth={spec.depth} "
            "(BasicUNet: 4)"
        )
    slope = spec.negative_slope if spec.activation == "leaky_relu" else None
    own = basicunet_spec(spec.in_channels, spec.num_classes, features_of(spec), spec.norm,
                         spec.conv_bias, slope, spec.bn_epsilon)  # fmt: skip
    if spec.activation == "relu":  # the slope of a ReLU means nothing
        spec = spec.replace(negative_slope=own.negative_slope)
    if spec.dropout == 0:
        spec = spec.replace(dropout_at=own.dropout_at)
    diff = {k: v for k, v in spec.diff(own).items() if k != "head"}
    if diff:
        raise ValueError(
            f"the spec cannot be written as a {NAME} BasicUNet state dict: "
            + ", ".join(f"{k}={a!r} (BasicUNet: {b!r})" for k, (a, b) in diff.items())
        )


def build_module(spec: UNetSpec) -> Any:
    """``monai.networks.nets.BasicUNet(spatial_dims=2, ...)`` with ``spec``'s settings."""
    check_spec(spec)
    from unet_bridge.frameworks import import_frameworks

    import_frameworks()  # monai may load TensorFlow; triton must come first
    from monai.networks.nets import BasicUNet

    act: Any = ("LeakyReLU", {"negative_slope": spec.negative_slope, "inplace": True})
    if spec.activation == "relu":
        act = ("relu", {"inplace": True})
    norm: Any = {
        "instance": ("instance", {"affine": True, "eps": spec.bn_epsilon}),
        "batch": ("batch", {"eps": spec.bn_epsilon}),
        "none": None,
    }[spec.norm]
    return BasicUNet(
        spatial_dims=2, in_channels=spec.in_channels, out_channels=spec.num_classes,
        features=features_of(spec), act=act, norm=norm, bias=spec.conv_bias, upsample="deconv",
    )  # fmt: skip


def reference_for(spec: UNetSpec, state: Any, where: str) -> tuple[Reference | None, list[str]]:
    """BasicUNet built for ``spec`` with ``state`` loaded strictly, as a
    :class:`~unet_bridge.reads.Reference`, or why there is none (monai not installed, or a spec
    BasicUNet cannot build)."""
    try:
        module = tio.load_strict(build_module(spec), state, f"{where} into BasicUNet")
    except ModuleNotFoundError as err:
        if (err.name or "").split(".")[0] != "monai":
            raise
        return None, ["monai is not installed: not proven against BasicUNet"]
    except ValueError as err:
        return None, [f"not proven against BasicUNet ({err})"]
    return module_reference(module, f"MONAI BasicUNet(features={features_of(spec)})"), []


SOURCE = state_dict_source(
    sys.modules[__name__],
    "MONAI BasicUNet (2-D) state dict; proven against BasicUNet when monai is installed",
    HOMEPAGE,
)
