"""Overlap-tile inference for images of any size, shared by the PyTorch and the Keras backends.

The engine is framework-free: it cuts an image into tiles of a valid input size, hands batches of
tiles to a ``forward`` callable (NCHW numpy in, NCHW numpy out) and stitches the outputs into one
array as large as the image. Only one batch of tiles and the output array are held at a time, so
memory grows with the image, never with the number of tiles.

Valid padding (Ronneberger et al.'s overlap-tile strategy): a tile of size ``t`` yields an output of
``t - halo``; the image is mirrored by the halo at its borders, output tiles are laid side by side,
and every tile starts on the pooling grid (a multiple of ``2**depth``), so the stitched output equals
what the model computes on the whole mirrored image (up to float noise) for models whose skips are
cropped. Models that *resize* their skips (the ``seed`` preset) are not translation-equivariant: each
tile is then exactly what the model computes on a tile of that size, and seams can differ slightly.

Same padding: tiles overlap by ``overlap`` of their size and are blended with a raised-cosine window
whose overlapping ramps sum to one; the image is mirrored by the overlap at its borders so that edge
pixels get context too.

Example:
    >>> import numpy as np
    >>> from unet_spec import get_preset
    >>> spec = get_preset("modern-small")
    >>> fake = lambda x: np.repeat(x[:, :1], spec.num_classes, axis=1)  # stands in for a model
    >>> predict_tiled(np.ones((3, 100, 70), np.float32), fake, spec, tile=64).shape
    (2, 100, 70)
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

from unet_spec.plan import nearest_valid_sizes
from unet_spec.spec import UNetSpec

Forward = Callable[[np.ndarray], np.ndarray]

# Tile sizes tried first when the caller gives none: the paper's 572 for valid padding (388 output
# pixels per tile, the halo costs 184), a power of two for same padding.
_DEFAULT_TILE = {"valid": 572, "same": 256}


@dataclass(frozen=True)
class TileGrid:
    """Where the tiles of one image go.

    Attributes:
        tile: Input tile size (square).
        out: Output size of one tile.
        origins_y: Top input row of each tile row, in image coordinates (negative = mirrored).
        origins_x: Left input column of each tile column, in image coordinates.
        offset: Image row/column of a tile's first output pixel, relative to its input origin
            (half the halo for valid padding, 0 for same padding).
    """

    tile: int
    out: int
    origins_y: tuple[int, ...]
    origins_x: tuple[int, ...]
    offset: int

    def __len__(self) -> int:
        return len(self.origins_y) * len(self.origins_x)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        for y in self.origins_y:
            for x in self.origins_x:
                yield y, x


def default_tile(spec: UNetSpec, image_size: tuple[int, int] | None = None) -> int:
    """A valid tile size for ``spec``: the paper's 572 (valid) or 256 (same), or smaller when the
    whole image fits a smaller tile (no compute is spent on mirrored borders beyond the halo)."""
    plan = spec.plan()
    target = _DEFAULT_TILE[spec.padding]
    best = _smallest_valid_at_least(plan, target)
    if image_size is not None:
        need = max(image_size)
        for size in _valid_sizes_from(plan, _min_tile(spec)):
            if size >= best:
                break
            if _tile_output(spec, size) >= need:
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
    out = _tile_output(spec, tile)
    if out < 2**spec.depth:
        smallest = _min_tile(spec)
        raise ValueError(
            f"tile {tile} yields only {out} output pixels, less than one pooling cell "
            f"({2**spec.depth}); use tile >= {smallest}"
        )
    return out


def tile_grid(
    spec: UNetSpec, image_size: tuple[int, int], tile: int, overlap: float = 0.25
) -> TileGrid:
    """Plan the tiles covering an image of ``image_size`` (H, W); see the module docstring."""
    out = check_tile(spec, tile)
    cell = 2**spec.depth
    if spec.padding == "valid":
        # Output tiles step by a whole number of pooling cells; neighbours overlap by the remainder
        # (< cell pixels), which they compute identically, so the later one simply overwrites.
        step = out // cell * cell
        offset = (tile - out) // 2
        start = -offset
        extent = 0  # the first output pixel is image pixel 0
    else:
        if not 0.0 <= overlap < 1.0:
            raise ValueError(f"overlap must be in [0, 1). Received: overlap={overlap!r}")
        step = max(cell, int(round(tile * (1.0 - overlap))) // cell * cell)
        step = min(step, tile)
        margin = tile - step
        offset = 0
        start = -margin  # mirrored margin so border pixels sit inside a tile, not on its ramp
        extent = margin
    origins = []
    for n in image_size:
        count = max(1, -(-(n + 2 * extent - out) // step) + 1) if n + 2 * extent > out else 1
        origins.append(tuple(start + k * step for k in range(count)))
    return TileGrid(tile, out, origins[0], origins[1], offset)


def blend_window(tile: int, margin: int) -> np.ndarray:
    """1-D weights for same-padding tiles: flat in the middle, raised-cosine ramps of ``margin``
    pixels at both ends. Ramps of neighbours stepping by ``tile - margin`` sum to one."""
    w = np.ones(tile, dtype=np.float64)
    if margin > 0:
        t = (np.arange(margin) + 0.5) / margin
        ramp = np.sin(0.5 * np.pi * t) ** 2
        w[:margin] = ramp
        w[tile - margin :] = ramp[::-1]
    return w


def mirror_indices(start: int, length: int, size: int) -> np.ndarray:
    """Indices ``start .. start+length-1`` folded into ``[0, size)`` by mirroring without repeating
    the edge pixel (``numpy.pad``'s ``reflect``), as often as needed for images smaller than the pad."""
    idx = np.arange(start, start + length)
    if size == 1:
        return np.zeros(length, dtype=np.intp)
    period = 2 * (size - 1)
    idx = np.mod(idx, period)
    return np.where(idx < size, idx, period - idx).astype(np.intp)


def predict_tiled(
    image: np.ndarray,
    forward: Forward,
    spec: UNetSpec,
    tile: int | None = None,
    overlap: float = 0.25,
    batch_size: int = 1,
    *,
    progress: Callable[[int], object] | None = None,
) -> np.ndarray:
    """Run ``forward`` over an image of any size, tile by tile, and stitch the outputs.

    Args:
        image: ``(C, H, W)`` float32 array, any ``H, W >= 1``.
        forward: Maps a ``(N, C, tile, tile)`` float32 batch to ``(N, K, out, out)`` (logits or
            probabilities); ``out`` is the plan's output size for ``tile``.
        spec: The architecture ``forward`` computes.
        tile: Input tile size; ``None`` picks :func:`default_tile`. Invalid sizes raise
            ``ValueError`` listing the nearest valid ones.
        overlap: Same padding only: share of the tile overlapped with its neighbours and blended.
        batch_size: Tiles per ``forward`` call.
        progress: Called with the number of tiles done after every batch (for progress bars).

    Returns:
        ``(K, H, W)`` float32: the output for every input pixel.

    Raises:
        ValueError: Wrong image rank or channel count, invalid tile, or a ``forward`` whose output
            shape does not match the plan.
    """
    image = np.asarray(image)
    if image.ndim != 3:
        raise ValueError(f"image must be (C, H, W). Received: shape={image.shape}")
    c, h, w = image.shape
    if c != spec.in_channels:
        raise ValueError(
            f"image has {c} channel(s) but the model expects {spec.in_channels}. "
            f"Received: shape={image.shape}"
        )
    if min(h, w) < 1:
        raise ValueError(f"image is empty. Received: shape={image.shape}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer. Received: {batch_size!r}")
    if tile is None:
        tile = default_tile(spec, (h, w))
    grid = tile_grid(spec, (h, w), tile, overlap)
    k = spec.num_classes
    valid = spec.padding == "valid"

    result = np.zeros((k, h, w), dtype=np.float32)
    if not valid:
        margin = -grid.origins_y[0]  # tiles start one margin before the image
        win = blend_window(grid.tile, margin).astype(np.float32)
        window = np.outer(win, win)
        weight = np.zeros((h, w), dtype=np.float32)
    image = image.astype(np.float32, copy=False)

    def run(batch: list[tuple[int, int]]) -> None:
        tiles = np.stack(
            [
                image[:, mirror_indices(y, tile, h)[:, None], mirror_indices(x, tile, w)[None, :]]
                for y, x in batch
            ]
        )
        out = np.asarray(forward(tiles))
        expected = (len(batch), k, grid.out, grid.out)
        if out.shape != expected:
            raise ValueError(
                f"forward returned shape {out.shape} for tiles {tiles.shape}; the plan expects {expected}"
            )
        for (y, x), pred in zip(batch, out, strict=True):
            # The tile's output covers image rows y+offset .. y+offset+out-1; keep the part inside.
            y0, x0 = y + grid.offset, x + grid.offset
            ty, tx = max(0, -y0), max(0, -x0)
            y1, x1 = min(h, y0 + grid.out), min(w, x0 + grid.out)
            if y1 <= max(y0, 0) or x1 <= max(x0, 0):
                continue
            sy, sx = slice(max(y0, 0), y1), slice(max(x0, 0), x1)
            part = pred[:, ty : ty + (y1 - max(y0, 0)), tx : tx + (x1 - max(x0, 0))]
            if valid:
                result[:, sy, sx] = part
            else:
                wpart = window[ty : ty + part.shape[1], tx : tx + part.shape[2]]
                result[:, sy, sx] += part * wpart
                weight[sy, sx] += wpart

    batch: list[tuple[int, int]] = []
    done = 0
    for origin in grid:
        batch.append(origin)
        if len(batch) == batch_size:
            run(batch)
            done += len(batch)
            batch = []
            if progress is not None:
                progress(done)
    if batch:
        run(batch)
        done += len(batch)
        if progress is not None:
            progress(done)
    if not valid:
        result /= weight[None]
    return result


# The eight symmetries of the square: (number of 90° rotations, horizontal flip).
_D4 = tuple((r, f) for f in (False, True) for r in range(4))
_FLIPS = ((0, False), (0, True), (2, True), (2, False))  # identity, h-flip, v-flip, both
_HFLIP = ((0, False), (0, True))  # identity and its mirror image: scenes with an up and a down
#: Test-time augmentation modes → their (quarter turns, horizontal flip) transforms.
TTA_TRANSFORMS = {"d4": _D4, "flips": _FLIPS, "hflip": _HFLIP}
TTA_MODES = tuple(TTA_TRANSFORMS)


def _transform(x: np.ndarray, rot: int, flip: bool) -> np.ndarray:
    if flip:
        x = x[..., ::-1]
    return np.rot90(x, rot, axes=(-2, -1))


def _untransform(x: np.ndarray, rot: int, flip: bool) -> np.ndarray:
    x = np.rot90(x, -rot, axes=(-2, -1))
    return x[..., ::-1] if flip else x


def predict_tta(
    image: np.ndarray,
    forward: Forward,
    spec: UNetSpec,
    tile: int | None = None,
    overlap: float = 0.25,
    batch_size: int = 1,
    *,
    transforms: str = "d4",
) -> np.ndarray:
    """:func:`predict_tiled` averaged over flips (and 90° rotations) of the image.

    Each transformed image is predicted whole and mapped back before averaging, so non-square images
    work: a quarter turn swaps height and width, and the tiling follows.

    Args:
        transforms: ``"d4"`` (the 8 flips and rotations of the square), ``"flips"`` (identity,
            horizontal, vertical and both flips) or ``"hflip"`` (the image and its mirror image,
            for scenes with an up and a down).
        Other arguments as :func:`predict_tiled`. Average probabilities rather than logits when
        the head is nonlinear: give a ``forward`` that applies it.

    Returns:
        ``(K, H, W)`` float32 mean over the transforms.
    """
    choices = TTA_TRANSFORMS
    if transforms not in choices:
        raise ValueError(
            f"transforms must be one of {', '.join(TTA_MODES)}. Received: transforms={transforms!r}"
        )
    total: np.ndarray | None = None
    for rot, flip in choices[transforms]:
        view = np.ascontiguousarray(_transform(image, rot, flip))
        pred = _untransform(
            predict_tiled(view, forward, spec, tile, overlap, batch_size), rot, flip
        )
        total = pred.copy() if total is None else total + pred
    assert total is not None
    return (total / len(choices[transforms])).astype(np.float32, copy=False)


# -- helpers -------------------------------------------------------------------------------------
def _tile_output(spec: UNetSpec, tile: int) -> int:
    oh, ow = spec.plan().layout(tile).output_size
    return min(oh, ow)


def _valid_sizes_from(plan, lo: int, hi: int = 8192) -> Iterator[int]:  # noqa: ANN001 - Plan
    for n in range(max(lo, 1), hi + 1):
        if plan.is_valid_size(n):
            yield n


def _min_tile(spec: UNetSpec) -> int:
    plan = spec.plan()
    for n in _valid_sizes_from(plan, 1):
        if _tile_output(spec, n) >= 2**spec.depth:
            return n
    raise ValueError("no tile size up to 8192 fits this U-Net")


def _smallest_valid_at_least(plan, size: int) -> int:  # noqa: ANN001 - Plan
    spec = plan.spec
    for n in _valid_sizes_from(plan, max(size, _min_tile(spec))):
        return n
    raise ValueError(f"no valid tile size at or above {size}")


class TiledPredictor:
    """Base of the framework predictors: a ``forward`` on tiles plus whole-image :meth:`predict`.

    Subclasses set ``spec`` and implement :meth:`forward` (NCHW float32 numpy in and out); the
    tiling, stitching and test-time augmentation are shared here.
    """

    spec: UNetSpec

    def forward(self, x: np.ndarray) -> np.ndarray:
        """``(N, C, h, w)`` float32 → ``(N, K, oh, ow)`` float32."""
        raise NotImplementedError

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return self.forward(x)

    def predict(
        self,
        image: np.ndarray,
        tile: int | None = None,
        overlap: float = 0.25,
        batch_size: int = 1,
        *,
        tta: bool | str = False,
        progress: Callable[[int], object] | None = None,
    ) -> np.ndarray:
        """``(C, H, W)`` image of any size → ``(K, H, W)`` output (see :func:`predict_tiled` for
        the arguments; ``tta``: ``True`` or ``"d4"`` averages the 8 flips and quarter turns,
        ``"flips"`` or ``"hflip"`` fewer, see :func:`predict_tta`)."""
        if tta:
            mode = "d4" if tta is True else str(tta)
            return predict_tta(
                image, self.forward, self.spec, tile, overlap, batch_size, transforms=mode
            )
        return predict_tiled(
            image, self.forward, self.spec, tile, overlap, batch_size, progress=progress
        )
