"""The layer plan: the ordered, named blocks that both builders walk.

The plan is computed once from a :class:`~unet_spec.spec.UNetSpec`. Builders create one layer per
block and never do channel or shape arithmetic themselves: channels come from the blocks, spatial
sizes (for the Keras ``Resizing`` and ``Cropping2D`` layers) from :meth:`Plan.layout`.

Names are the weight contract. A block called ``enc1.conv1`` is the PyTorch module at path
``enc1.conv1`` (so ``state_dict`` keys read ``enc1.conv1.weight``), the Keras layer named
``enc1_conv1`` (:attr:`Block.keras_name`: dots become underscores, because Keras' torch backend
registers variables as PyTorch parameters, whose names cannot hold dots; plan names never contain
underscores, so the rule is reversible), and the tensors ``enc1.conv1.weight`` /
``enc1.conv1.bias`` of a canonical weight file. Renaming a block breaks every saved file: add new
blocks, never rename old ones.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Literal

from unet_spec.spec import UNetSpec

BlockKind = Literal[
    "input", "conv", "batchnorm", "instancenorm", "relu", "leakyrelu", "maxpool", "dropout",
    "upconv", "upsample", "resize", "crop", "pad", "concat",
]  # fmt: skip

# Blocks that own weights, and the canonical tensors they own (torch layouts).
WEIGHT_KINDS = ("conv", "upconv", "batchnorm", "instancenorm")


@dataclass(frozen=True)
class Block:
    """One layer of the plan.

    Attributes:
        name: Hierarchical name, the weight contract (``enc1.conv1``).
        kind: What the layer computes (see ``BlockKind``).
        inputs: Names of the blocks whose outputs this block reads, in order. ``concat`` reads
            ``(upsampled, skip)`` or ``(skip, upsampled)`` (the spec's ``concat_order``);
            ``resize``/``crop``/``pad`` read ``(source, reference)`` and bring the source to the
            reference's spatial size.
        in_channels: Channels read (for ``concat``, the sum).
        out_channels: Channels produced.
        kernel: Kernel size of ``conv``/``upconv``/``maxpool`` (0 otherwise).
        stride: Stride of ``upconv``/``maxpool``.
        padding: ``"valid"`` or ``"same"`` for ``conv`` (an even kernel pads one more row and
            column after than before, as both frameworks do).
        rate: Dropout rate for ``dropout``.
        bias: Whether a ``conv`` has a bias.
        mode: ``"bilinear"`` or ``"nearest"`` for ``upsample``; ``"zeros"`` or ``"replicate"``
            for ``pad``.
        align_corners: Bilinear ``upsample`` with aligned corners.
        align: ``"center"`` or ``"end"``: where ``pad`` puts its rows and columns.
        slope: Negative slope of ``leakyrelu``.
        epsilon: Epsilon of ``batchnorm`` and ``instancenorm``.
    """

    name: str
    kind: BlockKind
    inputs: tuple[str, ...]
    in_channels: int
    out_channels: int
    kernel: int = 0
    stride: int = 1
    padding: str = "valid"
    rate: float = 0.0
    bias: bool = True
    mode: str = ""
    align_corners: bool = False
    align: str = "center"
    slope: float = 0.0
    epsilon: float = 0.0

    @property
    def keras_name(self) -> str:
        """The Keras layer name: the plan name with dots replaced by underscores."""
        return keras_name(self.name)

    @property
    def weight_shapes(self) -> dict[str, tuple[int, ...]]:
        """Canonical tensors of this block, in PyTorch layouts."""
        c_in, c_out, k = self.in_channels, self.out_channels, self.kernel
        if self.kind == "conv":
            weight = {f"{self.name}.weight": (c_out, c_in, k, k)}
            return {**weight, f"{self.name}.bias": (c_out,)} if self.bias else weight
        if self.kind == "upconv":
            return {f"{self.name}.weight": (c_in, c_out, k, k), f"{self.name}.bias": (c_out,)}
        if self.kind == "batchnorm":
            return {
                f"{self.name}.{t}": (c_out,)
                for t in ("weight", "bias", "running_mean", "running_var")
            }
        if self.kind == "instancenorm":  # affine, no running statistics
            return {f"{self.name}.{t}": (c_out,) for t in ("weight", "bias")}
        return {}

    @property
    def trainable_params(self) -> int:
        if self.kind == "batchnorm":
            return 2 * self.out_channels
        return sum(_numel(s) for s in self.weight_shapes.values())


@dataclass(frozen=True)
class LayerInfo:
    """A block with its output shape ``(C, H, W)`` and cost for one input size."""

    block: Block
    shape: tuple[int, int, int]
    params: int
    macs: int
    # Rows/columns removed (``crop``) or added (``pad``): top, bottom, left, right.
    crop: tuple[int, int, int, int] = (0, 0, 0, 0)


@dataclass(frozen=True)
class Layout:
    """Shapes and costs of every block for one input size (batch of one)."""

    input_size: tuple[int, int]
    layers: tuple[LayerInfo, ...]

    def __getitem__(self, name: str) -> LayerInfo:
        for info in self.layers:
            if info.block.name == name:
                return info
        raise KeyError(name)

    def __iter__(self) -> Iterator[LayerInfo]:
        return iter(self.layers)

    @property
    def output_shape(self) -> tuple[int, int, int]:
        return self.layers[-1].shape

    @property
    def output_size(self) -> tuple[int, int]:
        return self.output_shape[1:]  # type: ignore[return-value]

    @property
    def halo(self) -> tuple[int, int]:
        """Input minus output size: the context a tile loses (0 for ``same`` padding)."""
        (h, w), (oh, ow) = self.input_size, self.output_size
        return h - oh, w - ow

    @property
    def params(self) -> int:
        return sum(i.params for i in self.layers)

    @property
    def macs(self) -> int:
        """Multiply-accumulates of one forward pass (convs and transposed convs)."""
        return sum(i.macs for i in self.layers)

    def odd_pool_inputs(self) -> list[str]:
        """Max-pool blocks that see an odd size (floor pooling drops a row/column)."""
        odd = []
        shapes = {i.block.name: i.shape for i in self.layers}
        for info in self.layers:
            if info.block.kind == "maxpool":
                _, h, w = shapes[info.block.inputs[0]]
                if h % 2 or w % 2:
                    odd.append(info.block.name)
        return odd


@dataclass(frozen=True)
class Plan:
    """The ordered blocks of a U-Net; see the module docstring for the naming contract."""

    spec: UNetSpec
    blocks: tuple[Block, ...]
    _by_name: dict[str, Block] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_by_name", {b.name: b for b in self.blocks})

    def __iter__(self) -> Iterator[Block]:
        return iter(self.blocks)

    def __len__(self) -> int:
        return len(self.blocks)

    def __getitem__(self, name: str) -> Block:
        return self._by_name[name]

    @property
    def output(self) -> Block:
        return self.blocks[-1]

    @cached_property
    def weight_shapes(self) -> dict[str, tuple[int, ...]]:
        """Every canonical tensor name and its shape, in plan order."""
        out: dict[str, tuple[int, ...]] = {}
        for block in self.blocks:
            out.update(block.weight_shapes)
        return out

    @property
    def trainable_params(self) -> int:
        return sum(b.trainable_params for b in self.blocks)

    @property
    def total_values(self) -> int:
        """Trainable parameters plus batch-norm statistics (what Keras' ``count_params`` counts)."""
        return sum(_numel(s) for s in self.weight_shapes.values())

    @cached_property
    def last_use(self) -> dict[str, int]:
        """Index of the last block reading each block's output (for freeing memory early)."""
        last = {b.name: i for i, b in enumerate(self.blocks)}
        for i, block in enumerate(self.blocks):
            for name in block.inputs:
                last[name] = i
        return last

    # -- shapes ----------------------------------------------------------------------------------
    def layout(self, size: int | Sequence[int]) -> Layout:
        """Shapes and costs of every block for an input of ``size`` (``N`` or ``(H, W)``).

        Raises:
            ValueError: When some block would get an empty or mismatched input; the message names
                the block and the nearest sizes that work.
        """
        hw = _as_hw(size)
        try:
            return self._layout(hw)
        except _SizeError as err:
            hint = ", ".join(
                str(s) for s in nearest_valid_sizes(self, hw[0] if hw[0] == hw[1] else min(hw))
            )
            raise ValueError(
                f"input size {hw[0]}x{hw[1]} does not fit this U-Net: {err}. "
                f"Nearest valid sizes: {hint}"
            ) from None

    def _layout(self, hw: tuple[int, int]) -> Layout:
        shapes: dict[str, tuple[int, int, int]] = {}
        infos: list[LayerInfo] = []
        for b in self.blocks:
            crop = (0, 0, 0, 0)
            macs = 0
            if b.kind == "input":
                shape = (b.out_channels, *hw)
            else:
                c, h, w = shapes[b.inputs[0]]
                if b.kind == "conv":
                    shrink = 0 if b.padding == "same" else b.kernel - 1
                    shape = (b.out_channels, h - shrink, w - shrink)
                    macs = shape[1] * shape[2] * b.out_channels * b.in_channels * b.kernel**2
                elif b.kind == "maxpool":
                    shape = (c, h // b.stride, w // b.stride)
                elif b.kind == "upconv":
                    shape = (b.out_channels, h * b.stride, w * b.stride)
                    macs = h * w * b.out_channels * b.in_channels * b.kernel**2
                elif b.kind == "upsample":
                    shape = (c, h * b.stride, w * b.stride)
                elif b.kind in ("resize", "crop", "pad"):
                    _, rh, rw = shapes[b.inputs[1]]
                    if b.kind == "crop":
                        if h < rh or w < rw:
                            raise _SizeError(
                                f"{b.name} cannot crop {h}x{w} to the decoder's {rh}x{rw}"
                            )
                        crop = ((h - rh) // 2, h - rh - (h - rh) // 2,
                                (w - rw) // 2, w - rw - (w - rw) // 2)  # fmt: skip
                    elif b.kind == "pad":
                        if h > rh or w > rw:
                            raise _SizeError(f"{b.name} cannot pad {h}x{w} to the skip's {rh}x{rw}")
                        crop = _pad_amounts(rh - h, rw - w, b.align)
                    shape = (c, rh, rw)
                elif b.kind == "concat":
                    sizes = {shapes[n][1:] for n in b.inputs}
                    if len(sizes) != 1:
                        raise _SizeError(
                            f"{b.name} joins features of sizes "
                            + " and ".join(f"{s[0]}x{s[1]}" for s in sizes)
                        )
                    shape = (sum(shapes[n][0] for n in b.inputs), h, w)
                else:  # norms, activations, dropout keep the shape
                    if b.kind == "instancenorm" and h * w == 1:
                        raise _SizeError(
                            f"{b.name} would normalise a 1x1 map (instance norm needs more than "
                            "one pixel per channel)"
                        )
                    shape = (c, h, w)
            if min(shape[1:]) < 1:
                raise _SizeError(f"{b.name} would produce {shape[1]}x{shape[2]}")
            shapes[b.name] = shape
            infos.append(LayerInfo(b, shape, b.trainable_params, macs, crop))
        return Layout(hw, tuple(infos))

    def check_size(self, size: int | Sequence[int]) -> Layout:
        """Like :meth:`layout`, and also refuse sizes whose poolings see odd sizes.

        Odd pooling inputs drop a row or column (Keras and PyTorch both floor), which breaks the
        pooling grid that overlap-tile inference and center cropping rely on. Only ``resize`` and
        ``pad`` merging tolerate them, as the seed model does for its 256×256 default and
        milesial/MONAI for any size.
        """
        layout = self.layout(size)
        odd = layout.odd_pool_inputs()
        if odd and self.spec.skip_merge not in ("resize", "pad"):
            hw = layout.input_size
            hint = ", ".join(str(s) for s in nearest_valid_sizes(self, min(hw)))
            raise ValueError(
                f"input size {hw[0]}x{hw[1]} does not fit this U-Net: {odd[0]} sees an odd size. "
                f"Nearest valid sizes: {hint}"
            )
        return layout

    def is_valid_size(self, size: int | Sequence[int]) -> bool:
        """True when every block gets a non-empty input and every pooling an even size."""
        try:
            return not self._layout(_as_hw(size)).odd_pool_inputs()
        except _SizeError:
            return False

    def valid_sizes(self, lo: int = 1, hi: int = 1024) -> list[int]:
        """Square input sizes in ``[lo, hi]`` accepted by :meth:`is_valid_size`."""
        return [n for n in range(max(lo, 1), hi + 1) if self.is_valid_size(n)]

    def nearest_valid_size(
        self, size: int, direction: Literal["up", "down", "nearest"] = "nearest"
    ) -> int:
        """The valid size closest to ``size`` (ties and ``"nearest"`` without a smaller one go up)."""
        found = nearest_valid_sizes(self, size, count=1)
        below = [n for n in found if n <= size]
        above = [n for n in found if n >= size]
        if direction == "down" or (direction == "nearest" and not above):
            if not below:
                raise ValueError(f"no valid input size at or below {size}")
            return below[-1]
        if not above:
            raise ValueError(f"no valid input size at or above {size}")
        if direction == "up" or not below:
            return above[0]
        return above[0] if above[0] - size <= size - below[-1] else below[-1]

    @property
    def receptive_field(self) -> int:
        """Receptive field (pixels, one side) of an output pixel, along the deepest path."""
        rf = {self.blocks[0].name: (1, 1.0)}  # (field, jump)
        for b in self.blocks[1:]:
            r, j = max((rf[n] for n in b.inputs), key=lambda t: t[0])
            if b.kind == "conv":
                r += (b.kernel - 1) * j
            elif b.kind == "maxpool":
                r, j = r + (b.kernel - 1) * j, j * b.stride
            elif b.kind in ("upconv", "upsample"):
                j = j / 2
                if b.kind == "upsample" and b.mode == "bilinear":  # reads two neighbours
                    r += j * 2
            elif b.kind == "resize":
                r += j
            rf[b.name] = (r, j)
        return int(round(rf[self.output.name][0]))


def _pad_amounts(dh: int, dw: int, align: str) -> tuple[int, int, int, int]:
    """(top, bottom, left, right) that bring a map ``dh`` × ``dw`` short to the reference size."""
    if align == "end":
        return 0, dh, 0, dw
    return dh // 2, dh - dh // 2, dw // 2, dw - dw // 2


def keras_name(name: str) -> str:
    """Keras layer name of the plan block ``name`` (``enc1.conv1`` → ``enc1_conv1``)."""
    return name.replace(".", "_")


class _SizeError(Exception):
    pass


def _numel(shape: tuple[int, ...]) -> int:
    n = 1
    for s in shape:
        n *= s
    return n


def _as_hw(size: int | Sequence[int]) -> tuple[int, int]:
    if isinstance(size, int) and not isinstance(size, bool):
        hw = (size, size)
    elif isinstance(size, Sequence) and len(size) == 2 and all(isinstance(s, int) for s in size):
        hw = (int(size[0]), int(size[1]))
    else:
        raise ValueError(f"input size must be an integer or (height, width). Received: {size!r}")
    if min(hw) < 1:
        raise ValueError(f"input size must be positive. Received: {size!r}")
    return hw


def nearest_valid_sizes(plan: Plan, size: int, count: int = 2) -> list[int]:
    """Up to ``count`` valid sizes below-or-at and ``count`` above-or-at ``size``, sorted."""
    found: set[int] = set()
    for step in (-1, 1):
        n, k = size, 0
        while 1 <= n <= 8192 and k < count:
            if plan.is_valid_size(n):
                found.add(n)
                k += 1
            n += step
    return sorted(found)


def build_plan(spec: UNetSpec) -> Plan:
    """Lay out the blocks of ``spec`` in execution order.

    Block names (the weight contract) per level ``K`` (``encK``, ``mid``, ``decK``):
    ``convN`` (3×3 conv), ``bnN``/``normN`` (batch/instance norm), ``reluN``/``actN`` (ReLU/leaky
    ReLU), ``pool``, ``dropout`` (``mid.dropin`` before the bottleneck convs); in the decoder
    ``upsample`` (interpolation), ``up`` (the transposed conv or the conv after interpolation),
    ``uprelu``/``upact``, ``skip`` (resize/crop of the skip), ``pad`` (padding of the upsampled
    map), ``concat``; ``tail.convN`` (extra convs before the head) and ``head``.
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

    def norm(prefix: str, i: int, c: int) -> None:
        if spec.norm == "batch":
            add(f"{prefix}.bn{i}", "batchnorm", c, epsilon=spec.bn_epsilon)
        elif spec.norm == "instance":
            add(f"{prefix}.norm{i}", "instancenorm", c, epsilon=spec.bn_epsilon)

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
        if spec.up_activation:
            up = activation(f"dec{level}.uprelu", c_up)
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
    return Plan(spec, tuple(blocks))
