"""The U-Net's blocks: encoder levels, bottleneck, decoder levels and head, named and in order.

:func:`unet_blocks` is the one place that turns a :class:`~unet_spec.spec.UNetSpec`'s switches
into blocks; :func:`unet_spec.plan.build_plan` wraps its list in a :class:`~unet_spec.plan.Plan`.
The names it gives are the weight contract (see :mod:`unet_spec.plan`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from unet_spec.blocks import Block, BlockKind

if TYPE_CHECKING:  # a spec's fields are read, never built here
    from unet_spec.spec import UNetSpec


def unet_blocks(spec: UNetSpec) -> tuple[Block, ...]:
    """Lay out the blocks of ``spec`` in execution order.

    Block names (the weight contract) per level ``K`` (``encK``, ``mid``, ``decK``):
    ``convN`` (3×3 conv), ``bnN``/``normN`` (batch/instance norm), ``reluN``/``actN`` (ReLU/leaky
    ReLU), ``pool``, ``dropout`` (``mid.dropin`` before the bottleneck convs); in the decoder
    ``upsample`` (interpolation), ``up`` (the transposed conv or the conv after interpolation),
    ``upbn``/``upnorm`` (the up step's batch/instance norm, ``up_norm``) and ``uprelu``/``upact``
    in the order ``act_before_norm`` says, ``skip`` (resize/crop of the skip), ``pad`` (padding
    of the upsampled map), ``concat``; ``tail.convN`` (extra convs before the head) and ``head``.
    """
    blocks: list[Block] = [Block("input", "input", (), spec.in_channels, spec.in_channels)]
    by_name: dict[str, Block] = {"input": blocks[0]}
    leaky = spec.activation == "leaky_relu"

    def add(name: str, kind: BlockKind, c_out: int, inputs: tuple[str, ...] = (), **kw) -> str:
        src = inputs or (blocks[-1].name,)
        # resize/crop/pad read (source, reference) but only transform the source.
        reads = src[:1] if kind in ("resize", "crop", "pad") else src
        c_in = sum(by_name[n].out_channels for n in reads)
        block = Block(name, kind, src, c_in, c_out, **kw)
        blocks.append(block)
        by_name[name] = block
        return name

    def activation(relu_name: str, c: int) -> str:
        """A ReLU named ``relu_name``, or a leaky ReLU named with ``act`` in place of ``relu``."""
        if leaky:
            name = relu_name.replace("relu", "act")
            return add(name, "leakyrelu", c, slope=spec.negative_slope)
        return add(relu_name, "relu", c)

    def norm(prefix: str, i: int | str, c: int, lead: str = "") -> str:
        """``{prefix}.{lead}bn{i}`` (batch) or ``{prefix}.{lead}norm{i}`` (instance); the last
        block's name when the spec has no norm."""
        if spec.norm == "batch":
            return add(f"{prefix}.{lead}bn{i}", "batchnorm", c, epsilon=spec.bn_epsilon)
        if spec.norm == "instance":
            return add(f"{prefix}.{lead}norm{i}", "instancenorm", c, epsilon=spec.bn_epsilon)
        return blocks[-1].name

    def double_conv(prefix: str, widths: tuple[int, int], first_input: tuple[str, ...] = ()) -> str:
        for i, c_out in enumerate(widths, start=1):
            add(f"{prefix}.conv{i}", "conv", c_out, first_input if i == 1 else (), kernel=3,
                padding=spec.padding, bias=spec.conv_bias)  # fmt: skip
            if spec.act_before_norm:
                activation(f"{prefix}.relu{i}", c_out)
                norm(prefix, i, c_out)
            else:
                norm(prefix, i, c_out)
                activation(f"{prefix}.relu{i}", c_out)
        return blocks[-1].name

    def dropout(site: str, name: str) -> None:
        if spec.dropout > 0 and site in spec.dropout_at:
            add(name, "dropout", blocks[-1].out_channels, rate=spec.dropout)

    skips: dict[int, str] = {}
    for level in range(1, spec.depth + 1):
        c = spec.filters(level)
        double_conv(f"enc{level}", (c, c))
        dropout(f"enc{level}", f"enc{level}.dropout")
        features = blocks[-1].name
        pooled = add(f"enc{level}.pool", "maxpool", c, kernel=2, stride=2)
        skips[level] = pooled if spec.skip_source == "pooled" else features

    dropout("bottom", "mid.dropin")
    c = spec.filters(spec.depth + 1)
    double_conv("mid", (c, c))
    dropout("mid", "mid.dropout")
    x = blocks[-1].name

    for level in range(spec.depth, 0, -1):
        c_up = spec.up_width(level)
        if spec.upsample == "transpose":
            up = add(f"dec{level}.up", "upconv", c_up, (x,), kernel=2, stride=2)
        else:
            up = add(f"dec{level}.upsample", "upsample", by_name[x].out_channels, (x,), stride=2,
                     mode=spec.upsample, align_corners=spec.align_corners)  # fmt: skip
            if spec.up_conv_kernel:
                # An even kernel with 'same' padding pads one row/column after (zhixuhao/unet).
                up = add(f"dec{level}.up", "conv", c_up, kernel=spec.up_conv_kernel,
                         padding="valid" if spec.up_conv_kernel == 1 else "same")  # fmt: skip
        # The up step's norm and activation, in the order of the double convs' pairs.
        for step in ("act", "norm") if spec.act_before_norm else ("norm", "act"):
            if step == "act" and spec.up_activation:
                up = activation(f"dec{level}.uprelu", c_up)
            elif step == "norm" and spec.up_norm:
                up = norm(f"dec{level}", "", c_up, lead="up")
        skip = skips[level]
        if spec.skip_merge in ("resize", "crop"):
            skip = add(f"dec{level}.skip", spec.skip_merge, by_name[skip].out_channels, (skip, up))
        elif spec.skip_merge == "pad":
            up = add(f"dec{level}.pad", "pad", c_up, (up, skip), mode=spec.pad_mode,
                     align=spec.pad_align)  # fmt: skip
        pair = (up, skip) if spec.concat_order == "up_skip" else (skip, up)
        add(f"dec{level}.concat", "concat", sum(by_name[n].out_channels for n in pair), pair)
        x = double_conv(f"dec{level}", (spec.decoder_mid_width(level), spec.decoder_width(level)))
        dropout(f"dec{level}", f"dec{level}.dropout")
        x = blocks[-1].name

    for i, c in enumerate(spec.head_convs, start=1):
        add(f"tail.conv{i}", "conv", c, kernel=3, padding=spec.padding, bias=spec.conv_bias)
        activation(f"tail.relu{i}", c)
    add("head", "conv", spec.num_classes, kernel=1, padding="valid")
    return tuple(blocks)
