"""Shapes and costs of a plan's blocks for one input size, and the sizes that do not fit.

:func:`walk_shapes` follows the blocks in order and gives each its output shape, its parameters
and multiply-accumulates, and the rows and columns a ``crop``/``pad`` removes or adds; the
:class:`Layout` it returns adds them up (halo, parameters, MACs). A block that would get an empty or
mismatched input raises :class:`SizeError`, which :meth:`unet_spec.plan.Plan.layout` turns into a
message naming the nearest sizes that work.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from unet_spec.blocks import Block


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


def walk_shapes(blocks: Sequence[Block], hw: tuple[int, int]) -> Layout:
    """Shapes and costs of ``blocks`` (a plan, in order) for an input of ``hw``.

    Raises:
        SizeError: When some block would get an empty or mismatched input.
    """
    shapes: dict[str, tuple[int, int, int]] = {}
    infos: list[LayerInfo] = []
    for b in blocks:
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
                        raise SizeError(f"{b.name} cannot crop {h}x{w} to the decoder's {rh}x{rw}")
                    crop = ((h - rh) // 2, h - rh - (h - rh) // 2,
                            (w - rw) // 2, w - rw - (w - rw) // 2)  # fmt: skip
                elif b.kind == "pad":
                    if h > rh or w > rw:
                        raise SizeError(f"{b.name} cannot pad {h}x{w} to the skip's {rh}x{rw}")
                    crop = pad_amounts(rh - h, rw - w, b.align)
                shape = (c, rh, rw)
            elif b.kind == "concat":
                sizes = {shapes[n][1:] for n in b.inputs}
                if len(sizes) != 1:
                    raise SizeError(
                        f"{b.name} joins features of sizes "
                        + " and ".join(f"{s[0]}x{s[1]}" for s in sizes)
                    )
                shape = (sum(shapes[n][0] for n in b.inputs), h, w)
            else:  # norms, activations, dropout keep the shape
                if b.kind == "instancenorm" and h * w == 1:
                    raise SizeError(
                        f"{b.name} would normalise a 1x1 map (instance norm needs more than "
                        "one pixel per channel)"
                    )
                shape = (c, h, w)
        if min(shape[1:]) < 1:
            raise SizeError(f"{b.name} would produce {shape[1]}x{shape[2]}")
        shapes[b.name] = shape
        infos.append(LayerInfo(b, shape, b.trainable_params, macs, crop))
    return Layout(hw, tuple(infos))


class SizeError(Exception):
    """A block that cannot take the size it is given (the message names the block)."""


def pad_amounts(dh: int, dw: int, align: str) -> tuple[int, int, int, int]:
    """(top, bottom, left, right) that bring a map ``dh`` × ``dw`` short to the reference size."""
    if align == "end":
        return 0, dh, 0, dw
    return dh // 2, dh - dh // 2, dw // 2, dw - dw // 2


def as_hw(size: int | Sequence[int]) -> tuple[int, int]:
    """``size`` (``N`` or ``(H, W)``) as ``(H, W)``; refuses anything else in one line."""
    if isinstance(size, int) and not isinstance(size, bool):
        hw = (size, size)
    elif isinstance(size, Sequence) and len(size) == 2 and all(isinstance(s, int) for s in size):
        hw = (int(size[0]), int(size[1]))
    else:
        raise ValueError(f"input size must be an integer or (height, width). Received: {size!r}")
    if min(hw) < 1:
        raise ValueError(f"input size must be positive. Received: {size!r}")
    return hw
