"""The format registry: one entry per file suffix, with its reader, its writer and its runtime.

Lightning ``.ckpt``, state-dict ``.pt`` and canonical ``.safetensors`` go through ``unet_torch.io``;
``.keras`` and ``.weights.h5`` through ``unet_keras``. ``unet port``, ``unet parity``,
``unet predict`` and the training run's export all pick the format here, so they accept the same
files and give the same error for an unknown one. The hub folder (:mod:`unet_bridge.hub`) and the
deployment formats (:mod:`unet_bridge.export`; a writer and a runtime, and no reader, since weights
are not read back from them) register themselves from their own modules, which import this one.

Callers name a path and get canonical weights and the spec, whatever wrote the file, as the same
:class:`~unet_bridge.reads.SourceRead` the converters of layouts from elsewhere return (those are
read by :func:`unet_bridge.sources.read_any`, which comes here for this project's own formats).
Each reader and writer imports only its own framework (``unet_keras`` loads triton before TensorFlow itself), so
a ``.safetensors`` file needs neither.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from unet_bridge.reads import SourceRead, keras_model_reference
from unet_runtime import atomic_path, suffix_in
from unet_spec import UNetSpec
from unet_spec.sizes import model_size

Weights = Mapping[str, np.ndarray]
Size = int | Sequence[int] | None
#: ``read(path, spec) -> SourceRead``: what every reader returns (a Keras model file's reference
#: is the model loaded from it).
Reader = Callable[[Path, UNetSpec | None], SourceRead]
#: ``write(weights, spec, path, input_size)`` writes the file or folder at ``path``.
Writer = Callable[[Weights, UNetSpec, Path, Size], Any]


@dataclass(frozen=True)
class Format:
    """One file format.

    Attributes:
        suffix: The file suffix (``.weights.h5`` counts as one).
        description: What the file is, for help texts and errors.
        framework: The install extra that reads and writes it (``torch``, ``keras``, ...; empty
            when the base install does).
        read: Canonical weights from a file, or ``None`` for a write-only deployment format.
        write: The writer; it need not be atomic (:func:`save_any_weights` gives it a temporary
            path that is renamed into place when it returns).
        folder: The artefact is a folder (a TensorFlow SavedModel, a hub folder), not a file.
        members: The weight files inside a written folder that are verified with it (a hub
            folder's ``model.keras``); each is read back through its own format.
        finish: ``finish(written, dst, spec, result, **options)``, called once a verified write
            has passed and before it lands (a hub folder's card records the verification).
    """

    suffix: str
    description: str
    framework: str
    read: Reader | None
    write: Writer
    folder: bool = False
    members: Callable[[Path], list[Path]] | None = None
    finish: Callable[..., Any] | None = None


FORMATS: dict[str, Format] = {}
#: The registry key of the hub folder (:mod:`unet_bridge.hub`), which has no suffix of its own.
HUB_FOLDER = "/"


def register(fmt: Format) -> Format:
    """Add ``fmt`` to the registry (a later entry for the same suffix replaces the earlier)."""
    FORMATS[fmt.suffix] = fmt
    return fmt


def weight_suffixes() -> tuple[str, ...]:
    """Suffixes that can be read back as weights (``unet port`` and ``unet parity`` sources)."""
    return tuple(s for s, f in FORMATS.items() if f.read is not None)


def format_of(path: str | os.PathLike[str]) -> Format:
    """The registered format of ``path``, by its suffix (the longest that matches).

    Raises:
        ValueError: An extension no format knows.
    """
    suffix = suffix_in(path, FORMATS)
    if suffix is not None:
        return FORMATS[suffix]
    name = Path(path).name
    # A folder without a format suffix is a hub folder: an existing folder, a path written with
    # a trailing separator (``my-unet/``), or a name with no extension at all (``my-unet``).
    text = os.fspath(path)
    if HUB_FOLDER in FORMATS and (
        Path(path).is_dir() or text.endswith(("/", os.sep)) or not Path(name).suffix
    ):
        return FORMATS[HUB_FOLDER]
    known = ", ".join(s for s in FORMATS if s != HUB_FOLDER)
    raise ValueError(
        f"{path}: unknown extension {Path(path).suffix or '(none)'!r}; known formats end in "
        f"{known}, or are hub folders (config.json, model.safetensors)"
    )


def suffix_of(path: str | os.PathLike[str]) -> str:
    """The format suffix of ``path`` (see :func:`format_of`)."""
    return format_of(path).suffix


def load_any_weights(path: str | os.PathLike[str], spec: UNetSpec | None = None) -> SourceRead:
    """Canonical weights and spec from any of this project's readable formats.

    Returns:
        ``(weights, spec, reference, note)``: the reference is the model loaded from a Keras model
        file (``.keras``, legacy ``.h5``; possibly one this project did not build), ``None`` for
        other formats; the note is empty.

    Raises:
        FileNotFoundError: No such file.
        ValueError: An unknown or write-only format, or a file that does not fit ``spec``.
    """
    fmt = format_of(path)
    if fmt.read is None:
        raise ValueError(
            f"{path}: a {fmt.description} is a deployment artefact, not a weight file; "
            f"weights are read from {', '.join(weight_suffixes())}"
        )
    if fmt.folder and not Path(path).is_dir():
        raise FileNotFoundError(f"{path}: no such folder")
    if not fmt.folder and not Path(path).is_file():
        raise FileNotFoundError(f"{path}: no such file")
    return fmt.read(Path(path), spec)


def save_any_weights(
    weights: Weights,
    spec: UNetSpec,
    path: str | os.PathLike[str],
    input_size: Size = None,
    options: Mapping[str, Any] | None = None,
) -> Path:
    """Write ``weights`` in the format named by ``path``'s suffix, atomically.

    ``input_size`` fixes the input of a Keras model (default: :func:`~unet_spec.sizes.model_size`);
    ``options`` are keyword arguments of the format's writer (a hub folder's ``with_keras``,
    ``metrics``, ``source``, ``name``).
    """
    fmt = format_of(path)
    with atomic_path(path, folder=fmt.folder) as tmp:
        fmt.write(weights, spec, tmp, input_size, **(options or {}))
    return Path(path)


# -- the weight formats ---------------------------------------------------------------------------
def _read_ckpt(path: Path, spec: UNetSpec | None) -> SourceRead:
    from unet_torch.io import load_ckpt

    return SourceRead(*load_ckpt(path, spec), None, "")


def _write_ckpt(weights: Weights, spec: UNetSpec, path: Path, input_size: Size) -> Any:
    from unet_torch.io import save_ckpt

    return save_ckpt(weights, spec, path)


def _read_pt(path: Path, spec: UNetSpec | None) -> SourceRead:
    # This project's own .pt, or a bare state dict under plan names (with ``spec``); layouts from
    # elsewhere are told apart and read before this (unet_bridge.sources.read_any).
    from unet_torch.io import load_pt

    return SourceRead(*load_pt(path, spec), None, "")


def _write_pt(weights: Weights, spec: UNetSpec, path: Path, input_size: Size) -> Any:
    from unet_torch.io import save_pt

    return save_pt(weights, spec, path)


def _read_canonical(path: Path, spec: UNetSpec | None) -> SourceRead:
    from unet_spec.weights import is_canonical_file, load_weights

    if is_canonical_file(path):
        return SourceRead(*load_weights(path, spec), None, "")
    # A bare state dict saved by other code: names may carry a prefix, which PyTorch's reader
    # strips (the canonical file itself needs no framework).
    from unet_torch.io import load_safetensors

    return SourceRead(*load_safetensors(path, spec), None, "")


def _write_canonical(weights: Weights, spec: UNetSpec, path: Path, input_size: Size) -> Any:
    from unet_spec import save_weights

    return save_weights(weights, spec, path)


def _read_keras(path: Path, spec: UNetSpec | None) -> SourceRead:
    from unet_keras.foreign import load_keras_weights

    weights, spec, model = load_keras_weights(path, spec)
    reference = None if model is None else keras_model_reference(model, spec)
    return SourceRead(weights, spec, reference, "")


def _write_keras(weights: Weights, spec: UNetSpec, path: Path, input_size: Size) -> Any:
    from unet_keras.io import export_keras

    return export_keras(weights, spec, path, input_size or model_size(spec))


def _write_h5(weights: Weights, spec: UNetSpec, path: Path, input_size: Size) -> Any:
    from unet_keras.foreign import save_weights_h5

    return save_weights_h5(weights, spec, path, input_size)


def _write_legacy_h5(weights: Weights, spec: UNetSpec, path: Path, input_size: Size) -> Any:
    from unet_keras.foreign import save_legacy_h5

    return save_legacy_h5(weights, spec, path, input_size)


for _fmt in (
    Format(".ckpt", "Lightning checkpoint", "torch", _read_ckpt, _write_ckpt),
    Format(".pt", "PyTorch state dict", "torch", _read_pt, _write_pt),
    Format(".pth", "PyTorch state dict", "torch", _read_pt, _write_pt),
    # The other names torch.save users give a state dict (pickle's, Hugging Face's).
    Format(".pkl", "PyTorch state dict", "torch", _read_pt, _write_pt),
    Format(".bin", "PyTorch state dict", "torch", _read_pt, _write_pt),
    Format(".safetensors", "canonical safetensors file", "", _read_canonical, _write_canonical),
    Format(".keras", "Keras model", "keras", _read_keras, _write_keras),
    Format(".weights.h5", "Keras weights file", "keras", _read_keras, _write_h5),
    # Legacy HDF5 models (zhixuhao/unet's ModelCheckpoint files); the spec is read from the graph.
    Format(".h5", "legacy Keras HDF5 model", "keras", _read_keras, _write_legacy_h5),
    Format(".hdf5", "legacy Keras HDF5 model", "keras", _read_keras, _write_legacy_h5),
):  # fmt: skip
    register(_fmt)

__all__ = [
    "FORMATS",
    "HUB_FOLDER",
    "Format",
    "format_of",
    "load_any_weights",
    "register",
    "save_any_weights",
    "suffix_of",
    "weight_suffixes",
]
