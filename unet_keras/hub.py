"""The Keras twin from and to a hub folder (:mod:`unet_spec.hub`): ``from_pretrained`` and
``save_pretrained``.

The folder's canonical ``model.safetensors`` is the source of truth: the twin is built from the
spec in ``config.json`` and the weights are loaded through the one adapter
(:func:`unet_keras.from_canonical`), so a folder written by either twin loads in the other tensor
for tensor. A hub id is fetched through huggingface_hub's cache (``HF_HUB_OFFLINE=1`` honoured) by
:func:`unet_runtime.downloads.fetch_folder`, the download the PyTorch twin uses too: the twins may
not import the bridge, so it sits on the floor both stand on.

``save_pretrained`` writes the contract's files (:func:`unet_spec.hub.write_model_files`) and a
short card with the YAML metadata every folder of this library carries, rendered by
huggingface_hub as the PyTorch twin's mixin renders its own; the full card (the spec, the
verification, a run's figures) is the bridge's (``unet port``, a training run).

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
from unet_runtime.downloads import fetch_folder
from unet_spec import UNetSpec
from unet_spec import hub as hub_folder
from unet_spec.sizes import model_size

#: The body of the card ``save_pretrained`` writes, below its YAML metadata.
CARD_BODY = """
# U-Net

Saved by `unet_keras.save_pretrained` (unet-twins): the spec is in `config.json`, the canonical
weights in `model.safetensors`. Load it with `unet_keras.from_pretrained(PATH_OR_HUB_ID)` or
`unet_torch.UNet.from_pretrained(PATH_OR_HUB_ID)`.
"""


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
    folder = fetch_folder(
        path_or_id, hub_folder.FETCHED, revision=revision, cache_dir=cache_dir,
        local_files_only=local_files_only, token=token,
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
    from huggingface_hub import ModelCardData

    weights = to_canonical(model, spec)
    data = ModelCardData(
        library_name=hub_folder.LIBRARY_NAME, license=hub_folder.LICENSE,
        pipeline_tag=hub_folder.PIPELINE_TAG, tags=list(hub_folder.TAGS),
    )  # fmt: skip
    # The YAML rendered as huggingface_hub renders a card's (its templates would need Jinja2,
    # which the [keras] extra does not bring).
    card = f"---\n{data.to_yaml()}\n---\n{CARD_BODY}"
    with atomic_path(folder, folder=True) as tmp:
        tmp.mkdir()
        hub_folder.write_model_files(tmp, weights, spec)
        atomic_write_bytes(tmp / hub_folder.CARD_NAME, card.encode())
        if with_keras:
            save_keras(model, tmp / hub_folder.KERAS_NAME, spec)
    return Path(folder)


__all__ = ["from_pretrained", "save_pretrained"]
