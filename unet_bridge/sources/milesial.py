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

from pathlib import Path
from typing import Any

from unet_bridge.reads import Reference, SourceRead, module_reference
from unet_bridge.sources import Source, register
from unet_bridge.sources import _torch as tio
from unet_spec import UNetSpec

NAME = "milesial"
HOMEPAGE = "https://github.com/milesial/Pytorch-UNet"
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
    return _spec(in_channels, num_classes, widths, dec, mid, [] if bilinear else dec, bias)


def _spec(
    in_channels: int,
    num_classes: int,
    widths: list[int],
    dec: list[int],
    mid: list[int],
    up: list[int],
    bias: bool,
) -> UNetSpec:
    """A milesial spec from its channel plan, with every width list left empty where it is the
    default (so the spec of milesial's own class equals the ``milesial`` preset)."""
    depth = len(dec)
    doubling = all(w == widths[0] * 2**k for k, w in enumerate(widths))
    explicit = tuple(widths)
    enc = [widths[k] for k in range(depth)]
    bilinear = not up
    return UNetSpec(
        in_channels=in_channels, num_classes=num_classes, depth=depth, base_filters=widths[0],
        padding="same", skip_source="pre_pool", skip_merge="pad", pad_mode="zeros",
        pad_align="center", concat_order="skip_up",
        upsample="bilinear" if bilinear else "transpose", align_corners=bilinear,
        up_conv_kernel=0 if bilinear else 1,
        widths=() if doubling else explicit,
        decoder_widths=() if dec == enc else tuple(dec),
        decoder_mid_widths=() if mid == dec else tuple(mid),
        up_widths=() if bilinear or up == dec else tuple(up),
        norm="batch", bn_epsilon=1e-5, bn_momentum=0.1, conv_bias=bias,
        head="softmax" if num_classes > 1 else "sigmoid",
    )  # fmt: skip


def _state(path_or_object: Any) -> tuple[dict[str, Any], list[str]]:
    return tio.cached_state(path_or_object)


def recognise(path_or_object: Any) -> bool:
    state, _ = _state(path_or_object)
    return "inc.double_conv.0.weight" in state and "outc.conv.weight" in state


def infer(shapes: dict[str, tuple[int, ...]]) -> tuple[UNetSpec, list[str]]:
    """The spec a milesial state dict's shapes describe, and every mismatch with its layout.

    Raises:
        ValueError: Shapes too far from the layout to infer a spec (the tensors named).
    """
    downs = sorted(int(k[4:].split(".")[0]) for k in shapes if k.startswith("down") and
                   k[4:].split(".")[0].isdigit())  # fmt: skip
    depth = max(downs) if downs else 0
    if depth < 1:
        raise ValueError("no downK.maxpool_conv.* tensors (the contracting path)")
    need = [f"{_enc(level, depth)}.{i}.weight" for level in range(1, depth + 2) for i in (0, 3)]
    need += [f"{_up(level, depth)}.conv.double_conv.{i}.weight" for level in range(1, depth + 1)
             for i in (0, 3)]  # fmt: skip
    need.append("outc.conv.weight")
    missing = [k for k in need if k not in shapes]
    if missing:
        raise ValueError(f"missing {', '.join(missing)} (the widths cannot be read)")
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
    # The bias era is what most convs say; a conv that differs is named by the layout match.
    biased = [k for k in need[:-1] if k.replace(".weight", ".bias") in shapes]
    bias = len(biased) > len(need[:-1]) // 2
    in_channels = shapes["inc.double_conv.0.weight"][1]
    num_classes = shapes["outc.conv.weight"][0]
    spec = _spec(in_channels, num_classes, widths, dec, mid, up if len(up) == depth else [], bias)
    return spec, problems


def read(path: Path, spec: UNetSpec | None = None) -> SourceRead:
    """Canonical weights, the inferred spec and what can be proven, from a milesial state dict.

    Raises:
        ValueError: The file's tensors do not fit the layout (every mismatch named), or ``spec``
            contradicts them.
    """
    state, other = _state(path)
    shapes = tio.shapes_of(state)
    try:
        inferred, problems = infer(shapes)
    except ValueError as err:
        raise ValueError(f"{path}: not a {NAME} layout: {err}") from None
    layout = names(inferred)
    problems += tio.match_layout(shapes, layout, inferred)
    if problems:
        raise ValueError(
            f"{path}: does not fit the {NAME} layout ({len(problems)} mismatches): "
            + "; ".join(problems)
        )
    result = tio.reconcile(inferred, spec, FREE_FIELDS, str(path))
    weights = tio.canonical(state, layout, inferred)
    tio.forget()
    return SourceRead(weights, result, None, _note(result, other))


def _note(spec: UNetSpec, other: list[str]) -> str:
    bilinear = spec.upsample == "bilinear"
    era = "conv biases (an older checkpoint)" if spec.conv_bias else "bias-free convs"
    parts = [f"{NAME} state dict, {'bilinear' if bilinear else 'transposed-conv'} variant, {era}"]
    own = milesial_spec(spec.in_channels, spec.num_classes, bilinear, bias=spec.conv_bias)
    if spec.replace(head=own.head) != own:
        parts.append(f"widths {spec.filters(1)}.., depth {spec.depth}: not milesial's own 64.., 4")
    if other:
        parts.append(f"non-tensor entries set aside: {', '.join(other)}")
    return "; ".join(parts)


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


def write(weights: Any, spec: UNetSpec, path: Path) -> Path:
    """``torch.save`` a state dict that milesial's ``UNet`` loads with ``strict=True``."""
    check_spec(spec)
    return tio.save_state(tio.source_state(weights, names(spec), spec), path)


def reference_from_module(module: Any, path: Path, description: str) -> Reference:
    """A user-named module (milesial's ``UNet``, or a fork) with ``path``'s tensors loaded strictly."""
    state, _ = tio.load_state(path)
    tio.load_strict(module, state, f"{path} into {description}")
    return module_reference(module, description)


def runnable_hint(spec: UNetSpec) -> str:
    """The options that run milesial's own class for ``spec``, from a checkout of its code."""
    bilinear = "true" if spec.upsample == "bilinear" else "false"
    args = f'{{"n_channels": {spec.in_channels}, "n_classes": {spec.num_classes}, "bilinear": {bilinear}}}'
    return (
        f"--source-model unet.unet_model:UNet --source-args '{args}' (from a checkout of its code)"
    )


SOURCE = register(
    Source(
        name=NAME,
        description="milesial/Pytorch-UNet state dict (both variants, with or without conv biases)",
        framework="torch",
        suffixes=tio.STATE_SUFFIXES,
        recognise=recognise,
        read=read,
        write=write,
        check_spec=check_spec,
        reference_from_module=reference_from_module,
        homepage=HOMEPAGE,
        runnable_hint=runnable_hint,
    )
)
