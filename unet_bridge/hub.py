"""The hub folder as a format of the registry: ``unet port run/.../best.ckpt my-unet/`` writes one,
``unet port my-unet/ model.keras`` reads one.

The layout is :mod:`unet_spec.hub`'s (``config.json``, canonical ``model.safetensors``,
``README.md`` with the YAML metadata hubs index, and ``model.keras`` with ``with_keras``), and
:func:`write_hub_files` is its one writer: the registry's writer below and a training run's folder
(:class:`unet_train.callbacks.RunArtifacts`) both go through it. The module registers the format
itself (:data:`FORMAT`), as the deployment artefacts do. A folder written by the registry
goes through the same prove-then-write path as every port (:func:`unet_bridge.port.write_verified`):
it is written to a temporary folder beside its destination, its weights are read back bit-exact
and run in both twins against the float64 reference, a ``model.keras`` inside is run the same way,
the card records the verification, and only then is the folder renamed into place.

Example:
    >>> import tempfile, pathlib
    >>> from unet_spec import get_preset, random_weights
    >>> from unet_bridge.formats import save_any_weights
    >>> spec = get_preset("modern-small")
    >>> folder = pathlib.Path(tempfile.mkdtemp()) / "my-unet"
    >>> sorted(p.name for p in save_any_weights(random_weights(spec), spec, folder).iterdir())
    ['README.md', 'config.json', 'model.safetensors']
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from unet_bridge.card import write_hub_card
from unet_bridge.formats import FORMATS, HUB_FOLDER, Format, Size, Weights, register
from unet_bridge.reads import SourceRead
from unet_spec import UNetSpec
from unet_spec import hub as hub_folder
from unet_spec.sizes import model_size

#: The card's name for a folder written without one (the loading snippet reads ``PATH``).
PLACEHOLDER = "PATH"


def read_hub(path: Path, spec: UNetSpec | None) -> SourceRead:
    """The format's reader: canonical weights and spec, strictly checked (no reference: the
    folder's weights are its canonical file)."""
    return SourceRead(*hub_folder.load_hub_folder(path, spec), None, "")


def write_hub(
    weights: Weights,
    spec: UNetSpec,
    path: Path,
    input_size: Size = None,
    *,
    with_keras: bool = False,
    metrics: Mapping[str, Any] | None = None,
    source: str | None = None,
    name: str | None = None,
) -> Path:
    """Write the hub folder ``path`` (which must not exist yet).

    Args:
        weights: Canonical weights.
        spec: Their spec.
        path: The folder to create.
        input_size: The input size of ``model.keras`` (default: any size where the spec allows
            it, else the preset's natural size).
        with_keras: Also write ``model.keras``.
        metrics: A training run's ``metrics.json`` for the card.
        source: Where the weights came from, for the card.
        name: The card's title and the name its loading snippet uses (default: a placeholder;
            ``path`` is the temporary stand-in of the destination, whose name the writer does not
            know; a verified write's card is rewritten with the destination's name).
    """
    path.mkdir()
    write_hub_files(path, weights, spec, metrics=metrics, source=source, name=name or PLACEHOLDER)
    if with_keras:
        # Through the registry, so the .keras writer is the one every port uses.
        size = input_size if input_size is not None else model_size(spec)
        FORMATS[".keras"].write(weights, spec, path / hub_folder.KERAS_NAME, size)
    return path


def write_hub_files(
    folder: Path,
    weights: Weights,
    spec: UNetSpec,
    *,
    parity: Any = None,
    metrics: Mapping[str, Any] | None = None,
    source: str | None = None,
    name: str | None = None,
) -> dict[str, Path]:
    """Write a hub folder's files into the existing ``folder``, each atomically: the contract's
    ``model.safetensors`` and ``config.json`` (:func:`unet_spec.hub.write_model_files`), then the
    card (:func:`unet_bridge.card.hub_card`).

    Args:
        folder: An existing folder (a training run's holds its checkpoints and logs beside).
        weights: Canonical weights.
        spec: Their spec.
        parity: What was verified, for the card (see :func:`unet_bridge.card.model_card`).
        metrics: A training run's ``metrics.json``, for the card.
        source: Where the weights came from, for the card.
        name: The card's title and the name its loading snippet uses (default: the folder's).

    Returns:
        The paths written: ``weights``, ``config`` and ``card``.
    """
    weights_path, config_path = hub_folder.write_model_files(folder, weights, spec)
    card = write_hub_card(folder, spec, parity=parity, metrics=metrics, source=source, name=name)
    return {"weights": weights_path, "config": config_path, "card": card}


def members(path: Path) -> list[Path]:
    """The weight files inside a written folder that are verified with it: ``model.keras``."""
    keras_file = path / hub_folder.KERAS_NAME
    return [keras_file] if keras_file.is_file() else []


def finish(
    written: Path,
    dst: Path,
    spec: UNetSpec,
    result: Any,
    *,
    metrics: Mapping[str, Any] | None = None,
    source: str | None = None,
    name: str | None = None,
    **_: Any,
) -> None:
    """Rewrite the card of a verified folder with the verification's summary."""
    write_hub_card(
        written, spec, parity={"verified": result.summary}, metrics=metrics, source=source,
        name=name or Path(dst).name,
    )  # fmt: skip


# Reading needs no framework; writing renders the card with huggingface_hub ([torch]).
FORMAT = register(
    Format(
        HUB_FOLDER, "hub folder (config.json, model.safetensors, README.md)", "", read_hub,
        write_hub, folder=True, members=members, finish=finish,
    )
)  # fmt: skip

__all__ = ["FORMAT", "finish", "members", "read_hub", "write_hub", "write_hub_files"]
