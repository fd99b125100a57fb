"""``UNet.from_pretrained`` / ``save_pretrained`` / ``push_to_hub``: the PyTorch twin as a hub model.

:class:`UNetHubMixin` is huggingface_hub's ``PyTorchModelHubMixin`` with this library's hub folder
(:mod:`unet_spec.hub`) as the saved form, through the two hooks the mixin asks an integration to
fill (``_save_pretrained``, ``_from_pretrained``):

- ``config.json`` holds the spec and the model class (the mixin's own config would hold the
  constructor's arguments as ``dataclasses.asdict`` gives them; the spec's own ``to_dict`` is the
  lossless form, and its ``from_dict`` the validated way back);
- ``model.safetensors`` is the canonical file (spec in its metadata; batch norm's
  ``num_batches_tracked`` counters left out, as in every canonical file), not the raw
  ``state_dict`` the mixin writes;
- loading is strict, unlike the mixin's default: a missing or unexpected tensor, a spec that does
  not fit the weights, or a folder without ``config.json`` is a one-line error naming it;
- a hub id is fetched by :func:`unet_runtime.downloads.fetch_folder`, the download the Keras twin
  and a training run's ``model.init_from`` use too (the twins may not import the bridge);
- the card is the mixin's, rendered from :data:`CARD_TEMPLATE` with the YAML metadata every
  folder of this library carries (``library_name``, ``tags``, ``license``, ``pipeline_tag``;
  :mod:`unet_spec.hub`). The full card (the spec, the verification, a run's figures) is the
  bridge's: ``unet port`` and a training run write it.

Everything else (``push_to_hub``, the cache, ``HF_HUB_OFFLINE``, ``revision``) is the mixin's and
huggingface_hub's.

Example:
    >>> import tempfile
    >>> from unet_spec import get_preset
    >>> from unet_torch import UNet
    >>> folder = tempfile.mkdtemp()
    >>> UNet(get_preset("modern-small")).save_pretrained(folder)
    >>> UNet.from_pretrained(folder).spec == get_preset("modern-small")
    True
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from huggingface_hub import PyTorchModelHubMixin

from unet_runtime.downloads import fetch_folder
from unet_spec import UNetSpec
from unet_spec import hub as hub_folder
from unet_torch.adapters import canonical_state, load_canonical

#: The card ``save_pretrained`` writes (huggingface_hub's template: ``card_data`` is the YAML
#: metadata the mixin renders from the class's arguments).
CARD_TEMPLATE = """---
{{ card_data }}
---

# U-Net

Saved by `UNet.save_pretrained` (unet-twins): the spec is in `config.json`, the canonical weights
in `model.safetensors`. Load it with `unet_torch.UNet.from_pretrained(PATH_OR_HUB_ID)` or
`unet_keras.from_pretrained(PATH_OR_HUB_ID)`.
"""


class UNetHubMixin(
    PyTorchModelHubMixin,
    model_card_template=CARD_TEMPLATE,
    library_name=hub_folder.LIBRARY_NAME,
    license=hub_folder.LICENSE,
    pipeline_tag=hub_folder.PIPELINE_TAG,
    tags=list(hub_folder.TAGS),
):
    """``save_pretrained``, ``from_pretrained`` and ``push_to_hub`` for :class:`~unet_torch.UNet`.

    ``UNet.from_pretrained(path_or_id, map_location="cpu", **kwargs)`` reads a local hub folder or
    a hub id (through huggingface_hub's cache; ``HF_HUB_OFFLINE=1`` is honoured) and returns the
    model in eval mode. Extra keyword arguments go to ``UNet`` (``recompute=...``).
    ``model.save_pretrained(folder)`` writes the hub folder; ``model.push_to_hub("user/name")``
    writes it to a temporary folder and uploads it (it needs a token: ``hf auth login``).
    """

    def _save_pretrained(self, save_directory: Path) -> None:
        # config.json written here, so the mixin keeps it (it writes its own only when the hook
        # wrote none).
        spec: UNetSpec = self.spec  # type: ignore[attr-defined]
        hub_folder.write_model_files(save_directory, canonical_state(self), spec)

    @classmethod
    def from_pretrained(
        cls,
        pretrained_model_name_or_path: str | os.PathLike[str],
        *,
        revision: str | None = None,
        cache_dir: str | os.PathLike[str] | None = None,
        force_download: bool = False,
        local_files_only: bool = False,
        token: str | bool | None = None,
        **kwargs: Any,
    ):
        """Load a hub folder or hub id (see the class docstring).

        Raises:
            FileNotFoundError: A local path that does not exist, a folder without
                ``config.json`` or ``model.safetensors``, or a hub id that is not cached offline.
            ValueError: Damaged files, specs that differ, or missing, unexpected or mis-shaped
                tensors (each named).
        """
        folder = fetch_folder(
            pretrained_model_name_or_path, hub_folder.FETCHED, revision=revision,
            cache_dir=cache_dir, force_download=force_download, local_files_only=local_files_only,
            token=token,
        )  # fmt: skip
        hub_folder.read_config(folder)  # a missing or invalid config.json is named up front
        # A local folder now: the mixin reads its config.json and calls _from_pretrained.
        return super().from_pretrained(folder, **kwargs)

    @classmethod
    def _from_pretrained(
        cls,
        *,
        model_id: str,
        revision: str | None,
        cache_dir: str | Path | None,
        force_download: bool,
        local_files_only: bool,
        token: str | bool | None,
        map_location: str = "cpu",
        spec: UNetSpec | dict | None = None,
        **model_kwargs: Any,
    ):
        # The hook's download options are the mixin's: from_pretrained fetched the folder already.
        folder = Path(model_id)
        if not isinstance(spec, UNetSpec):  # config.json's spec, as the mixin passes it on
            spec = hub_folder.spec_from_config({"spec": spec}, folder / hub_folder.CONFIG_NAME)
        weights, spec = hub_folder.load_hub_folder(folder, spec)
        model = cls(spec, **model_kwargs)
        load_canonical(model, weights, source=str(folder / hub_folder.WEIGHTS_NAME))
        return model.to(map_location).eval()


__all__ = ["UNetHubMixin"]
