"""Every weight format, chosen by the file's suffix.

Lightning ``.ckpt``, state-dict ``.pt`` and canonical ``.safetensors`` go through ``unet_torch.io``;
``.keras`` and ``.weights.h5`` through ``unet_keras``. Callers name a path and get canonical weights
and the spec, whatever wrote the file.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from unet_bridge.frameworks import import_frameworks
from unet_bridge.inputs import model_size
from unet_spec import UNetSpec

#: Suffixes ``unet port`` and ``unet parity`` read and write.
SUFFIXES = (".ckpt", ".pt", ".safetensors", ".keras", ".weights.h5")


def suffix_of(path: str | os.PathLike[str]) -> str:
    """The weight-format suffix of ``path`` (``.weights.h5`` counts as one).

    Raises:
        ValueError: An extension no reader knows.
    """
    name = Path(path).name
    for suffix in SUFFIXES:
        if name.endswith(suffix) and len(name) > len(suffix):
            return suffix
    raise ValueError(
        f"{path}: unknown extension {Path(path).suffix or '(none)'!r}; "
        f"weight files end in {', '.join(SUFFIXES)}"
    )


def load_any_weights(
    path: str | os.PathLike[str], spec: UNetSpec | None = None
) -> tuple[dict[str, np.ndarray], UNetSpec, Any]:
    """Canonical weights and spec from any supported file.

    Returns:
        ``(weights, spec, keras_model)``; ``keras_model`` is the model loaded from a ``.keras``
        file (possibly one this project did not build), ``None`` for other formats.
    """
    suffix = suffix_of(path)
    import_frameworks()
    if suffix in (".keras", ".weights.h5"):
        from unet_keras.foreign import load_keras_weights

        return load_keras_weights(path, spec)
    from unet_torch.io import load_any

    weights, spec = load_any(path, spec)
    return weights, spec, None


def save_any_weights(
    weights: Mapping[str, np.ndarray],
    spec: UNetSpec,
    path: str | os.PathLike[str],
    input_size: int | Sequence[int] | None = None,
) -> Path:
    """Write ``weights`` in the format named by ``path``'s suffix, atomically.

    ``input_size`` fixes the input of a ``.keras`` model (default:
    :func:`~unet_bridge.inputs.model_size`).
    """
    suffix = suffix_of(path)
    import_frameworks()
    if suffix == ".keras":
        from unet_keras.io import export_keras

        size = input_size if input_size is not None else model_size(spec)
        export_keras(weights, spec, path, size)
        return Path(path)
    if suffix == ".weights.h5":
        from unet_keras.foreign import save_weights_h5

        return save_weights_h5(weights, spec, path, input_size)
    from unet_torch.io import save_any

    return save_any(weights, spec, path)
