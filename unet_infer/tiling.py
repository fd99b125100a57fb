"""Tiled inference for images of any size: the one padding, tiling and label policy of validation,
``benchmarks/evaluate.py`` and ``unet predict`` (PyTorch and Keras alike).

The engine is framework-free: it cuts images into tiles of a valid input size, hands batches of
tiles to a ``forward`` callable (NCHW numpy in, NCHW numpy out) and stitches the outputs into arrays
as large as the images. Only one batch of tiles and the output arrays are held at a time, so memory
grows with the images, never with the number of tiles.

Valid padding (Ronneberger et al.'s overlap-tile strategy): a tile of size ``t`` yields an output of
``t - halo``; the image is mirrored by the halo at its borders, output tiles are laid side by side,
and every tile starts on the pooling grid (a multiple of ``2**depth``), so the stitched output equals
what the model computes on the whole mirrored image (up to float noise) for models whose skips are
cropped. Models that *resize* their skips (the ``seed`` preset) are not translation-equivariant: each
tile is then exactly what the model computes on a tile of that size, and seams can differ slightly.

Same padding: a pixel is best predicted with real image around it; mirrored borders and a tile's
zero padding are made-up context. Each axis is planned on its own:

- an axis no longer than the tile is one tile, the image padded (mirrored) at its far end only up to
  the nearest valid size: a 240×180 image with 16-pixel pooling cells is run once as 240×192, with no
  blending;
- a longer axis is covered by tiles lying inside the image: the first at the near edge, the last
  flush with the far edge, as few between them as steps of at most ``tile * (1 - overlap)``
  (rounded down to whole pooling cells) allow, spread evenly and placed on the pooling grid. Each
  tile's output is weighted by a window that ramps (raised cosine) across its overlaps with its
  neighbours and is flat elsewhere, so a pixel near a tile's inner edge is taken mostly from the
  neighbour in which it sits deeper; the weights are normalised by their sum.

Mirroring thus only happens where the image itself is smaller than a valid size.

Tile sizes are chosen in :mod:`unet_infer.tile_sizes`, test-time augmentation views named in
:mod:`unet_infer.tta`, and :func:`unet_infer.labels.labels_from_probs` turns outputs into class ids.

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

from unet_infer.tile_sizes import check_tile, default_tile
from unet_infer.tta import TTA_TRANSFORMS, transform, tta_mode, untransform
from unet_spec.spec import UNetSpec

Forward = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class TileGrid:
    """Where the tiles of one image go.

    Attributes:
        tile: Input size ``(H, W)`` of every tile (square for valid padding; for same padding an
            axis shorter than the requested tile gets its nearest valid size instead).
        out: Output size ``(H, W)`` of one tile.
        origins_y: Top input row of each tile row, in image coordinates (negative = mirrored).
        origins_x: Left input column of each tile column, in image coordinates.
        offset: Image row/column of a tile's first output pixel, relative to its input origin
            (half the halo for valid padding, 0 for same padding).
        blend: Whether overlapping outputs are blended (same padding) or computed identically and
            overwritten (valid padding).
    """

    tile: tuple[int, int]
    out: tuple[int, int]
    origins_y: tuple[int, ...]
    origins_x: tuple[int, ...]
    offset: int
    blend: bool

    def __len__(self) -> int:
        return len(self.origins_y) * len(self.origins_x)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        for y in self.origins_y:
            for x in self.origins_x:
                yield y, x


def tile_grid(
    spec: UNetSpec, image_size: tuple[int, int], tile: int, overlap: float = 0.25
) -> TileGrid:
    """Plan the tiles covering an image of ``image_size`` (H, W); see the module docstring.

    Raises:
        ValueError: Invalid ``tile`` (the nearest valid sizes are listed) or ``overlap``.
    """
    out = check_tile(spec, tile)
    cell = 2**spec.depth
    if spec.padding == "valid":
        # Output tiles step by a whole number of pooling cells; neighbours overlap by the remainder
        # (< cell pixels), which they compute identically, so the later one simply overwrites.
        step = out // cell * cell
        offset = (tile - out) // 2
        origins = []
        for n in image_size:
            count = -(-(n - out) // step) + 1 if n > out else 1
            origins.append(tuple(-offset + k * step for k in range(count)))
        return TileGrid((tile, tile), (out, out), origins[0], origins[1], offset, blend=False)

    if isinstance(overlap, bool) or not isinstance(overlap, (int, float)) or not 0 <= overlap < 1:
        raise ValueError(f"overlap must be in [0, 1). Received: overlap={overlap!r}")
    plan = spec.plan()
    step = min(tile, max(cell, int(round(tile * (1.0 - overlap))) // cell * cell))
    sizes, origins = [], []
    for n in image_size:
        if n <= tile:
            # Pooling only needs each axis to be a multiple of the cell: pad the far end up to it.
            sizes.append(plan.nearest_valid_size(n, "up"))
            origins.append((0,))
        else:
            sizes.append(tile)
            origins.append(_inside_origins(n, tile, step, cell))
    size = (sizes[0], sizes[1])
    return TileGrid(size, plan.check_size(size).output_size, origins[0], origins[1], 0, blend=True)


def _inside_origins(n: int, tile: int, step: int, cell: int) -> tuple[int, ...]:
    """Tile origins along an axis of ``n > tile`` pixels: the first flush with the near edge, the
    last flush with the far edge, as few tiles as steps of at most ``step`` allow, the ones between
    spread evenly and rounded up to the pooling grid (so they see the pooling phases of a
    whole-image pass). Rounding up keeps every gap at most ``step``: a gap between rounded origins
    is at most the even spacing rounded up to whole cells, and ``step`` is whole cells."""
    span = n - tile
    gaps = -(-span // step)
    inner = (min(span, -(-k * span // (gaps * cell)) * cell) for k in range(1, gaps))
    return tuple(sorted({0, *inner, span}))


def axis_weights(origins: tuple[int, ...], size: int) -> list[np.ndarray]:
    """1-D blending weights of the tiles along one axis (same padding), one array per tile.

    A tile's weight rises over its overlap with the previous tile and falls over its overlap with
    the next one (raised-cosine ramps, ``sin²`` against ``cos²``, so two overlapping ramps sum to
    one) and is 1 elsewhere, including at the image border, where no other tile can help. Weights
    are strictly positive, so where ramps of three tiles meet (the flush last tile) normalising by
    the sum still gives a convex combination.
    """
    weights = []
    for i, origin in enumerate(origins):
        w = np.ones(size, dtype=np.float64)
        if i > 0:
            shared = origins[i - 1] + size - origin
            if shared > 0:
                w[:shared] *= _ramp(shared)
        if i + 1 < len(origins):
            shared = origin + size - origins[i + 1]
            if shared > 0:
                w[size - shared :] *= _ramp(shared)[::-1]
        weights.append(w)
    return weights


def _ramp(n: int) -> np.ndarray:
    # Sampled at pixel centres: never exactly 0 or 1, and ramp + ramp[::-1] == 1.
    return np.sin(0.5 * np.pi * (np.arange(n) + 0.5) / n) ** 2


def mirror_indices(start: int, length: int, size: int) -> np.ndarray:
    """Indices ``start .. start+length-1`` folded into ``[0, size)`` by mirroring without repeating
    the edge pixel (``numpy.pad``'s ``reflect``), as often as needed for images smaller than the pad."""
    idx = np.arange(start, start + length)
    if size == 1:
        return np.zeros(length, dtype=np.intp)
    period = 2 * (size - 1)
    idx = np.mod(idx, period)
    return np.where(idx < size, idx, period - idx).astype(np.intp)


def predict_images(
    images: np.ndarray,
    forward: Forward,
    spec: UNetSpec,
    tile: int | None = None,
    overlap: float = 0.25,
    batch_size: int = 1,
    *,
    tta: bool | str | None = None,
    progress: Callable[[int], object] | None = None,
) -> np.ndarray:
    """Run ``forward`` over a batch of equally sized images, tile by tile, and stitch the outputs.

    Tiles of all the images share the ``forward`` batches, so a batch of small images (one tile
    each) costs one pass, as it would whole.

    Args:
        images: ``(N, C, H, W)`` float32 array, any ``H, W >= 1``.
        forward: Maps a ``(B, C, th, tw)`` float32 batch to ``(B, K, oh, ow)`` (logits,
            probabilities, or any stack of per-pixel outputs: every channel is stitched alike);
            ``(oh, ow)`` is the plan's output size for the tile.
        spec: The architecture ``forward`` computes.
        tile: Input tile size; ``None`` picks :func:`default_tile`. Invalid sizes raise
            ``ValueError`` listing the nearest valid ones.
        overlap: Same padding only: share of the tile overlapped with its neighbours and blended.
        batch_size: Tiles per ``forward`` call.
        tta: A test-time augmentation choice (:func:`unet_infer.tta.tta_mode`): the outputs are
            averaged over the transformed images (give a ``forward`` that applies the head to
            average probabilities).
        progress: Called with the number of tiles done after every batch (without ``tta``).

    Returns:
        ``(N, K, H, W)`` float32: the output for every input pixel.

    Raises:
        ValueError: Wrong image rank or channel count, invalid tile or overlap, unknown ``tta``,
            or a ``forward`` whose output shape does not match the plan.
    """
    images = np.asarray(images)
    if images.ndim != 4:
        raise ValueError(f"images must be (N, C, H, W). Received: shape={images.shape}")
    _check_image(images[0] if len(images) else images, spec)
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer. Received: {batch_size!r}")
    images = images.astype(np.float32, copy=False)
    tta = tta_mode(tta)
    if tta is None:
        return _predict_plain(images, forward, spec, tile, overlap, batch_size, progress)
    total: np.ndarray | None = None
    for rot, flip in TTA_TRANSFORMS[tta]:
        # A quarter turn swaps height and width; the tiling follows the transformed image.
        view = np.ascontiguousarray(transform(images, rot, flip))
        pred = untransform(
            _predict_plain(view, forward, spec, tile, overlap, batch_size, None), rot, flip
        )
        total = pred.copy() if total is None else total + pred
    assert total is not None
    return (total / len(TTA_TRANSFORMS[tta])).astype(np.float32, copy=False)


def predict_tiled(
    image: np.ndarray,
    forward: Forward,
    spec: UNetSpec,
    tile: int | None = None,
    overlap: float = 0.25,
    batch_size: int = 1,
    *,
    tta: bool | str | None = None,
    progress: Callable[[int], object] | None = None,
) -> np.ndarray:
    """:func:`predict_images` for one ``(C, H, W)`` image; returns ``(K, H, W)`` float32.

    With ``tta`` (``"d4"``: the 8 flips and rotations of the square, ``"flips"``: the 4 flips,
    ``"hflip"``: the image and its mirror image, for scenes with an up and a down; ``True`` is
    ``"d4"``), each transformed image is predicted whole and mapped back before averaging, so
    non-square images work: a quarter turn swaps height and width, and the tiling follows. Average
    probabilities rather than logits when the head is nonlinear: give a ``forward`` that applies it.
    """
    image = np.asarray(image)
    if image.ndim != 3:
        raise ValueError(f"image must be (C, H, W). Received: shape={image.shape}")
    return predict_images(
        image[None], forward, spec, tile, overlap, batch_size, tta=tta, progress=progress
    )[0]


# -- the engine ----------------------------------------------------------------------------------
def _check_image(image: np.ndarray, spec: UNetSpec) -> None:
    c, h, w = image.shape[-3:]
    if c != spec.in_channels:
        raise ValueError(
            f"image has {c} channel(s) but the model expects {spec.in_channels}. "
            f"Received: shape={image.shape}"
        )
    if min(h, w) < 1 or image.size == 0:
        raise ValueError(f"image is empty. Received: shape={image.shape}")


def _predict_plain(
    images: np.ndarray,
    forward: Forward,
    spec: UNetSpec,
    tile: int | None,
    overlap: float,
    batch_size: int,
    progress: Callable[[int], object] | None,
) -> np.ndarray:
    n_images, _, h, w = images.shape
    if tile is None:
        tile = default_tile(spec, (h, w))
    grid = tile_grid(spec, (h, w), tile, overlap)
    (th, tw), (oh, ow) = grid.tile, grid.out
    rows = [mirror_indices(y, th, h) for y in grid.origins_y]
    cols = [mirror_indices(x, tw, w) for x in grid.origins_x]
    if grid.blend:
        wy = [w_.astype(np.float32) for w_ in axis_weights(grid.origins_y, oh)]
        wx = [w_.astype(np.float32) for w_ in axis_weights(grid.origins_x, ow)]
        # Weights are outer products of per-axis weights, so their sum over the grid is the outer
        # product of the per-axis sums.
        total_y, total_x = np.zeros(h, np.float32), np.zeros(w, np.float32)
        for y, wt in zip(grid.origins_y, wy, strict=True):
            total_y[y : y + oh] += wt[: h - y]
        for x, wt in zip(grid.origins_x, wx, strict=True):
            total_x[x : x + ow] += wt[: w - x]

    jobs = [
        (n, iy, ix)
        for n in range(n_images)
        for iy in range(len(grid.origins_y))
        for ix in range(len(grid.origins_x))
    ]
    result: np.ndarray | None = None
    for start in range(0, len(jobs), batch_size):
        batch = jobs[start : start + batch_size]
        # ``take`` along one axis at a time keeps C order; a combined fancy index would hand the
        # framework channels-last strides, which some convolution back ends compute differently.
        tiles = np.stack([images[n].take(rows[iy], 1).take(cols[ix], 2) for n, iy, ix in batch])
        out = np.asarray(forward(tiles))
        k = out.shape[1] if out.ndim == 4 else -1
        if (
            out.ndim != 4
            or out.shape[0] != len(batch)
            or out.shape[2:] != (oh, ow)
            or (result is not None and k != result.shape[1])
        ):
            expected = (len(batch), "K" if result is None else result.shape[1], oh, ow)
            raise ValueError(
                f"forward returned shape {out.shape} for tiles {tiles.shape}; the plan expects "
                f"{expected}"
            )
        if result is None:
            result = np.zeros((n_images, k, h, w), dtype=np.float32)
        for (n, iy, ix), pred in zip(batch, out, strict=True):
            # The tile's output covers image rows y0 .. y0+oh-1; keep the part inside the image.
            y0 = grid.origins_y[iy] + grid.offset
            x0 = grid.origins_x[ix] + grid.offset
            ty, tx = max(0, -y0), max(0, -x0)
            y1, x1 = min(h, y0 + oh), min(w, x0 + ow)
            if y1 <= max(y0, 0) or x1 <= max(x0, 0):
                continue
            sy, sx = slice(max(y0, 0), y1), slice(max(x0, 0), x1)
            part = pred[:, ty : ty + (sy.stop - sy.start), tx : tx + (sx.stop - sx.start)]
            if grid.blend:
                window = np.outer(wy[iy][ty : ty + part.shape[1]], wx[ix][tx : tx + part.shape[2]])
                result[n, :, sy, sx] += part * window
            else:
                result[n, :, sy, sx] = part
        if progress is not None:
            progress(start + len(batch))
    assert result is not None
    if grid.blend:
        result /= np.outer(total_y, total_x)[None, None]
    return result
