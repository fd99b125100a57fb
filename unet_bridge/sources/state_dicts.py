"""The one skeleton of the torch state-dict converters (milesial, MONAI's ``BasicUNet``, ...).

As keras-hub's converters are, each converter is a small module that states its layout only, and
this skeleton does the rest: recognising the layout from its key names, reading a file (the spec
inferred from the shapes, every mismatch named, the tensors renamed through
:func:`unet_torch.graph.tensor_mapping`, the spec the user gave reconciled), writing the reverse
and loading a module the user names with a file's tensors. A converter module defines:

- ``NAME`` (``--from``/``--to``), ``TITLE`` (how messages name the layout), ``KEYS`` (the keys
  every file of the layout holds) and ``FREE_FIELDS`` (spec fields a state dict does not record);
- ``infer(shapes) -> (spec, problems)``: the spec the tensor shapes describe;
- ``names(spec) -> {plan block: module path}``: the layout;
- ``check_spec(spec)``: a one-line ``ValueError`` naming what the layout cannot hold;
- ``notes(spec, given, other) -> list[str]``: what the file held, for the read's note;
- optionally ``reference_for(spec, state, where) -> (Reference or None, notes)``: the source's own
  code, where it is installed.

The skeleton looks each of them up on the module when it runs, so a converter (or a test that
plants a defect in one) is read as it is at that moment.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from types import ModuleType
from typing import Any

from unet_bridge.reads import Reference, SourceRead, module_reference
from unet_bridge.sources import STATE_SUFFIXES, Source, SourceFile, register
from unet_bridge.sources import _torch as tio
from unet_spec import UNetSpec


def numbered_depth(shapes: Mapping[str, Any], prefix: str, what: str) -> int:
    """A layout's depth: the highest ``K`` among its keys ``{prefix}K.…`` (its pooling steps).

    Raises:
        ValueError: No such key (``what`` names the modules, for the message).
    """
    heads = (key[len(prefix) :].split(".")[0] for key in shapes if key.startswith(prefix))
    depth = max((int(head) for head in heads if head.isdigit()), default=0)
    if depth < 1:
        raise ValueError(f"no {what} tensors (the contracting path)")
    return depth


def require(shapes: Mapping[str, Any], need: list[str]) -> None:
    """Raise a ``ValueError`` naming every key of ``need`` the file lacks."""
    missing = [key for key in need if key not in shapes]
    if missing:
        raise ValueError(f"missing {', '.join(missing)} (the widths cannot be read)")


def most_biased(shapes: Mapping[str, Any], convs: list[str]) -> bool:
    """Whether most of the convs ``convs`` (their weight keys) have a bias: the era the file is
    from (a conv that differs is named by the layout match)."""
    biased = [key for key in convs if key.replace(".weight", ".bias") in shapes]
    return len(biased) > len(convs) // 2


def width_fields(
    widths: list[int], dec: list[int], mid: list[int], up: list[int]
) -> dict[str, Any]:
    """A spec's channel fields from a layout's channel plan: the encoder and bottleneck widths,
    the decoder levels' outputs, their first convs' outputs and the up steps' outputs (empty: no
    up conv). Each list is left empty where it is the spec's default, so that a source's own class
    reads as its preset."""
    depth = len(dec)
    doubling = all(w == widths[0] * 2**k for k, w in enumerate(widths))
    return {
        "depth": depth,
        "base_filters": widths[0],
        "widths": () if doubling else tuple(widths),
        "decoder_widths": () if dec == widths[:depth] else tuple(dec),
        "decoder_mid_widths": () if mid == dec else tuple(mid),
        "up_widths": () if not up or up == dec else tuple(up),
    }


def state_dict_source(
    layout: ModuleType,
    description: str,
    homepage: str,
    runnable_hint: Any = None,
) -> Source:
    """Register the source whose layout the converter module ``layout`` states."""

    def recognise(file: SourceFile) -> bool:
        return all(key in file.state for key in layout.KEYS)

    def read(file: SourceFile, spec: UNetSpec | None = None) -> SourceRead:
        from unet_torch.graph import canonical_weights, tensor_mapping

        shapes = tio.shapes_of(file.state)
        try:
            inferred, problems = layout.infer(shapes)
        except ValueError as err:
            raise ValueError(f"{file.path}: not a {layout.TITLE} layout: {err}") from None
        mapping, _ = tensor_mapping(layout.names(inferred), inferred)
        problems += tio.match_layout(shapes, mapping, inferred)
        if problems:
            raise ValueError(
                f"{file.path}: does not fit the {layout.TITLE} layout ({len(problems)} "
                "mismatches): " + "; ".join(problems)
            )
        result = tio.reconcile(inferred, spec, layout.FREE_FIELDS, str(file.path))
        weights = canonical_weights(file.state, mapping)
        notes = layout.notes(result, spec, file.other)
        reference = None
        if hasattr(layout, "reference_for"):
            reference, more = layout.reference_for(result, file.state, str(file.path))
            notes += more
        return SourceRead(weights, result, reference, "; ".join(notes))

    def write(weights: Any, spec: UNetSpec, path: Path) -> Path:
        """``torch.save`` a state dict that the source's own class loads with ``strict=True``."""
        from unet_torch.graph import source_state, tensor_mapping

        layout.check_spec(spec)
        mapping, counters = tensor_mapping(layout.names(spec), spec)
        return tio.save_state(source_state(weights, mapping, counters), path)

    def reference_from_module(module: Any, file: SourceFile, description: str) -> Reference:
        """A user-named module (the source's own class, or a fork) with the file's tensors
        loaded strictly."""
        tio.load_strict(module, file.state, f"{file.path} into {description}")
        return module_reference(module, description)

    return register(
        Source(
            name=layout.NAME, description=description, framework="torch",
            suffixes=STATE_SUFFIXES, recognise=recognise, read=read, write=write,
            check_spec=lambda spec: layout.check_spec(spec),
            reference_from_module=reference_from_module, homepage=homepage,
            runnable_hint=runnable_hint, module=layout.__name__,
        )
    )  # fmt: skip


__all__ = ["most_biased", "numbered_depth", "require", "state_dict_source", "width_fields"]
