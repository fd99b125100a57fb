"""The hub folder's contract: the layout model hubs and their libraries share (``config.json``,
``model.safetensors``, ``README.md``), and ``config.json`` to and from the spec, for both twins.

A hub folder holds:

- ``config.json``: the spec (``"spec"``, the fields of :class:`~unet_spec.UNetSpec`) and the model
  class that builds it (``"model_class"``), as huggingface_hub's ``ModelHubMixin`` reads and writes
  a model's constructor arguments;
- ``model.safetensors``: the canonical weights (:mod:`unet_spec.weights`; the spec is in its
  metadata too, and both must agree);
- ``README.md``: the model card, opened by the YAML metadata that hubs index; the fields every
  folder of this library carries are here (:data:`LIBRARY_NAME`, :data:`LICENSE`,
  :data:`PIPELINE_TAG`, :data:`TAGS`), so that a folder is indexed alike whoever wrote it;
- ``model.keras``, optionally: the Keras twin as a full Keras model.

Both files of the contract are written by :func:`write_model_files` (each twin's
``save_pretrained`` and the bridge's hub writer), and read by :func:`load_hub_folder`, which is
strict: a missing ``config.json``, a spec that does not fit the weights, a missing or unexpected
tensor or a damaged file is a one-line ``ValueError``/``FileNotFoundError`` naming the file and
what differs.

What is not the contract lives above it: the card's text and the metadata a training run adds to
it in the bridge (:mod:`unet_bridge.card`), the fetch of a hub id through huggingface_hub's cache
on the floor both twins stand on (:mod:`unet_runtime.downloads`). Importing this module loads the
standard library and numpy only.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from unet_spec.spec import UNetSpec
from unet_spec.weights import read_weights, save_weights

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
KERAS_NAME = "model.keras"
CARD_NAME = "README.md"
#: The files a hub id is fetched for (the Keras file only where asked for).
FETCHED = (CONFIG_NAME, WEIGHTS_NAME, CARD_NAME)

#: The model class written into ``config.json`` (the PyTorch twin; the Keras twin builds the same
#: network from the same spec).
MODEL_CLASS = "unet_torch.UNet"
#: Bumped when the folder's layout changes in a way older readers cannot follow.
HUB_FORMAT_VERSION = 1

# What every folder says about itself: the library that reads it (in config.json and in the
# card), and the card's fields that hubs index and filter on. The license is the library's;
# weights trained on data under other terms should say so in their card.
LIBRARY_NAME = "unet-twins"
LICENSE = "mit"
PIPELINE_TAG = "image-segmentation"
TAGS = ("unet", "image-segmentation", "semantic-segmentation", "pytorch", "keras", "safetensors")


def hub_config(spec: UNetSpec) -> dict[str, Any]:
    """The content of ``config.json`` for ``spec``."""
    return {
        "model_class": MODEL_CLASS,
        "library_name": LIBRARY_NAME,
        "hub_format_version": HUB_FORMAT_VERSION,
        "spec": spec.to_dict(),
    }


def write_config(folder: str | os.PathLike[str], spec: UNetSpec) -> Path:
    """Write ``config.json`` into ``folder`` atomically."""
    from unet_runtime.files import atomic_write_bytes

    text = json.dumps(hub_config(spec), indent=2, sort_keys=True) + "\n"
    return atomic_write_bytes(Path(folder) / CONFIG_NAME, text.encode())


def write_model_files(
    folder: str | os.PathLike[str], weights: Mapping[str, Any], spec: UNetSpec
) -> tuple[Path, Path]:
    """Write the contract's two files into the existing ``folder``, each atomically: the canonical
    ``model.safetensors`` and ``config.json``. Returns their paths (weights, config)."""
    folder = Path(folder)
    return save_weights(weights, spec, folder / WEIGHTS_NAME), write_config(folder, spec)


def spec_from_config(config: Any, source: str | os.PathLike[str]) -> UNetSpec:
    """The spec in a parsed ``config.json`` (``source`` names the file in errors).

    Raises:
        ValueError: Not a mapping, no ``spec``, a newer folder layout, or an invalid spec.
    """
    if not isinstance(config, Mapping) or not isinstance(config.get("spec"), Mapping):
        raise ValueError(f"{source}: no 'spec' object in the config (not a U-Net hub folder)")
    version = config.get("hub_format_version", HUB_FORMAT_VERSION)
    if not isinstance(version, int) or version > HUB_FORMAT_VERSION:
        raise ValueError(
            f"{source}: hub folder version {version!r} is newer than this library reads "
            f"({HUB_FORMAT_VERSION}); upgrade unet-twins"
        )
    try:
        return UNetSpec.from_dict(dict(config["spec"]))
    except (TypeError, ValueError) as err:
        raise ValueError(f"{source}: the spec is invalid: {err}") from None


def read_config(folder: str | os.PathLike[str]) -> UNetSpec:
    """The spec in ``folder/config.json``.

    Raises:
        FileNotFoundError: ``folder`` is not a folder, or has no ``config.json``.
        ValueError: The file is not valid JSON or holds no valid spec.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: no such folder")
    path = folder / CONFIG_NAME
    if not path.is_file():
        raise FileNotFoundError(
            f"{folder}: no {CONFIG_NAME} (a hub folder holds {CONFIG_NAME}, {WEIGHTS_NAME} and "
            f"{CARD_NAME})"
        )
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"{path}: not valid JSON ({err})") from None
    return spec_from_config(config, path)


def load_hub_folder(
    folder: str | os.PathLike[str], spec: UNetSpec | None = None
) -> tuple[dict[str, np.ndarray], UNetSpec]:
    """Canonical weights and spec from a hub folder, checked strictly.

    The spec of ``config.json``, the spec in the weights' metadata and ``spec`` (when given) must
    be one spec, and the weights must hold exactly its tensors with its shapes.

    Raises:
        FileNotFoundError: No such folder, or no ``config.json`` or ``model.safetensors`` in it.
        ValueError: A damaged or truncated file, specs that differ (the fields are named), or
            missing, unexpected or mis-shaped tensors (named).
    """
    folder = Path(folder)
    configured = read_config(folder)
    if spec is not None and spec != configured:
        fields = ", ".join(f"{k}: config {a!r} vs given {b!r}" for k, (a, b) in
                           configured.diff(spec).items())  # fmt: skip
        raise ValueError(
            f"{folder / CONFIG_NAME}: the spec does not match the given one ({fields})"
        )
    path = folder / WEIGHTS_NAME
    if not path.is_file():
        raise FileNotFoundError(f"{folder}: no {WEIGHTS_NAME}")
    weights, stored = read_weights(path)  # checks the tensors against the stored spec
    if stored != configured:
        fields = ", ".join(f"{k}: weights {a!r} vs {CONFIG_NAME} {b!r}" for k, (a, b) in
                           stored.diff(configured).items())  # fmt: skip
        raise ValueError(f"{path}: the weights' spec does not match {CONFIG_NAME} ({fields})")
    return weights, stored


def is_hub_folder(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is a folder with a ``config.json``."""
    return (Path(path) / CONFIG_NAME).is_file()


__all__ = [
    "CARD_NAME",
    "CONFIG_NAME",
    "FETCHED",
    "HUB_FORMAT_VERSION",
    "KERAS_NAME",
    "LIBRARY_NAME",
    "LICENSE",
    "MODEL_CLASS",
    "PIPELINE_TAG",
    "TAGS",
    "WEIGHTS_NAME",
    "hub_config",
    "is_hub_folder",
    "load_hub_folder",
    "read_config",
    "spec_from_config",
    "write_config",
    "write_model_files",
]
