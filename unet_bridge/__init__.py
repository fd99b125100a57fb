"""The bridge between the twins: the one package that runs PyTorch and Keras side by side.

It sits above ``unet_torch`` and ``unet_keras`` and below everything that needs both (training's
export, the ``unet`` command, the parity tests, the benchmarks):

- :mod:`unet_bridge.frameworks`: the import order (TensorFlow followed by triton crashes the
  interpreter) and the environment guard (TF32 off on both sides; versions, oneDNN settings,
  devices and threads recorded);
- :mod:`unet_bridge.formats`: the format registry (suffix → reader, writer);
- :mod:`unet_bridge.predict`: tiled predictors from any weight file, on either runtime;
- :mod:`unet_bridge.port`: writing a file only once it has proved to compute what its source does;
- :mod:`unet_bridge.export`: deployment artefacts (ONNX, SavedModel, LiteRT, ``.pt2``), each run
  in its own runtime and proven against the PyTorch model before it lands;
- :mod:`unet_bridge.card`: model cards beside artefacts and training runs;
- :mod:`unet_bridge.inputs`: the size policy and the inputs of a check;
- :mod:`unet_bridge.parity`: the models, the per-block taps and the noise-aware parity runner;
- :mod:`unet_bridge.backends`: Keras twins on another Keras backend, in a subprocess.

Framework imports happen inside functions, so ``import unet_bridge`` loads numpy and ``unet_spec``
only.

Example:
    >>> import unet_bridge
    >>> from unet_spec import get_preset, random_weights
    >>> spec = get_preset("seed-small")
    >>> x = unet_bridge.random_input(spec, unet_bridge.small_size(spec))
    >>> report = unet_bridge.run_parity(spec, random_weights(spec), x)  # doctest: +SKIP
"""

from __future__ import annotations

from typing import Any

from unet_bridge.card import find_metrics, model_card, trained_views, write_model_card
from unet_bridge.export import (
    EXPORTS,
    PRECISIONS,
    ExportResult,
    LoadError,
    export_model,
    precision_tolerance,
    run_artefact,
)
from unet_bridge.formats import (
    FORMATS,
    SUFFIXES,
    Format,
    format_of,
    load_any_weights,
    register,
    save_any_weights,
    suffix_of,
    weight_suffixes,
)
from unet_bridge.frameworks import environment_guard, import_frameworks
from unet_bridge.inputs import (
    check_size,
    default_size,
    image_input,
    model_size,
    preset_name,
    random_input,
    small_size,
)
from unet_bridge.parity import (
    LayerRow,
    ParityReport,
    check_finite,
    check_outputs,
    compare_taps,
    head,
    keras_model,
    keras_taps,
    reference_taps,
    run_parity,
    tapped_blocks,
    torch_device,
    torch_model,
    torch_taps,
)
from unet_bridge.port import (
    PortResult,
    compare_with_model,
    fixed_size,
    port,
    verify_file,
    write_verified,
)
from unet_bridge.predict import BACKENDS, ArtefactPredictor, backend_for, load_predictor
from unet_bridge.proving import RejectedError, land

__all__ = [
    "BACKENDS",
    "EXPORTS",
    "PRECISIONS",
    "ExportResult",
    "LoadError",
    "ArtefactPredictor",
    "backend_for",
    "export_model",
    "find_metrics",
    "trained_views",
    "model_card",
    "precision_tolerance",
    "run_artefact",
    "write_model_card",
    "load_predictor",
    "FORMATS",
    "SUFFIXES",
    "Format",
    "PortResult",
    "RejectedError",
    "land",
    "compare_with_model",
    "fixed_size",
    "format_of",
    "port",
    "register",
    "verify_file",
    "weight_suffixes",
    "write_verified",
    "LayerRow",
    "ParityReport",
    "check_finite",
    "check_outputs",
    "check_size",
    "compare_taps",
    "default_size",
    "environment_guard",
    "head",
    "image_input",
    "import_frameworks",
    "keras_backend_taps",
    "keras_model",
    "keras_taps",
    "load_any_weights",
    "model_size",
    "preset_name",
    "random_input",
    "reference_taps",
    "run_parity",
    "save_any_weights",
    "small_size",
    "suffix_of",
    "tapped_blocks",
    "torch_device",
    "torch_model",
    "torch_taps",
]


def __getattr__(name: str) -> Any:
    # unet_bridge.backends is also run as a script (python -m); importing it here, before runpy
    # executes it as __main__, would load it twice and make runpy warn.
    if name == "keras_backend_taps":
        from unet_bridge.backends import keras_backend_taps

        return keras_backend_taps
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
