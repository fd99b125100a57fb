"""The one place that knows Keras layouts: canonical (PyTorch-layout) weights ⇄ Keras layers, and
NCHW ⇄ NHWC arrays.

Conv2D kernels are ``(kh, kw, in, out)`` in Keras and ``(out, in, kh, kw)`` canonically;
Conv2DTranspose kernels are ``(kh, kw, out, in)`` in Keras and ``(in, out, kh, kw)`` canonically.
Both convert with the same axis permutation and no spatial flip.
"""

from __future__ import annotations

from collections.abc import Mapping

import keras
import numpy as np

from unet_spec import UNetSpec, build_plan, check_weights


def _to_keras_kernel(w: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(np.transpose(w, (2, 3, 1, 0)))


def _to_canonical_kernel(w: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(np.transpose(w, (3, 2, 0, 1)))


def from_canonical(
    model: keras.Model, weights: Mapping[str, np.ndarray], spec: UNetSpec
) -> keras.Model:
    """Load canonical ``weights`` into a model built by :func:`build_unet` for ``spec``."""
    check_weights(weights, spec)
    for block in build_plan(spec).blocks:
        names = list(block.weight_shapes)
        if not names:
            continue
        layer = _layer(model, block.keras_name)
        if block.kind in ("batchnorm", "instancenorm"):
            values = [weights[n] for n in names]  # gamma, beta[, moving mean, moving variance]
        else:
            values = [_to_keras_kernel(weights[names[0]]), *(weights[n] for n in names[1:])]
        layer.set_weights([np.asarray(v, dtype=np.float32) for v in values])
    return model


def to_canonical(
    model: keras.Model, spec: UNetSpec, dtype: np.dtype | type = np.float32
) -> dict[str, np.ndarray]:
    """The weights of a model built by :func:`build_unet` for ``spec``, in canonical form
    (``dtype``: float32, the file format's, or float64 for a model run in double precision)."""
    out: dict[str, np.ndarray] = {}
    for block in build_plan(spec).blocks:
        names = list(block.weight_shapes)
        if not names:
            continue
        values = [np.asarray(v, dtype=dtype) for v in _layer(model, block.keras_name).get_weights()]
        if block.kind in ("batchnorm", "instancenorm"):
            out.update(zip(names, values, strict=True))
        else:
            out[names[0]] = _to_canonical_kernel(values[0])
            out.update(zip(names[1:], values[1:], strict=True))  # the bias, when there is one
    check_weights(out, spec, source=f"Keras model {model.name!r}")
    return out


def _layer(model: keras.Model, name: str) -> keras.Layer:
    try:
        return model.get_layer(name)
    except ValueError:
        raise ValueError(f"Keras model {model.name!r} has no layer named {name!r}") from None


def to_nhwc(x: np.ndarray) -> np.ndarray:
    """NCHW → NHWC."""
    return np.ascontiguousarray(np.transpose(x, (0, 2, 3, 1)))


def to_nchw(x: np.ndarray) -> np.ndarray:
    """NHWC → NCHW."""
    return np.ascontiguousarray(np.transpose(x, (0, 3, 1, 2)))
