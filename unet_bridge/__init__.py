"""The bridge between the twins: the one package that runs PyTorch and Keras side by side.

It sits above ``unet_torch`` and ``unet_keras`` and below everything that needs both (training's
export, the ``unet`` command, the parity tests, the benchmarks):

- :mod:`unet_bridge.frameworks`: the import order (TensorFlow followed by triton crashes the
  interpreter) and the environment guard (TF32 off on both sides; versions, oneDNN settings,
  devices and threads recorded);
- :mod:`unet_bridge.formats`: the format registry (suffix → reader, writer); the hub folder
  (:mod:`unet_bridge.hub`) and the deployment artefacts register themselves in it;
- :mod:`unet_bridge.predict`: tiled predictors from any weight file, on either runtime;
- :mod:`unet_bridge.reads`: what every reader returns (:class:`~unet_bridge.reads.SourceRead`)
  and the source itself as something runnable (:class:`~unet_bridge.reads.Reference`);
- :mod:`unet_bridge.sources`: models from elsewhere, and :func:`~unet_bridge.sources.read_any`,
  the one reader of everything ``unet port`` reads; :mod:`unet_bridge.graphs`: the ONNX front-end
  of the U-Net graph reader;
- :mod:`unet_bridge.judge`: the one judge of anything runnable against the PyTorch twin;
- :mod:`unet_bridge.port`: writing a file only once it has proved to compute what its source does;
- :mod:`unet_bridge.export`: deployment artefacts (ONNX, SavedModel, LiteRT, ``.pt2``), each run
  in its own runtime and proven against the PyTorch model before it lands;
- :mod:`unet_bridge.card`: model cards beside artefacts and training runs;
- :mod:`unet_bridge.inputs`: the inputs of a check (their sizes: :mod:`unet_spec.sizes`);
- :mod:`unet_bridge.parity`: the models, the per-block taps and the noise-aware parity runner;
- :mod:`unet_bridge.backends`: Keras twins on another Keras backend, in a subprocess.

Framework imports happen inside functions, so ``import unet_bridge`` loads numpy and ``unet_spec``
only.

Example:
    >>> import unet_bridge
    >>> from unet_spec import get_preset, random_weights
    >>> from unet_spec.sizes import small_size
    >>> spec = get_preset("seed-small")
    >>> x = unet_bridge.random_input(spec, small_size(spec))
    >>> report = unet_bridge.run_parity(spec, random_weights(spec), x)  # doctest: +SKIP
"""

from __future__ import annotations

from unet_bridge.card import find_metrics, model_card, trained_views, write_model_card
from unet_bridge.export import (
    EXPORTS,
    PRECISIONS,
    ExportResult,
    LoadError,
    export_model,
    run_artefact,
)
from unet_bridge.formats import (
    FORMATS,
    Format,
    format_of,
    load_any_weights,
    register,
    save_any_weights,
    weight_suffixes,
)
from unet_bridge.frameworks import environment_guard, import_frameworks
from unet_bridge.hub import write_hub_files  # also registers the hub folder format
from unet_bridge.inputs import random_input
from unet_bridge.parity import ParityReport, keras_model, run_parity, torch_model
from unet_bridge.port import PortResult, port, write_verified
from unet_bridge.predict import BACKENDS, ArtefactPredictor, backend_for, load_predictor
from unet_bridge.proving import RejectedError

# Importable from here only until unet_train.callbacks imports small_size from unet_spec.sizes.
from unet_spec.sizes import small_size  # noqa: F401

# What a user of the bridge calls; the parts it is made of (the per-block taps, the proving steps)
# are imported from their modules, and the size policy from unet_spec.sizes.
__all__ = [
    "BACKENDS",
    "EXPORTS",
    "FORMATS",
    "PRECISIONS",
    "ArtefactPredictor",
    "ExportResult",
    "Format",
    "LoadError",
    "ParityReport",
    "PortResult",
    "RejectedError",
    "backend_for",
    "environment_guard",
    "export_model",
    "find_metrics",
    "format_of",
    "import_frameworks",
    "keras_model",
    "load_any_weights",
    "load_predictor",
    "model_card",
    "port",
    "random_input",
    "register",
    "run_artefact",
    "run_parity",
    "save_any_weights",
    "torch_model",
    "trained_views",
    "weight_suffixes",
    "write_hub_files",
    "write_model_card",
    "write_verified",
]
