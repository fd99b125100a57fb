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

This module holds the :class:`Plan` and the questions asked of it as a whole (which input sizes fit,
the receptive field, the weight tensors). Its parts have their own modules: a block and its naming
rule in :mod:`unet_spec.blocks`, the U-Net's block list in :mod:`unet_spec.topology`, the shapes
and costs for one input size in :mod:`unet_spec.layout`; their public names are imported from here
too.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from functools import cached_property, lru_cache
from typing import TYPE_CHECKING, Literal

from unet_spec.blocks import WEIGHT_KINDS, Block, BlockKind, keras_name, numel
from unet_spec.layout import LayerInfo, Layout, SizeError, as_hw, walk_shapes
from unet_spec.topology import unet_blocks

if TYPE_CHECKING:  # the plan reads a spec's fields; UNetSpec.plan() imports this module
    from unet_spec.spec import UNetSpec

__all__ = [
    "WEIGHT_KINDS",
    "Block",
    "BlockKind",
    "LayerInfo",
    "Layout",
    "Plan",
    "build_plan",
    "keras_name",
    "nearest_valid_sizes",
]


@dataclass(frozen=True)
class Plan:
    """The ordered blocks of a U-Net; see the module docstring for the naming contract."""

    spec: UNetSpec
    blocks: tuple[Block, ...]
    _by_name: dict[str, Block] = field(init=False, repr=False, compare=False)
    # Which (H, W) fit, as found so far: the size questions (valid sizes, crop sizes, the nearest
    # size in an error) each walk the blocks for hundreds of sizes.
    _fits: dict[tuple[int, int], bool] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_by_name", {b.name: b for b in self.blocks})
        object.__setattr__(self, "_fits", {})

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
        return sum(numel(s) for s in self.weight_shapes.values())

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
        hw = as_hw(size)
        try:
            return walk_shapes(self.blocks, hw)
        except SizeError as err:
            hint = ", ".join(
                str(s) for s in nearest_valid_sizes(self, hw[0] if hw[0] == hw[1] else min(hw))
            )
            raise ValueError(
                f"input size {hw[0]}x{hw[1]} does not fit this U-Net: {err}. "
                f"Nearest valid sizes: {hint}"
            ) from None

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
        hw = as_hw(size)
        if hw not in self._fits:
            try:
                self._fits[hw] = not walk_shapes(self.blocks, hw).odd_pool_inputs()
            except SizeError:
                self._fits[hw] = False
        return self._fits[hw]

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


@lru_cache(maxsize=256)
def build_plan(spec: UNetSpec) -> Plan:
    """Lay out the blocks of ``spec`` in execution order.

    The names given to the blocks are listed by :func:`unet_spec.topology.unet_blocks`. A spec
    and its plan are frozen, so each spec's plan is built once and shared: the builders, the weight
    contract and every size question ask for it again.
    """
    return Plan(spec, unet_blocks(spec))
