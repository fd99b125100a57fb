"""Tile sizes for the tiling engine: the default tile, and which sizes work for a U-Net.

A tile must be a valid input size of the plan (every pooling sees an even size), and for valid
padding its output must span at least one pooling cell so that tiles can step on the pooling grid.
"""

from __future__ import annotations

from collections.abc import Iterator

from unet_spec.plan import nearest_valid_sizes
from unet_spec.spec import UNetSpec

# Tile sizes tried first when the caller gives none: the paper's 572 for valid padding (388 output
# pixels per tile, the halo costs 184), a power of two for same padding.
_DEFAULT_TILE = {"valid": 572, "same": 256}


def default_tile(spec: UNetSpec, image_size: tuple[int, int] | None = None) -> int:
    """A valid tile size for ``spec``: the paper's 572 (valid) or 256 (same), or smaller when the
    whole image fits a smaller tile (no compute is spent on mirrored borders beyond the halo)."""
    plan = spec.plan()
    target = _DEFAULT_TILE[spec.padding]
    best = _smallest_valid_at_least(plan, target)
    if image_size is not None:
        need = max(image_size)
        for size in _valid_sizes_from(plan, min_tile(spec)):
            if size >= best:
                break
            if tile_output(spec, size) >= need:
                return size
    return best


def check_tile(spec: UNetSpec, tile: int) -> int:
    """Return the output size of a ``tile``-sized input, or raise ``ValueError`` saying which sizes work.

    A tile must be a valid input size (every pooling sees an even size), and for valid padding its
    output must span at least one pooling cell (``2**depth`` pixels) so tiles can step on the grid.
    """
    if isinstance(tile, bool) or not isinstance(tile, int):
        raise ValueError(f"tile must be an integer. Received: tile={tile!r}")
    plan = spec.plan()
    if tile < 1 or not plan.is_valid_size(tile):
        hint = ", ".join(str(s) for s in nearest_valid_sizes(plan, max(tile, 1)))
        raise ValueError(
            f"tile {tile} is not a valid input size for this U-Net. Nearest valid sizes: {hint}"
        )
    out = tile_output(spec, tile)
    if out < 2**spec.depth:
        smallest = min_tile(spec)
        raise ValueError(
            f"tile {tile} yields only {out} output pixels, less than one pooling cell "
            f"({2**spec.depth}); use tile >= {smallest}"
        )
    return out


def tile_output(spec: UNetSpec, tile: int) -> int:
    """Output pixels (the shorter side) of a ``tile``-sized input."""
    oh, ow = spec.plan().layout(tile).output_size
    return min(oh, ow)


def _valid_sizes_from(plan, lo: int, hi: int = 8192) -> Iterator[int]:
    for n in range(max(lo, 1), hi + 1):
        if plan.is_valid_size(n):
            yield n


def min_tile(spec: UNetSpec) -> int:
    """The smallest tile whose output spans a pooling cell."""
    plan = spec.plan()
    for n in _valid_sizes_from(plan, 1):
        if tile_output(spec, n) >= 2**spec.depth:
            return n
    raise ValueError("no tile size up to 8192 fits this U-Net")


def _smallest_valid_at_least(plan, size: int) -> int:
    spec = plan.spec
    for n in _valid_sizes_from(plan, max(size, min_tile(spec))):
        return n
    raise ValueError(f"no valid tile size at or above {size}")
