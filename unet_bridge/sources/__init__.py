"""Models from elsewhere: one small converter per source layout, and the registry that picks one.

A *source* is a layout of weights that another project writes (milesial/Pytorch-UNet's state
dicts, MONAI's ``BasicUNet``, the Keras U-Nets built by their own code). Each converter module in
this package (``milesial.py``, ``monai_basicunet.py``, ...) registers one :class:`Source`:

- ``recognise(file) -> bool``: the layout, told from key names or the file's graph;
- ``read(file, spec or None) -> SourceRead``: canonical weights, the spec *inferred from the tensor
  shapes* (no flags needed; a given spec must agree), a runnable
  :class:`~unet_bridge.reads.Reference` when the source itself can run, and a note saying what the
  file held and what it cannot prove;
- ``write(weights, spec, path)`` (optional): the reverse, a file the source project's own code
  loads; a spec the layout cannot hold is a one-line ``ValueError`` naming the field.

A file is a value, :class:`SourceFile`: loaded once (a ``torch.save`` file's state dict, when a
converter first asks for it), and handed to every converter that is asked whether it recognises
the file and to the one that reads it. The torch state-dict converters share one skeleton
(:mod:`unet_bridge.sources.state_dicts`); each states its layout only.

:func:`read_any` is the one reader: it asks :func:`detect` which source a file is (``--from NAME``
forces one), reads it, and goes to the format registry for this project's own files. ``unet port``
and ``unet parity`` prove the read against its :class:`~unet_bridge.reads.Reference` whenever
there is one (:func:`unet_bridge.port.prove_read`). Converters import their framework inside
functions, so importing this package loads numpy and ``unet_spec`` only.
"""

from __future__ import annotations

import functools
import importlib
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from unet_bridge.formats import format_of, load_any_weights
from unet_bridge.reads import Reference, SourceRead
from unet_runtime import suffix_in
from unet_spec import UNetSpec

Weights = Mapping[str, np.ndarray]


class SourceFile:
    """A file as the converters see it: its path, and the state dict of a ``torch.save`` file,
    loaded when a converter first asks for it and then kept with the value. Detection asks every
    converter about the same value, so a 31 M-parameter file is read once, and its tensors go
    when the value does."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)

    @functools.cached_property
    def _loaded(self) -> tuple[dict[str, Any], list[str]]:
        from unet_bridge.sources._torch import load_state

        return load_state(self.path)

    @property
    def state(self) -> dict[str, Any]:
        """The file's tensors (wrapper prefixes stripped; see :func:`~._torch.state_of`)."""
        return self._loaded[0]

    @property
    def other(self) -> list[str]:
        """The names of the non-tensor entries set aside (milesial's ``mask_values``)."""
        return self._loaded[1]

    def __repr__(self) -> str:
        return f"SourceFile({str(self.path)!r})"


#: ``recognise(file) -> bool``.
Recogniser = Callable[[SourceFile], bool]
#: ``read(file, spec or None) -> SourceRead``.
SourceReader = Callable[[SourceFile, UNetSpec | None], SourceRead]
#: ``write(weights, spec, path)``: the file the source's own code loads.
SourceWriter = Callable[[Weights, UNetSpec, Path], Any]


@dataclass(frozen=True)
class Source:
    """One source layout.

    Attributes:
        name: What ``--from``/``--to`` call it (``milesial``, ``monai``).
        description: One line for ``unet port --sources`` and errors.
        framework: The install extra that reads it (``torch``, ``keras``).
        suffixes: File suffixes it comes in (``.pth``, ``.pt``, ...).
        recognise: Whether a file has this layout.
        read: Canonical weights, inferred spec, reference and note from a file.
        write: The reverse (``None`` when the layout cannot be written back).
        check_spec: Raises a one-line ``ValueError`` naming the field when ``spec`` cannot be
            written in this layout (``None``: every spec can).
        reference_from_module: ``reference_from_module(module, file, description)``: a module the
            user names (``--source-model``), loaded with the file's own tensors, as a
            :class:`~unet_bridge.reads.Reference` (``None``: not supported).
        homepage: Where the source project lives, for the docs and ``--sources``.
        runnable_hint: The ``--source-model ... --source-args ...`` that would run the source's
            own class for ``spec``, shown when a port could not be proven against it.
        for_model: The source bound to a model the user's own code builds (``--source-model``):
            ``for_model(model, call) -> Source``, which reads (and for torch writes) that model's
            weight files through its graph (``None``: not supported).
        module: The converter module that states it (default: the module of ``read``), which
            places it in the order of detection (:data:`BUILTIN`).
    """

    name: str
    description: str
    framework: str
    suffixes: tuple[str, ...]
    recognise: Recogniser
    read: SourceReader
    write: SourceWriter | None = None
    check_spec: Callable[[UNetSpec], None] | None = None
    reference_from_module: Callable[[Any, SourceFile, str], Reference] | None = None
    homepage: str = ""
    runnable_hint: Callable[[UNetSpec], str] | None = None
    for_model: Callable[[Any, str], Source] | None = None
    module: str = ""

    @property
    def directions(self) -> str:
        return "both" if self.write is not None else "from"


SOURCES: dict[str, Source] = {}
#: The source that reads any plain U-Net from its graph (:mod:`unet_bridge.sources.graph`).
GRAPH = "graph"
#: Suffixes ``torch.save`` users give a state dict.
STATE_SUFFIXES = (".pth", ".pt", ".pkl", ".bin")

# Converter modules; each calls :func:`register` on import. Listed here (not discovered) so the
# order of detection is fixed: the first source that recognises a file wins. A converter imports
# its framework inside its functions, so importing it needs none.
BUILTIN: list[str] = [
    # Files that carry their graph (TorchScript, .pt2, .onnx); it recognises no state dict, so the
    # named layouts still win every state dict they know.
    "unet_bridge.sources.graph",
    "unet_bridge.sources.milesial",
    "unet_bridge.sources.monai_basicunet",
    "unet_bridge.sources.keras_models",
]
_loaded = False


def register(source: Source) -> Source:
    """Add ``source`` (a later one with the same name replaces the earlier)."""
    SOURCES[source.name] = source
    return source


def _load() -> None:
    global _loaded
    if not _loaded:
        _loaded = True
        for name in BUILTIN:
            importlib.import_module(name)


def all_sources() -> dict[str, Source]:
    """Every registered source, in detection order: :data:`BUILTIN`'s order (whichever converter
    module was imported first), then the others in the order they registered."""
    _load()

    def rank(source: Source) -> int:
        module = source.module or getattr(source.read, "__module__", "")
        return BUILTIN.index(module) if module in BUILTIN else len(BUILTIN)

    return dict(sorted(SOURCES.items(), key=lambda item: rank(item[1])))


def get_source(name: str) -> Source:
    """The source called ``name``.

    Raises:
        ValueError: An unknown name; the message lists the known ones.
    """
    sources = all_sources()
    if name not in sources:
        raise ValueError(f"unknown source {name!r}; known sources: {', '.join(sources)}")
    return sources[name]


def matches_suffix(source: Source, path: str | os.PathLike[str]) -> bool:
    return suffix_in(path, source.suffixes) is not None


def detect(file: SourceFile) -> Source | None:
    """The first source of the file's suffix that recognises ``file``."""
    for source in all_sources().values():
        if matches_suffix(source, file.path) and source.recognise(file):
            return source
    return None


def read_any(
    path: str | os.PathLike[str],
    *,
    spec: UNetSpec | None = None,
    from_source: str | None = None,
    source_model: str | None = None,
    source_args: str | None = None,
) -> tuple[Source | None, SourceRead]:
    """Canonical weights, spec and (where one can run) the source itself, from anything
    ``unet port`` reads.

    The one reader of every source: this project's own formats (the format registry, by suffix),
    layouts from elsewhere (recognised from their key names, or ``from_source`` forces one), files
    that carry their graph (TorchScript, ``.pt2``, ``.onnx``: :mod:`unet_bridge.sources.graph`),
    and any plain U-Net given the code that builds it (``source_model``): a torch class with its
    state dict, or a Keras builder with its weights file, read from the model's graph.

    Args:
        path: The file or folder.
        spec: The spec where the file carries none; where it does, both must agree.
        from_source: A source name (``milesial``, ``monai``, ``graph``, ...): read ``path`` in
            that layout.
        source_model: ``MODULE:FACTORY`` (an importable module, or a file ``path/to/unet.py``):
            the source's own class or builder. For a layout a named converter reads, it is the
            reference the port is proven against; for any other file, it is read through its
            graph.
        source_args: Keyword arguments of ``source_model``, a JSON object.

    Returns:
        ``(source, read)``: ``source`` is the layout from elsewhere (``None`` for this project's
        own formats). ``read`` holds the canonical weights, the spec, the runnable reference and
        a one-line note. For this project's own formats the note is empty and the reference
        ``None``, except for a Keras model file (``.keras``, legacy ``.h5``; built here or
        elsewhere): the model loaded from it is the reference (:attr:`Reference.keras_model`).

    Raises:
        FileNotFoundError: No such file or folder.
        ValueError: An unknown format, a file that fits no layout or contradicts ``spec``, a
            model that does not trace, or a ``source_model`` that cannot run the file; one line
            naming what is wrong (a graph the spec cannot express names every mismatch).
    """
    path = Path(path)
    if source_args and not source_model:
        raise ValueError("--source-args needs --source-model")
    file = SourceFile(path)
    if from_source:
        source = get_source(from_source)
    elif own_state_dict(path):  # this project's own .pt: the registry reads it, once
        source = None
    elif any(matches_suffix(s, path) for s in all_sources().values()):
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no such file")
        source = detect(file)
    else:
        source = None
    if source_model and (source is None or source.reference_from_module is None):
        if source is not None and source.name != GRAPH:
            raise ValueError(f"--source-model: the {source.name} layout cannot run a named module")
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no such file")
        if own_state_dict(path):  # its own spec wins
            raise ValueError(
                f"{path}: this project's own weights (the file carries its spec); --source-model "
                "reads a state dict from elsewhere. To write the class's own keys, port this file "
                "to a state dict DST with --source-model"
            )
        bound = module_source(source_model, source_args)
        return bound, bound.read(file, spec)
    if source is None:
        del file  # what detection loaded goes before the registry loads the file its own way
        try:
            return None, load_any_weights(path, spec)
        except ValueError as err:
            if format_of(path).suffix not in STATE_SUFFIXES:
                raise
            # Neither this project's file nor a layout from elsewhere: say both, and what reads
            # any other U-Net.
            raise ValueError(
                f"{err}; nor is it a layout from elsewhere ({', '.join(all_sources())}: "
                "`unet port --sources`); any other U-Net's state dict is read with its class: "
                "--source-model MODULE:CLASS --source-args JSON"
            ) from None
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    read = source.read(file, spec)
    if source_model:
        from unet_bridge.sources._torch import user_module

        module, call = user_module(source_model, source_args)
        read = read._replace(reference=source.reference_from_module(module, file, call))
    return source, read


def own_state_dict(path: str | os.PathLike[str]) -> bool:
    """A ``torch.save`` file of this project (it carries its spec), told without loading its
    tensors; only state-dict suffixes are looked into (no torch import for other files)."""
    if suffix_in(path, STATE_SUFFIXES) is None or not Path(path).is_file():
        return False
    from unet_bridge.sources._torch import carries_spec

    return carries_spec(path)


def module_source(source_model: str, source_args: str | None = None) -> Source:
    """A source bound to the model ``source_model`` builds (``MODULE:FACTORY``, with
    ``source_args`` as its keyword arguments): its ``read`` takes that model's state dict (torch)
    or weights file (Keras), its ``write`` (torch) gives a state dict under the model's own keys,
    which its ``load_state_dict(strict=True)`` takes.

    Raises:
        ValueError: The factory cannot be built or traced, or is not a U-Net the spec can express
            (every mismatch named).
    """
    from unet_bridge.sources._torch import user_model

    model, call = user_model(source_model, source_args)
    return get_source(GRAPH).for_model(model, call)


def listing() -> str:
    """The table ``unet port --sources`` prints."""
    rows = [("source", "formats", "directions", "extra", "description")]
    for s in all_sources().values():
        rows.append((s.name, " ".join(s.suffixes), s.directions, s.framework or "-", s.description))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    lines = [
        "  ".join(c.ljust(w) for c, w in zip(r[:4], widths, strict=True)) + "  " + r[4]
        for r in rows
    ]
    return "\n".join(lines)


__all__ = [
    "BUILTIN",
    "SOURCES",
    "STATE_SUFFIXES",
    "Source",
    "SourceFile",
    "all_sources",
    "detect",
    "get_source",
    "listing",
    "matches_suffix",
    "module_source",
    "own_state_dict",
    "read_any",
    "register",
]
