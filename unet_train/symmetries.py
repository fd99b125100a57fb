"""The test-time augmentation views a training augmentation makes alike.

A model trained on randomly flipped or turned crops has seen each view of an image equally often,
so averaging its outputs over those views (test-time augmentation) asks nothing it was not
trained for; a view it never saw (a street scene upside down) only adds errors. The views of a
training run are the group its random flips and quarter turns generate; the TTA mode recorded with
the weights is the largest mode of :data:`unet_infer.TTA_TRANSFORMS` inside that group.
"""

from __future__ import annotations

import numpy as np

from unet_infer.tta import TTA_TRANSFORMS, transform

# An asymmetric probe: two views of the square give the same probe only if they are one view.
_PROBE = np.arange(9).reshape(3, 3)


def trained_mode(hflip: bool, vflip: bool, rot90: bool) -> str:
    """The largest TTA mode whose every view the given random flips and turns draw, or ``"none"``.

    Example:
        >>> trained_mode(True, True, True), trained_mode(True, False, False)
        ('d4', 'hflip')
        >>> trained_mode(True, True, False), trained_mode(False, False, False)
        ('flips', 'none')
    """
    generators = [
        g for g, on in (((0, True), hflip), ((2, True), vflip), ((1, False), rot90)) if on
    ]
    seen = {_PROBE.tobytes(): _PROBE}
    frontier = [_PROBE]
    while frontier:  # the closure of the generators acting on the probe
        nxt = []
        for x in frontier:
            for rot, flip in generators:
                y = np.ascontiguousarray(transform(x, rot, flip))
                if y.tobytes() not in seen:
                    seen[y.tobytes()] = y
                    nxt.append(y)
        frontier = nxt
    inside = [
        mode
        for mode, views in TTA_TRANSFORMS.items()
        if all(np.ascontiguousarray(transform(_PROBE, r, f)).tobytes() in seen for r, f in views)
    ]
    return max(inside, key=lambda m: len(TTA_TRANSFORMS[m]), default="none")
