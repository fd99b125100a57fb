"""The Keras twin from and to a hub folder (:mod:`unet_spec.hub`): ``from_pretrained`` and
``save_pretrained``.

The folder's canonical ``model.safetensors`` is the source of truth: the twin is built from the
spec in ``config.json`` and the weights are loaded through the one adapter
(:func:`unet_keras.from_canonical`), so a folder written by either twin loads in the other tensor
for tensor. A hub id goes through huggingface_hub's cache (``HF_HUB_OFFLINE=1`` honoured).

Example:
    >>> import tempfile, pathlib
    >>> from unet_spec import get_preset
    >>> from unet_keras import build_unet
    >>> folder = pathlib.Path(tempfile.mkdtemp()) / "my-unet"
    >>> spec = get_preset("modern-small")
    >>> _ = save_pretrained(build_unet(spec), folder, spec)
    >>> from_pretrained(folder).name
    'unet'
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import keras

from unet_keras.adapters import from_canonical, to_canonical
from unet_keras.builder import build_unet
from unet_keras.io import save_keras
from unet_runtime import atomic_path, atomic_write_bytes
from unet_spec import UNetSpec, save_weights
from unet_spec import hub as hub_folder
from unet_spec.sizes import model_size


def from_pretrained(
    path_or_id: str | os.PathLike[str],
    input_size: int | Sequence[int] | None = None,
    *,
    spec: UNetSpec | None = None,
    revision: str | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    local_files_only: bool = False,
    token: str | bool | None = None,
) -> keras.Model:
    """The Keras twin (NHWC in, logits out) of a hub folder or hub id.

    Args:
        path_or_id: A local hub folder, or a hub id (``user/name``) fetched through
            huggingface_hub's cache.
        input_size: ``N`` or ``(H, W)`` to build for (default: any size where the spec allows
            it, else the preset's natural size; see :func:`unet_spec.sizes.model_size`).
        spec: The spec the folder must hold (default: whatever it holds).
        revision, cache_dir, local_files_only, token: As huggingface_hub takes them (hub ids).

    Raises:
        FileNotFoundError: No such folder, no ``config.json`` or ``model.safetensors`` in it, or a
            hub id not in the cache while offline.
        ValueError: Damaged files, specs that differ, or missing, unexpected or mis-shaped tensors.
    """
    folder = hub_folder.resolve_folder(
        path_or_id, revision=revision, cache_dir=cache_dir, local_files_only=local_files_only,
        token=token,
    )  # fmt: skip
    weights, spec = hub_folder.load_hub_folder(folder, spec)
    size = input_size if input_size is not None else model_size(spec)
    return from_canonical(build_unet(spec, size), weights, spec)


def save_pretrained(
    model: keras.Model,
    folder: str | os.PathLike[str],
    spec: UNetSpec,
    *,
    with_keras: bool = False,
) -> Path:
    """Write a Keras twin built by :func:`~unet_keras.build_unet` as a hub folder, atomically.

    The folder (which must not exist) gets ``config.json``, the canonical ``model.safetensors``,
    ``README.md`` and, with ``with_keras``, ``model.keras``. It is written beside its destination
    and renamed into place when complete.
    """
    weights = to_canonical(model, spec)
    with atomic_path(folder, folder=True) as tmp:
        tmp.mkdir()
        save_weights(weights, spec, tmp / hub_folder.WEIGHTS_NAME)
        hub_folder.write_config(tmp, spec)
        atomic_write_bytes(tmp / hub_folder.CARD_NAME, hub_folder.card_text(spec).encode())
        if with_keras:
            save_keras(model, tmp / hub_folder.KERAS_NAME, spec)
    return Path(folder)


__all__ = ["from_pretrained", "save_pretrained"]
