"""The hub folder: the layout model hubs and their libraries share (``config.json``,
``model.safetensors``, ``README.md``), for both twins.

A hub folder holds:

- ``config.json``: the spec (``"spec"``, the fields of :class:`~unet_spec.UNetSpec`) and the model
  class that builds it (``"model_class"``), as huggingface_hub's ``ModelHubMixin`` reads and writes
  a model's constructor arguments;
- ``model.safetensors``: the canonical weights (:mod:`unet_spec.weights`; the spec is in its
  metadata too, and both must agree);
- ``README.md``: the model card, opened by the YAML metadata that hubs index (``library_name``,
  ``tags``, ``license``, ``pipeline_tag``, ``datasets``, ``metrics``);
- ``model.keras``, optionally: the Keras twin as a full Keras model.

``UNet.from_pretrained`` (``unet_torch``), ``unet_keras.from_pretrained``, ``hubconf.py`` and the
bridge's format registry all read it through :func:`load_hub_folder`, which is strict: a missing
``config.json``, a spec that does not fit the weights, a missing or unexpected tensor or a damaged
file is a one-line ``ValueError``/``FileNotFoundError`` naming the file and what differs.

A hub id (``user/name``) is fetched through huggingface_hub's cache (:func:`resolve_folder`), so
``HF_HUB_OFFLINE=1`` and ``local_files_only`` work as everywhere else in that ecosystem. Importing
this module loads the standard library and numpy only; huggingface_hub (the ``[torch]`` extra) is
imported where a card is rendered or a hub id is fetched.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from unet_spec.spec import UNetSpec
from unet_spec.weights import read_weights

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

# The card's metadata (what hubs index and filter on). The license is the library's; weights
# trained on data under other terms should say so in their card.
LIBRARY_NAME = "unet-twins"
LICENSE = "mit"
PIPELINE_TAG = "image-segmentation"
TAGS = ("unet", "image-segmentation", "semantic-segmentation", "pytorch", "keras", "safetensors")

#: How to load a hub folder (``{path}``: the folder or hub id), in the card and in the docs.
LOADING = """```python
from unet_torch import UNet                       # pip install 'unet-twins[torch]'
model = UNet.from_pretrained("{path}")            # eval mode; NCHW logits out

import unet_keras                                 # pip install 'unet-twins[keras]'
keras_model = unet_keras.from_pretrained("{path}")  # NHWC logits out

import torch                                      # REPO: a clone of unet-twins
model = torch.hub.load("REPO", "unet", source="local", weights="{path}")
```"""

#: Figures of a training run's ``metrics.json`` that become card metrics, with their metric ids.
CARD_METRICS = {
    "val/dice": ("dice", "mean Dice (validation)"),
    "val/dice_fg": ("dice", "foreground Dice (validation)"),
    "val/miou": ("mean_iou", "mean IoU (validation)"),
    "val/pixel_error": ("pixel_error", "pixel error (validation)"),
}


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


def looks_like_hub_id(name: str) -> bool:
    """Whether ``name`` (not an existing path) reads as a hub id ``owner/name`` rather than as a
    local path: two non-empty parts around one ``/``, no leading ``.`` or ``~``, no ``\\``."""
    parts = name.split("/")
    return len(parts) == 2 and all(parts) and not name.startswith((".", "~")) and "\\" not in name


def resolve_folder(
    path_or_id: str | os.PathLike[str],
    *,
    revision: str | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    local_files_only: bool = False,
    token: str | bool | None = None,
    keras: bool = False,
) -> Path:
    """A local hub folder for a path or a hub id.

    A local folder is returned as it is. A hub id is fetched with huggingface_hub's
    ``snapshot_download`` (its cache, ``HF_HUB_OFFLINE=1`` and ``local_files_only`` honoured):
    ``config.json``, ``model.safetensors`` and ``README.md``, and ``model.keras`` when ``keras``.

    Raises:
        FileNotFoundError: A local path that does not exist or is a file, or a hub id that is not
            in the cache while offline.
    """
    name = os.fspath(path_or_id)
    path = Path(name)
    if path.is_dir():
        return path
    if path.exists():
        raise FileNotFoundError(f"{path}: a file, not a hub folder ({CONFIG_NAME}, {WEIGHTS_NAME})")
    if not looks_like_hub_id(name):
        raise FileNotFoundError(f"{path}: no such folder")
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    patterns = [*FETCHED, KERAS_NAME] if keras else list(FETCHED)
    try:
        local = snapshot_download(
            name, revision=revision, cache_dir=cache_dir, local_files_only=local_files_only,
            token=token, allow_patterns=patterns,
        )  # fmt: skip
    except LocalEntryNotFoundError:
        raise FileNotFoundError(
            f"{name}: not a local folder, and not in the hub cache while offline "
            "(HF_HUB_OFFLINE or local_files_only)"
        ) from None
    except HfHubHTTPError as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise FileNotFoundError(f"{name}: not found on the hub ({first})") from None
    return Path(local)


def card_metadata(
    spec: UNetSpec, metrics: Mapping[str, Any] | None = None, name: str = "model"
) -> dict[str, Any]:
    """The card's YAML metadata as keyword arguments of huggingface_hub's ``ModelCardData``.

    ``metrics`` is a training run's ``metrics.json``: its data set becomes ``datasets``, its
    best epoch's validation figures the ``metrics`` ids and ``eval_results`` (``model-index``),
    and the weights a fine-tuned run started from (``base_model.name``) ``base_model``.
    """
    from unet_spec.sizes import preset_name

    preset = preset_name(spec)
    tags = [*TAGS, *([f"preset-{preset}"] if preset else [])]
    meta: dict[str, Any] = {
        "library_name": LIBRARY_NAME,
        "license": LICENSE,
        "pipeline_tag": PIPELINE_TAG,
        "tags": tags,
    }
    if not metrics:
        return meta
    base = metrics.get("base_model")
    if isinstance(base, Mapping) and base.get("name"):
        meta["base_model"] = str(base["name"])  # a fine-tuned run's weights, named as hubs do
    dataset = _dataset_name(metrics.get("data"))
    if dataset:
        meta["datasets"] = [dataset]
    best = metrics.get("best")
    figures = {
        key: value
        for key, value in (best.items() if isinstance(best, Mapping) else ())
        if key in CARD_METRICS and isinstance(value, (int, float))
    }
    if figures:
        meta["metrics"] = sorted({CARD_METRICS[k][0] for k in figures})
        meta["model_name"] = name
        meta["eval_results"] = [
            {
                "task_type": PIPELINE_TAG,
                "dataset_type": dataset or "custom",
                "dataset_name": dataset or "custom",
                "dataset_split": "validation",
                "metric_type": CARD_METRICS[key][0],
                "metric_name": CARD_METRICS[key][1],
                "metric_value": round(float(value), 6),
            }
            for key, value in figures.items()
        ]
    return meta


def _dataset_name(data: Any) -> str | None:
    """A short name for a run's data (its folder's name, else its data module's)."""
    if not isinstance(data, Mapping):
        return None
    if data.get("root"):
        return Path(str(data["root"])).name or None
    module = str(data.get("module") or "")
    module = module.removesuffix("DataModule").removesuffix("Data")
    return module.lower() or None


def card_header(
    spec: UNetSpec, metrics: Mapping[str, Any] | None = None, name: str = "model"
) -> str:
    """The card's YAML front matter (``---`` lines included), rendered by huggingface_hub's
    ``ModelCardData`` so that hubs read it as they read their own."""
    from huggingface_hub import EvalResult, ModelCardData

    meta = card_metadata(spec, metrics, name)
    results = [EvalResult(**r) for r in meta.pop("eval_results", [])]
    data = ModelCardData(**meta, eval_results=results or None)
    return f"---\n{data.to_yaml()}\n---\n"


def card_text(spec: UNetSpec, name: str = "U-Net") -> str:
    """The card ``save_pretrained`` writes (either twin): the YAML header, the architecture, its
    spec and how to load the folder. The bridge's card (``unet port``, a training run) has the
    same header and adds the verification and training figures."""
    from unet_spec.plan import build_plan
    from unet_spec.sizes import preset_name

    preset = preset_name(spec)
    params = build_plan(spec).trainable_params
    body = [
        f"# {name}", "",
        f"U-Net ({'preset `' + preset + '`' if preset else 'custom spec'}): {spec.in_channels} → "
        f"{spec.num_classes} channels, depth {spec.depth}, base {spec.base_filters} filters, "
        f"{spec.padding} padding, head `{spec.head}`, {params:,} parameters.", "",
        "## Spec", "", "```json", json.dumps(spec.to_dict(), indent=1, sort_keys=True), "```", "",
        "## Loading", "", LOADING.format(path="PATH_OR_HUB_ID"), "",
    ]  # fmt: skip
    return card_header(spec, None, name) + "\n".join(body)


__all__ = [
    "CARD_NAME",
    "CONFIG_NAME",
    "KERAS_NAME",
    "LIBRARY_NAME",
    "LICENSE",
    "LOADING",
    "MODEL_CLASS",
    "PIPELINE_TAG",
    "TAGS",
    "WEIGHTS_NAME",
    "card_header",
    "card_metadata",
    "card_text",
    "hub_config",
    "is_hub_folder",
    "load_hub_folder",
    "read_config",
    "resolve_folder",
    "spec_from_config",
    "write_config",
]
