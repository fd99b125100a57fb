"""The size policy: which input size a tool uses when the user names none.

One place for every default: ``unet parity`` and ``unet summary`` use a preset's natural size, quick
checks (a port's verification, the training run's export when there is no crop size) a small one,
and a saved Keras model is fixed to a size only when its spec needs one. The tiling engine's tile
(:func:`unet_infer.default_tile`) is a different question, the size of an inference window,
and lives with the engine.
"""

from __future__ import annotations

from unet_spec.plan import build_plan
from unet_spec.presets import DEFAULT_SIZES, PRESETS
from unet_spec.spec import UNetSpec


def preset_name(spec: UNetSpec) -> str | None:
    """The registered name of ``spec``, if it is a preset."""
    return next((name for name, s in PRESETS.items() if s == spec), None)


def default_size(spec: UNetSpec) -> int:
    """The preset's natural input size, or the valid size nearest 256."""
    name = preset_name(spec)
    if name in DEFAULT_SIZES:
        return DEFAULT_SIZES[name]
    return build_plan(spec).nearest_valid_size(256)


def small_size(spec: UNetSpec) -> int:
    """A small valid input size for quick checks: the smallest valid size of at least 12 pooling
    cells per side, so every level still sees a few pixels of context."""
    return build_plan(spec).nearest_valid_size(12 * 2**spec.depth, direction="up")


def any_size(spec: UNetSpec) -> bool:
    """Whether one model of ``spec`` takes every input size the plan allows: true when no skip
    merge depends on the size (``"none"``) or the merge reads it at run time (``"pad"``), which the
    spec allows with same padding only."""
    return spec.skip_merge in ("none", "pad")


def model_size(spec: UNetSpec) -> int | None:
    """The input size a saved Keras model is built for: ``None`` (any) when the spec allows any
    size (no skip merge depends on it), else :func:`default_size`."""
    return None if any_size(spec) else default_size(spec)


def build_size(spec: UNetSpec) -> int | None:
    """A size to build a model at when only its weights matter: ``None`` (any) when the spec allows
    it, else :func:`small_size`."""
    return None if any_size(spec) else small_size(spec)


def check_size(spec: UNetSpec, size: int) -> int:
    """``size`` if the spec takes it (raises ``ValueError`` naming the nearest valid sizes)."""
    build_plan(spec).check_size(size)
    return size


__all__ = [
    "any_size",
    "build_size",
    "check_size",
    "default_size",
    "model_size",
    "preset_name",
    "small_size",
]
