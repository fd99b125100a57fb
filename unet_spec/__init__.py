"""Framework-free U-Net description: spec, presets, layer plan, shapes, canonical weights, parity.

Importing this package loads no deep-learning framework (only numpy), so tools that only reason about
architectures stay light; ``unet_torch`` and ``unet_keras`` build models from what is defined here.
"""

from unet_spec.allocator import freed_memory_kept, keep_freed_memory
from unet_spec.compare import (
    Comparison,
    NoiseCheck,
    NoiseTolerance,
    check_against_noise,
    compare,
    label_rule,
)
from unet_spec.files import atomic_path, atomic_write_bytes, check_destination
from unet_spec.machine import machine_info, machine_line
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
    "atomic_path",
    "atomic_write_bytes",
    "check_destination",
    "build_plan",
    "canonical_shapes",
    "check_against_noise",
    "check_weights",
    "compare",
    "freed_memory_kept",
    "get_preset",
    "keep_freed_memory",
    "keras_name",
    "label_rule",
    "make_spec",
    "load_weights",
    "machine_info",
    "machine_line",
    "random_weights",
    "read_weights",
    "resolve_spec",
    "save_weights",
]
