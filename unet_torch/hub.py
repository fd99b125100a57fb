"""``UNet.from_pretrained`` / ``save_pretrained`` / ``push_to_hub``: the PyTorch twin as a hub model.

:class:`UNetHubMixin` is huggingface_hub's ``PyTorchModelHubMixin`` with this library's hub folder
(:mod:`unet_spec.hub`) as the saved form, through the two hooks the mixin asks an integration to
fill (``_save_pretrained``, ``_from_pretrained``) and its card hook (``generate_model_card``):

- ``config.json`` holds the spec and the model class (the mixin's own config would hold the
  constructor's arguments as ``dataclasses.asdict`` gives them; the spec's own ``to_dict`` is the
  lossless form, and its ``from_dict`` the validated way back);
- ``model.safetensors`` is the canonical file (spec in its metadata; batch norm's
  ``num_batches_tracked`` counters left out, as in every canonical file), not the raw
  ``state_dict`` the mixin writes;
- loading is strict, unlike the mixin's default: a missing or unexpected tensor, a spec that does
  not fit the weights, or a folder without ``config.json`` is a one-line error naming it;
- the card opens with the YAML metadata hubs index (``library_name``, ``tags``, ``license``,
  ``pipeline_tag``).

Everything else (hub ids through huggingface_hub's cache, ``HF_HUB_OFFLINE``, ``revision``,
``push_to_hub``) is the mixin's.

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

from huggingface_hub import ModelCard, PyTorchModelHubMixin, hf_hub_download
from huggingface_hub.errors import LocalEntryNotFoundError

from unet_spec import UNetSpec, save_weights
from unet_spec import hub as hub_folder
from unet_torch.adapters import canonical_state, load_canonical


class UNetHubMixin(
    PyTorchModelHubMixin,
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
        spec: UNetSpec = self.spec  # type: ignore[attr-defined]
        save_weights(canonical_state(self), spec, save_directory / hub_folder.WEIGHTS_NAME)
        # Written here, so the mixin keeps it (it writes its own only when the hook wrote none).
        hub_folder.write_config(save_directory, spec)

    def generate_model_card(self, *args: Any, **kwargs: Any) -> ModelCard:
        spec: UNetSpec = self.spec  # type: ignore[attr-defined]
        return ModelCard(hub_folder.card_text(spec))

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | os.PathLike[str], **kwargs: Any):
        """Load a hub folder or hub id (see the class docstring).

        Raises:
            FileNotFoundError: A local path that does not exist, a folder without
                ``config.json`` or ``model.safetensors``, or a hub id that is not cached offline.
            ValueError: Damaged files, specs that differ, or missing, unexpected or mis-shaped
                tensors (each named).
        """
        name = os.fspath(pretrained_model_name_or_path)
        if Path(name).is_dir():
            hub_folder.read_config(name)  # a missing or invalid config.json is named up front
        elif Path(name).exists() or not hub_folder.looks_like_hub_id(name):
            hub_folder.resolve_folder(name)  # raises the one-line error for a bad local path
        try:
            return super().from_pretrained(name, **kwargs)
        except LocalEntryNotFoundError:
            raise FileNotFoundError(
                f"{name}: not a local folder, and not in the hub cache while offline "
                "(HF_HUB_OFFLINE or local_files_only)"
            ) from None

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
        if Path(model_id).is_dir():
            folder = Path(model_id)
        else:
            # The mixin fetched config.json into the cache already; the weights join it there.
            weights_file = hf_hub_download(
                repo_id=model_id, filename=hub_folder.WEIGHTS_NAME, revision=revision,
                cache_dir=cache_dir, force_download=force_download, token=token,
                local_files_only=local_files_only,
            )  # fmt: skip
            folder = Path(weights_file).parent
        if spec is None:
            raise FileNotFoundError(f"{model_id}: no {hub_folder.CONFIG_NAME} with a spec")
        if not isinstance(spec, UNetSpec):  # config.json's spec, as the mixin passes it on
            spec = hub_folder.spec_from_config({"spec": spec}, Path(folder, hub_folder.CONFIG_NAME))
        weights, spec = hub_folder.load_hub_folder(folder, spec)
        model = cls(spec, **model_kwargs)
        load_canonical(model, weights, source=str(folder / hub_folder.WEIGHTS_NAME))
        return model.to(map_location).eval()


__all__ = ["UNetHubMixin"]
