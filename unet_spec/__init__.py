"""The U-Net contract: spec, presets, layer plan, sizes, canonical weights, noise-aware comparison.

:class:`UNetSpec` and the named presets describe a network; :func:`build_plan` lays out its blocks
(names, kinds, channels) and the shapes they produce; :mod:`unet_spec.sizes` answers which input
sizes are valid; :mod:`unet_spec.weights` reads and writes the canonical safetensors file both
frameworks load; :func:`check_against_noise` is the comparison every parity check uses. Importing
this package loads numpy only, and ``unet_torch`` and ``unet_keras`` build models from what is
defined here. Everything else framework-free has its own package: inference in ``unet_infer``,
data reading in ``unet_data``, process infrastructure (allocator, machine line, atomic files) in
``unet_runtime``, the one of them this package imports (for atomic weight files).
"""

from unet_spec.compare import (
    Comparison,
    NoiseCheck,
    NoiseTolerance,
    check_against_noise,
    compare,
    label_rule,
)
from unet_spec.plan import Block, LayerInfo, Layout, Plan, build_plan, keras_name
from unet_spec.presets import DEFAULT_SIZES, PRESETS, get_preset, make_spec
from unet_spec.spec import UNetSpec
from unet_spec.weights import (
    canonical_shapes,
    check_weights,
    load_weights,
    random_weights,
    read_weights,
    resolve_spec,
    save_weights,
)

__all__ = [
    "DEFAULT_SIZES",
    "PRESETS",
    "Block",
    "Comparison",
    "LayerInfo",
    "NoiseCheck",
    "NoiseTolerance",
    "Layout",
    "Plan",
    "UNetSpec",
    "build_plan",
    "canonical_shapes",
    "check_against_noise",
    "check_weights",
    "compare",
    "get_preset",
    "keras_name",
    "label_rule",
    "make_spec",
    "load_weights",
    "random_weights",
    "read_weights",
    "resolve_spec",
    "save_weights",
]
