"""The embedded dataset: textured shapes on a textured background, generated on the fly.

Nothing is downloaded. Every sample is a pure function of ``(seed, index)``, so the same config gives
the same images on every machine and in every process of a distributed run.

Each class has its own shape and texture (disks are flat, rectangles striped, triangles
checkered, rings blotchy) but brightness is drawn at random from a pool shared with the background,
and the background takes any texture (faintly), so a model has to combine outline, texture and
context rather than threshold one intensity. Shapes never overlap: every outline is whole, which
keeps the task learnable in a few minutes on a CPU.
"""

from __future__ import annotations

import numpy as np

#: Class ids of the synthetic dataset, in order.
CLASS_NAMES: tuple[str, ...] = ("background", "disk", "rectangle", "triangle", "ring")


# Texture of each foreground class (background: any).
_CLASS_TEXTURE = {1: 3, 2: 0, 3: 1, 4: 2}
# Texture amplitudes: a shape's texture is several times the background's, so it stays visible
# through the noise while a background that happens to share it stays faint.
_SHAPE_AMPLITUDE = 0.2
_BACKGROUND_AMPLITUDE = 0.05
# Shapes per image, and their radius as a share of the image side.
_MIN_SHAPES, _MAX_SHAPES = 3, 6
_RADIUS = (0.1, 0.2)
# Background pixels kept between two shapes, and placements tried before a shape is dropped.
_GAP, _PLACEMENT_TRIES = 2, 20


def _texture(rng: np.random.Generator, h: int, w: int, kind: int) -> np.ndarray:
    """Texture ``kind`` (0 stripes, 1 checks, 2 blotches, 3 flat) at a random scale and angle."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    period = float(rng.uniform(4.0, 10.0))
    angle = float(rng.uniform(0.0, np.pi))
    u = np.cos(angle) * xx + np.sin(angle) * yy
    if kind == 0:  # stripes
        return np.sin(2 * np.pi * u / period + rng.uniform(0, 2 * np.pi)).astype(np.float32)
    if kind == 1:  # checkerboard
        v = -np.sin(angle) * xx + np.cos(angle) * yy
        return (np.sign(np.sin(np.pi * u / period)) * np.sign(np.sin(np.pi * v / period))).astype(
            np.float32
        )
    if kind == 2:  # blotches: smoothed noise at a coarse grid
        coarse = rng.normal(size=(h // 6 + 2, w // 6 + 2)).astype(np.float32)
        up = np.kron(coarse, np.ones((6, 6), np.float32))[:h, :w]
        return np.tanh(up)
    return np.zeros((h, w), np.float32)  # flat


def _grow(mask: np.ndarray, pixels: int) -> np.ndarray:
    """``mask`` dilated by ``pixels`` (4-connected steps)."""
    for _ in range(pixels):
        p = np.pad(mask, 1)
        mask = p[1:-1, 1:-1] | p[:-2, 1:-1] | p[2:, 1:-1] | p[1:-1, :-2] | p[1:-1, 2:]
    return mask


def _shape_mask(rng: np.random.Generator, cls: int, h: int, w: int) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    r = float(rng.uniform(*_RADIUS)) * min(h, w)
    cy, cx = rng.uniform(r, h - r), rng.uniform(r, w - r)
    if cls == 1:  # disk
        return (yy - cy) ** 2 + (xx - cx) ** 2 <= r**2
    if cls == 2:  # rotated rectangle
        a = float(rng.uniform(0, np.pi))
        u = np.cos(a) * (xx - cx) + np.sin(a) * (yy - cy)
        v = -np.sin(a) * (xx - cx) + np.cos(a) * (yy - cy)
        return (np.abs(u) <= r) & (np.abs(v) <= r * float(rng.uniform(0.4, 0.9)))
    if cls == 3:  # triangle: three half-planes
        a0 = float(rng.uniform(0, 2 * np.pi))
        inside = np.ones((h, w), bool)
        for k in range(3):
            a = a0 + 2 * np.pi * k / 3
            inside &= np.cos(a) * (xx - cx) + np.sin(a) * (yy - cy) <= r * 0.6
        return inside
    # ring
    d2 = (yy - cy) ** 2 + (xx - cx) ** 2
    return (d2 <= r**2) & (d2 >= (0.55 * r) ** 2)


def make_sample(
    index: int,
    size: int | tuple[int, int] = 128,
    in_channels: int = 1,
    num_classes: int = 5,
    seed: int = 0,
    noise: float = 0.06,
) -> tuple[np.ndarray, np.ndarray]:
    """Generate sample ``index`` of the synthetic dataset.

    Args:
        index: Sample number; with ``seed`` it fully determines the result.
        size: Image size, ``N`` or ``(H, W)``.
        in_channels: Image channels (1 grey, 3 RGB, any other count works too).
        num_classes: Classes including the background, 2 to 5 (``CLASS_NAMES`` in order).
        seed: Dataset seed.
        noise: Standard deviation of the additive Gaussian noise.

    Returns:
        The image, float32 ``(C, H, W)`` in [0, 1], and the mask, int64 ``(H, W)`` of class ids.

    Example:
        >>> image, mask = make_sample(0, size=64)
        >>> image.shape, mask.shape
        ((1, 64, 64), (64, 64))
    """
    if not 2 <= num_classes <= len(CLASS_NAMES):
        raise ValueError(
            f"synthetic data has 2 to {len(CLASS_NAMES)} classes. Received: num_classes={num_classes}"
        )
    h, w = (size, size) if isinstance(size, int) else size
    rng = np.random.default_rng([seed, index])
    # Eight well-separated brightness levels in random order (per channel for colour images).
    levels = np.linspace(0.15, 0.85, 8, dtype=np.float32)
    colours = np.stack([rng.permutation(levels) for _ in range(in_channels)], axis=1)

    def layer(colour_idx: int, kind: int, amplitude: float) -> np.ndarray:
        return colours[colour_idx][:, None, None] + amplitude * _texture(rng, h, w, kind)[None]

    background = int(rng.integers(8))
    image = layer(background, int(rng.integers(4)), _BACKGROUND_AMPLITUDE)
    mask = np.zeros((h, w), np.int64)
    count = int(rng.integers(_MIN_SHAPES, _MAX_SHAPES + 1))
    taken = np.zeros((h, w), bool)  # shapes so far, grown by the gap
    for _ in range(count):
        cls = int(rng.integers(1, num_classes))
        # Shapes never overlap, so every outline is whole; a shape with no room left is dropped.
        for _ in range(_PLACEMENT_TRIES):
            inside = _shape_mask(rng, cls, h, w)
            if not (inside & taken).any():
                break
        else:
            continue
        taken |= _grow(inside, _GAP)
        texture = _CLASS_TEXTURE[cls]
        # Any brightness but the background's own, so every outline has some contrast.
        colour = (background + int(rng.integers(1, 8))) % 8
        image = np.where(inside[None], layer(colour, texture, _SHAPE_AMPLITUDE), image)
        mask[inside] = cls
    # A soft edge (3-tap blur) so boundaries are not single-pixel steps.
    blurred = image.copy()
    blurred[:, 1:-1, :] = (image[:, :-2, :] + image[:, 1:-1, :] + image[:, 2:, :]) / 3
    image = blurred.copy()
    image[:, :, 1:-1] = (blurred[:, :, :-2] + blurred[:, :, 1:-1] + blurred[:, :, 2:]) / 3
    image = image + rng.normal(0.0, noise, size=image.shape).astype(np.float32)
    return np.clip(image, 0.0, 1.0).astype(np.float32), mask


def make_dataset(
    count: int,
    size: int | tuple[int, int] = 128,
    in_channels: int = 1,
    num_classes: int = 5,
    seed: int = 0,
    start: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """``count`` samples stacked: images ``(N, C, H, W)`` float32 and masks ``(N, H, W)`` int64."""
    pairs = [make_sample(start + i, size, in_channels, num_classes, seed) for i in range(count)]
    return np.stack([p[0] for p in pairs]), np.stack([p[1] for p in pairs])
