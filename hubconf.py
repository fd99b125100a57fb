"""torch.hub entry points: ``torch.hub.load(REPO, "unet", source="local", preset="seed-small")``.

``unet`` builds any preset (or the spec of the weights it is given); each preset also has its own
entry point, named after it with ``-`` written ``_`` (``seed``, ``seed_small``,
``milesial_bilinear``, ...; ``torch.hub.help(REPO, "seed_small")`` describes one). Weights are
optional and come from

- a hub folder or hub id (``config.json`` + ``model.safetensors``; ``UNet.from_pretrained``);
- a local ``.safetensors`` (canonical), ``.pt`` or ``.ckpt`` file;
- a URL (``https://``, ``file://``) of such a file, downloaded once into torch.hub's cache
  (``torch.hub.get_dir()/checkpoints``).

Loading is strict: the weights must be exactly the spec's tensors, and a preset named beside them
must be their spec. The model is returned in eval mode. Only the PyTorch side is imported.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

dependencies = ["torch", "numpy", "safetensors", "huggingface_hub"]


def unet(preset: str | None = None, weights: str | None = None, **kwargs: Any):
    """A U-Net (``unet_torch.UNet``, eval mode) of ``preset``, with ``weights`` when given.

    Args:
        preset: A registered preset (``unet summary --list``); default ``"seed"``, or the spec
            stored with ``weights``.
        weights: A hub folder or hub id, a ``.safetensors``/``.pt``/``.ckpt`` file, or an
            URL of such a file (downloaded once into torch.hub's cache).
        **kwargs: ``map_location`` (default ``"cpu"``), ``progress`` (URL downloads), and
            ``UNet``'s own arguments (``recompute=...``).
    """
    from unet_spec import get_preset, resolve_spec
    from unet_torch import UNet, load_canonical

    map_location = kwargs.pop("map_location", "cpu")
    progress = kwargs.pop("progress", True)
    given = get_preset(preset) if preset is not None else None
    if weights is None:
        return UNet(given or get_preset("seed"), **kwargs).to(map_location).eval()
    source = os.fspath(weights)
    if source.startswith(("http://", "https://", "file://")):
        source = _download(source, progress)
    if Path(source).is_file():
        canonical, stored = _read_file(Path(source), given)
        spec = resolve_spec(stored, given, source)
        model = load_canonical(UNet(spec, **kwargs), canonical, source=source)
        return model.to(map_location).eval()
    # A hub folder or a hub id: the same strict loader as UNet.from_pretrained.
    model = UNet.from_pretrained(source, map_location=map_location, **kwargs)
    resolve_spec(model.spec, given, source)
    return model


def _read_file(path: Path, spec):
    if path.name.endswith(".safetensors"):
        from unet_spec.weights import is_canonical_file, load_weights

        if is_canonical_file(path):
            return load_weights(path, spec)
        from unet_torch.io import load_safetensors

        return load_safetensors(path, spec)
    if path.name.endswith(".pt"):
        from unet_torch.io import load_pt

        return load_pt(path, spec)
    if path.name.endswith(".ckpt"):
        from unet_torch.io import load_ckpt

        return load_ckpt(path, spec)
    raise ValueError(f"{path}: weights are a hub folder or a .safetensors, .pt or .ckpt file")


def _download(url: str, progress: bool) -> str:
    """``url``'s file in torch.hub's cache (downloaded once), as ``load_state_dict_from_url``
    keeps its files; the name is the URL's last part."""
    from urllib.parse import urlparse

    import torch

    name = os.path.basename(urlparse(url).path)
    if not name:
        raise ValueError(f"{url}: the URL names no file")
    folder = Path(torch.hub.get_dir()) / "checkpoints"
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / name
    if not target.is_file():
        torch.hub.download_url_to_file(url, str(target), progress=progress)
    return str(target)


def _preset_entry(name: str):
    def entry(weights: str | None = None, **kwargs: Any):
        return unet(name, weights, **kwargs)

    entry.__name__ = entry.__qualname__ = name.replace("-", "_")
    entry.__doc__ = (
        f"The ``{name}`` preset (eval mode), with optional ``weights`` (a hub folder or id, a "
        ".safetensors/.pt/.ckpt file or its URL) that must be of this preset; see ``unet``."
    )
    return entry


def _entries() -> dict[str, Any]:
    from unet_spec import PRESETS

    return {name.replace("-", "_"): _preset_entry(name) for name in PRESETS}


globals().update(_entries())
