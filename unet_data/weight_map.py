"""The U-Net paper's weight map for separating touching objects (Ronneberger et al. 2015, eq. 2).

The thin background lines between touching objects (cell membranes in EM, gaps between cells in
light microscopy) are a small share of the pixels but decide whether two objects come out as one.
The paper weights each background pixel by how close it is to *two* objects::

    w(x) = 1 + w0 · exp(-(d1(x) + d2(x))² / (2 σ²))     on background pixels, 1 elsewhere

with ``d1``/``d2`` the distances to the nearest and the second-nearest object. Objects are the
4-connected components of each foreground class (every class but ``background``; ignored pixels
belong to no object). The paper's class-balancing term ``w_c`` is the loss's class weights here.

Framework-free (numpy and scipy.ndimage): computed once per training image, then cropped and
augmented together with its mask (:class:`unet_train.datasets.TrainCrops`).
"""

from __future__ import annotations

import math

import numpy as np

#: A term below ``w0 · exp(-CUTOFF² / 2)`` (3.4e-4 · w0) is dropped: distances are computed only
#: within ``CUTOFF · σ`` of each object, which keeps the map linear in the image size.
CUTOFF = 4.0


def border_weights(
    mask: np.ndarray,
    w0: float = 10.0,
    sigma: float = 5.0,
    background: int = 0,
    ignore_index: int | None = 255,
) -> np.ndarray:
    """Per-pixel loss weights ``(H, W)`` float32 for a mask of class ids ``(H, W)``.

    Args:
        mask: Class ids; ``ignore_index`` pixels are neither background nor an object.
        w0: Weight of the border term (the paper uses 10).
        sigma: Width of the border term in pixels (the paper uses about 5).
        background: The class whose pixels separate objects.
        ignore_index: Label of unlabelled pixels, or ``None``.

    Example:
        >>> m = np.ones((9, 9), np.int64); m[:, 4] = 0  # two objects, a one-pixel gap
        >>> w = border_weights(m, w0=10, sigma=5)
        >>> round(float(w[4, 4]), 2), float(w[4, 0])
        (10.23, 1.0)
    """
    from scipy import ndimage  # imported here: ``import unet_data`` loads numpy only

    if mask.ndim != 2:
        raise ValueError(f"border_weights needs an (H, W) mask, received shape {mask.shape}")
    if w0 < 0 or sigma <= 0:
        raise ValueError(f"border weights need w0 >= 0 and sigma > 0. Received: {w0}, {sigma}")
    h, w = mask.shape
    d1 = np.full((h, w), np.inf, np.float32)
    d2 = np.full((h, w), np.inf, np.float32)
    reach = math.ceil(CUTOFF * sigma)
    for c in np.unique(mask).tolist():
        if c == background or c == ignore_index:
            continue
        labels, _ = ndimage.label(mask == c)  # 4-connectivity
        for i, box in enumerate(ndimage.find_objects(labels), start=1):
            if box is None:
                continue
            ys = slice(max(box[0].start - reach, 0), min(box[0].stop + reach, h))
            xs = slice(max(box[1].start - reach, 0), min(box[1].stop + reach, w))
            # The whole object lies inside the window, so these distances are exact.
            dist = ndimage.distance_transform_edt(labels[ys, xs] != i).astype(np.float32)
            near, second = d1[ys, xs], d2[ys, xs]
            second[...] = np.minimum(second, np.maximum(near, dist))
            near[...] = np.minimum(near, dist)
    term = w0 * np.exp(-np.square(d1 + d2) / (2.0 * sigma**2))
    return np.where(mask == background, 1.0 + term, 1.0).astype(np.float32)


__all__ = ["CUTOFF", "border_weights"]
