"""Models from elsewhere: one small converter per source layout, and the registry that picks one.

A *source* is a layout of weights that another project writes (milesial/Pytorch-UNet's state
dicts, MONAI's ``BasicUNet``, the Keras U-Nets built by their own code). Each converter module in
this package (``milesial.py``, ``monai_basicunet.py``, ...) registers one :class:`Source`:

- ``recognise(path or loaded object) -> bool``: the layout, told from key names or the layer graph;
- ``read(path, spec or None) -> SourceRead``: canonical weights, the spec *inferred from the tensor
  shapes* (no flags needed; a given spec must agree), a runnable :class:`Reference` when the source
  itself can run, and a note saying what the file held and what it cannot prove;
- ``write(weights, spec, path)`` (optional): the reverse, a file the source project's own code
  loads; a spec the layout cannot hold is a one-line ``ValueError`` naming the field.

``unet port`` asks :func:`detect` which source a file is (``--from NAME`` forces one), reads it,
and proves the port against the :class:`Reference` whenever there is one (see
:mod:`unet_bridge.port`). Converters import their framework inside functions, so importing this
package loads numpy and ``unet_spec`` only.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, NamedTuple

import numpy as np

from unet_runtime import suffix_in
from unet_spec import UNetSpec

Weights = Mapping[str, np.ndarray]
#: What a reference outputs: logits, or the logits through an activation.
Output = Literal["logits", "sigmoid", "softmax"]


@dataclass(frozen=True)
class Reference:
    """Something runnable that computes what the source computes.

    Attributes:
        run: NCHW float32 numpy in, numpy out (same layout as the twins' outputs).
        output: Whether ``run`` gives ``"logits"`` or probabilities (``"sigmoid"``/``"softmax"``).
        description: What runs, for the proof line (``"MONAI BasicUNet"``, ``"unet.unet_model:UNet"``).
        run64: The same source run in float64, when it can be (a torch module in ``double()``);
            its noise then counts in the comparison, like a second framework's.
        keras_model: The Keras model ``run`` calls, when the source is a Keras model loaded from
            its file: it is run at its own fixed input size (if it has one), and that size is
            the size of a written ``.keras`` model.
        sizes: The input sizes the proof runs the source at (its own size when it has a fixed
            one); empty: the proof's default (:func:`reference_sizes`).
    """

    run: Callable[[np.ndarray], np.ndarray]
    output: Output
    description: str
    run64: Callable[[np.ndarray], np.ndarray] | None = None
    keras_model: Any = None
    sizes: tuple[int, ...] = ()


class SourceRead(NamedTuple):
    """What a source's ``read`` returns (unpacks as ``weights, spec, reference, note``).

    Attributes:
        weights: Canonical weights (plan names, torch layouts, float32).
        spec: The spec inferred from the file's tensor shapes (and the layout's fixed choices).
        reference: The source itself, runnable, or ``None`` when only weights exist.
        note: What the file held and what a port of it can and cannot prove, one line.
    """

    weights: dict[str, np.ndarray]
    spec: UNetSpec
    reference: Reference | None
    note: str


#: ``recognise(path or loaded object) -> bool``.
Recogniser = Callable[[Any], bool]
#: ``read(path, spec or None) -> SourceRead``.
SourceReader = Callable[[Path, UNetSpec | None], SourceRead]
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
        recognise: Whether a path (or an already loaded object) has this layout.
        read: Canonical weights, inferred spec, reference and note from a file.
        write: The reverse (``None`` when the layout cannot be written back).
        check_spec: Raises a one-line ``ValueError`` naming the field when ``spec`` cannot be
            written in this layout (``None``: every spec can).
        reference_from_module: Wraps a module the user names (``--source-model``), loaded with
            the file's own tensors, as a :class:`Reference` (``None``: not supported).
        homepage: Where the source project lives, for the docs and ``--sources``.
        runnable_hint: The ``--source-model ... --source-args ...`` that would run the source's
            own class for ``spec``, shown when a port could not be proven against it.
        for_model: The source bound to a model the user's own code builds (``--source-model``):
            ``for_model(model, call) -> Source``, which reads (and for torch writes) that model's
            weight files through its graph (``None``: not supported).
    """

    name: str
    description: str
    framework: str
    suffixes: tuple[str, ...]
    recognise: Recogniser
    read: SourceReader
    write: SourceWriter | None = None
    check_spec: Callable[[UNetSpec], None] | None = None
    reference_from_module: Callable[[Any, Path, str], Reference] | None = None
    homepage: str = ""
    runnable_hint: Callable[[UNetSpec], str] | None = None
    for_model: Callable[[Any, str], Source] | None = None

    @property
    def directions(self) -> str:
        return "both" if self.write is not None else "from"


SOURCES: dict[str, Source] = {}
#: The source that reads any plain U-Net from its graph (:mod:`unet_bridge.sources.graph`).
GRAPH = "graph"

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
        module = getattr(source.read, "__module__", "")
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


def detect(path_or_object: Any) -> Source | None:
    """The first source that recognises ``path_or_object`` (a path: only sources of its suffix)."""
    for source in all_sources().values():
        if isinstance(path_or_object, (str, os.PathLike)) and not matches_suffix(
            source, path_or_object
        ):
            continue
        if source.recognise(path_or_object):
            return source
    # Nothing will read the file now: drop what recognising it loaded.
    loaded = sys.modules.get("unet_bridge.sources._torch")
    if loaded is not None:
        loaded.forget()
    return None


def reference_sizes(spec: UNetSpec, size: int) -> list[int]:
    """The check size, and for a spec that takes any size (a pad merge) a small odd one too: sizes
    whose poolings drop a row are where padding conventions (zeros split around the map, or the
    far edge replicated) show. Four pooling cells and one less than a fifth drop a row at every
    level, and a small map keeps the second run cheap."""
    sizes = [size]
    if spec.skip_merge == "pad":
        cell = 2**spec.depth
        odd = 5 * cell - 1
        try:
            spec.plan().layout(odd)
            if odd != size:
                sizes.append(odd)
        except ValueError:
            pass
    return sizes


#: Pooling cells per side of a port's proof input: the bottleneck still sees an 8x8 map, every
#: tensor of the model takes part, and a float64 run of a 31 M-parameter model stays affordable
#: (its memory and time grow with the area; see docs/results.md).
PROOF_CELLS = 8


def proof_size(spec: UNetSpec) -> int:
    """The input size a port is proven at: the smallest valid size of :data:`PROOF_CELLS`
    pooling cells per side or more."""
    return spec.plan().nearest_valid_size(PROOF_CELLS * 2**spec.depth, direction="up")


def two_sizes(spec: UNetSpec, size: int | None = None) -> tuple[int, ...]:
    """Two input sizes where the spec takes two: ``size`` (default: :func:`proof_size`) and a
    small odd one where the spec takes any size (:func:`reference_sizes`), else the smallest valid
    size of at least four pooling cells (or, that being ``size``, the next one)."""
    size = size or proof_size(spec)
    sizes = reference_sizes(spec, size)
    if len(sizes) == 1:
        plan = spec.plan()
        try:
            other = plan.nearest_valid_size(4 * 2**spec.depth, direction="up")
            if other == size:
                other = plan.nearest_valid_size(size + 1, direction="up")
            sizes.append(other)
        except ValueError:  # no other size: one is what the spec takes
            pass
    return tuple(sizes)


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
    from unet_bridge.formats import format_of, load_any_weights

    path = Path(path)
    if source_args and not source_model:
        raise ValueError("--source-args needs --source-model")
    if from_source:
        source = get_source(from_source)
    elif any(matches_suffix(s, path) for s in all_sources().values()):
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no such file")
        source = detect(path)
    else:
        source = None
    if source_model and (source is None or source.reference_from_module is None):
        if source is not None and source.name != GRAPH:
            raise ValueError(f"--source-model: the {source.name} layout cannot run a named module")
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no such file")
        from unet_bridge.sources._torch import carries_spec

        if carries_spec(path):  # this project's own .pt: its own spec wins
            raise ValueError(
                f"{path}: this project's own weights (the file carries its spec); --source-model "
                "reads a state dict from elsewhere. To write the class's own keys, port this file "
                "to a state dict DST with --source-model"
            )
        bound = module_source(source_model, source_args)
        return bound, bound.read(path, spec)
    if source is None:
        try:
            weights, spec, model = load_any_weights(path, spec)
        except ValueError as err:
            if format_of(path).suffix not in (".pt", ".pth", ".pkl", ".bin"):
                raise
            # Neither this project's file nor a layout from elsewhere: say both, and what reads
            # any other U-Net.
            raise ValueError(
                f"{err}; nor is it a layout from elsewhere ({', '.join(all_sources())}: "
                "`unet port --sources`); any other U-Net's state dict is read with its class: "
                "--source-model MODULE:CLASS --source-args JSON"
            ) from None
        reference = None if model is None else keras_model_reference(model)
        return None, SourceRead(weights, spec, reference, "")
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    read = source.read(path, spec)
    if source_model:
        from unet_bridge.sources._torch import user_module

        module, call = user_module(source_model, source_args)
        read = read._replace(reference=source.reference_from_module(module, path, call))
    return source, read


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


def keras_model_reference(model: Any) -> Reference:
    """A Keras model loaded from a file as the reference: what its last layer outputs (logits or
    an activation) is compared."""
    from unet_keras import to_nchw, to_nhwc

    activation = model.layers[-1].get_config().get("activation", "linear")
    output = activation if activation in ("sigmoid", "softmax") else "logits"

    def run(x: np.ndarray) -> np.ndarray:
        return to_nchw(np.asarray(model(to_nhwc(x), training=False), dtype=np.float32))

    return Reference(run, output, "source model", keras_model=model)


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
    "PROOF_CELLS",
    "SOURCES",
    "Output",
    "Reference",
    "Source",
    "SourceRead",
    "all_sources",
    "detect",
    "get_source",
    "keras_model_reference",
    "listing",
    "matches_suffix",
    "module_source",
    "proof_size",
    "read_any",
    "reference_sizes",
    "register",
    "two_sizes",
]
