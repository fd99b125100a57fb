"""Deployment exports: ONNX, TF SavedModel, LiteRT (``.tflite``) and ``torch.export`` (``.pt2``).

Each format is a write-only entry of the format registry (:mod:`unet_bridge.formats`) with a writer
and a *runner*: ``run(artefact, x)`` runs the artefact in its own runtime (onnxruntime, TensorFlow,
the LiteRT interpreter, ``torch.export.load``) on an NCHW float32 batch and returns NCHW logits,
converting layouts where the runtime is NHWC. :func:`export_model` writes through
:func:`unet_runtime.atomic_path` and proves the artefact like ``unet port`` proves a port: the
artefact runs in its runtime on random input (and an image when given), and its logits and final
outputs are judged against the canonical PyTorch model in fp32 and its float64 run by the
noise-aware comparison (:func:`unet_spec.check_against_noise`). Only an artefact that passes lands
at the destination, with a model card beside it (:mod:`unet_bridge.card`).

Sizes: the batch dimension is always dynamic. Height and width are dynamic where the spec takes any
multiple of ``2**depth`` (same padding, ``skip_merge="none"``); the rule is written into the
artefact (ONNX ``metadata_props``, the ``.pt2`` extra files, the SavedModel's ``assets.extra``).
Specs that resize or crop their skips are exported for one size.

Reduced precision (``precision``): ONNX ``fp16`` (onnxruntime's float16 conversion, float32 inputs
and outputs) and ``dynamic-int8`` (onnxruntime's dynamic quantisation of the convolutions); LiteRT
``fp16`` (float16 weights) and ``dynamic-int8`` (dynamic-range quantisation). They are judged by a
looser tolerance derived from the format's unit roundoff (:func:`precision_tolerance`), reported
with their argmax agreement, never silently passed.

Framework imports happen inside functions, so importing this module loads numpy only.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from unet_bridge import inputs
from unet_bridge.formats import FORMATS, Format, Size, Weights, format_of, register
from unet_runtime import atomic_path, check_destination
from unet_spec import NoiseCheck, NoiseTolerance, UNetSpec, build_plan, compare
from unet_spec.compare import FP32_EPS
from unet_spec.sizes import any_size

#: Precisions an export can be written in; each format takes the ones in :data:`FORMAT_PRECISIONS`.
PRECISIONS = ("fp32", "fp16", "dynamic-int8")

#: Unit roundoff of each precision (half the spacing of numbers near 1, relative): fp32 2⁻²⁴,
#: fp16 2⁻¹¹, and for symmetric int8 with 127 levels per tensor (or channel) half a step of the
#: largest magnitude, 1/254.
UNIT_ROUNDOFF = {"fp32": FP32_EPS / 2, "fp16": 2.0**-11, "dynamic-int8": 1 / 254}

#: The metadata key that holds the spec JSON (ONNX metadata_props, .pt2 extra files, SavedModel
#: assets.extra), and the one that holds the valid-size rule.
SPEC_KEY = "unet_spec"
SIZES_KEY = "unet_valid_sizes"

Runner = Callable[[Path, np.ndarray], np.ndarray]


# -- sizes ----------------------------------------------------------------------------------------
def size_rule(spec: UNetSpec, size: int | None) -> str:
    """The valid-size rule of an artefact, in words (written into its metadata and card)."""
    if size is None:
        cell = 2**spec.depth
        return f"any batch; H and W any positive multiples of {cell} (2**depth)"
    why = {"resize": "resizes its skips", "crop": "crops its skips"}.get(
        spec.skip_merge, "was exported"
    )
    return f"any batch; H = W = {size} only (the spec {why} for one size)"


def export_size(spec: UNetSpec, size: int | None, dynamic: bool | None) -> tuple[int, int | None]:
    """``(trace size, fixed size or None)`` for an export.

    ``dynamic=None`` means dynamic where the spec allows it and no ``size`` was asked for;
    ``dynamic=True`` on a spec with a fixed size is an error.

    Raises:
        ValueError: A size the spec does not take, or ``dynamic`` on a fixed-size spec.
    """
    if size is not None:
        inputs.check_size(spec, size)
    if dynamic and not any_size(spec):
        raise ValueError(
            f"this spec ({spec.padding} padding, skip_merge={spec.skip_merge!r}) takes one input "
            "size per model, so H and W cannot be dynamic; drop --dynamic and give --size"
        )
    if dynamic is None:
        dynamic = any_size(spec) and size is None
    trace = size if size is not None else inputs.small_size(spec)
    if not dynamic and size is None:
        trace = inputs.default_size(spec)
    return trace, (None if dynamic else trace)


def precision_tolerance(precision: str, base: NoiseTolerance | None = None) -> NoiseTolerance:
    """The tolerance for an export in ``precision``.

    fp32: the parity tolerance (16 × the measured fp32 noise, floor 8 fp32 ε). Lower precisions:
    the measured fp32 noise scaled to the format by the ratio of unit roundoffs
    (:data:`UNIT_ROUNDOFF`; fp16: 2⁻¹¹/2⁻²⁴ = 8192; int8: 2²⁴/254 ≈ 66,000), times the same margin
    of 16. Rounding error grows with the unit roundoff, so a correct export stays within it, while
    a real defect (a wrong layout, a dropped op) moves the output by about its own size (rel ≈ 1)
    and still fails. The floor stays the fp32 one (8 ε × 16): scaling it too would let an int8
    artefact be off by its whole output scale.
    """
    base = base or NoiseTolerance()
    if precision not in UNIT_ROUNDOFF:
        raise ValueError(
            f"precision must be one of {', '.join(PRECISIONS)}. Received: {precision!r}"
        )
    ratio = UNIT_ROUNDOFF[precision] / UNIT_ROUNDOFF["fp32"]
    return NoiseTolerance(margin=base.margin * ratio, floor=base.floor / ratio)


# -- writers --------------------------------------------------------------------------------------
def _metadata(spec: UNetSpec, fixed: int | None, precision: str) -> dict[str, str]:
    return {
        SPEC_KEY: spec.to_json(),
        SIZES_KEY: size_rule(spec, fixed),
        "unet_layout": "NCHW float32 in, NCHW float32 logits out",
        "unet_precision": precision,
    }


def _torch_module(spec: UNetSpec, weights: Weights):
    """The model the torch writers export (a hook for planted-defect tests)."""
    from unet_bridge.parity import torch_model

    return torch_model(spec, weights)


def _torch_dynamic_shapes(spec: UNetSpec, fixed: int | None) -> dict[str, dict[int, Any]]:
    from torch.export import Dim

    shapes: dict[int, Any] = {0: Dim("batch", min=1, max=4096)}
    if fixed is None:
        cell = 2**spec.depth
        shapes[2] = cell * Dim("h", min=1, max=8192 // cell)
        shapes[3] = cell * Dim("w", min=1, max=8192 // cell)
    return {"x": shapes}


def _example(spec: UNetSpec, trace: int):
    import torch

    return torch.from_numpy(inputs.random_input(spec, trace, 2, seed=1))


def write_onnx(
    weights: Weights,
    spec: UNetSpec,
    path: Path,
    input_size: Size = None,
    *,
    dynamic: bool | None = None,
    opset: int | None = None,
    precision: str = "fp32",
) -> Path:
    """Export the PyTorch twin with ``torch.onnx.export(..., dynamo=True)`` to ``path``."""
    import contextlib
    import io

    import onnx
    import torch

    trace, fixed = export_size(spec, _as_int(input_size), dynamic)
    if opset is not None:
        newest = onnx.defs.onnx_opset_version()
        if not 18 <= opset <= newest:
            raise ValueError(f"--opset must be between 18 and {newest}. Received: {opset}")
    model = _torch_module(spec, weights)
    # The exporter reports its steps on stdout; the caller prints its own report.
    with contextlib.redirect_stdout(io.StringIO()):
        program = torch.onnx.export(
            model, (_example(spec, trace),), dynamo=True, input_names=["x"],
            output_names=["logits"], dynamic_shapes=_torch_dynamic_shapes(spec, fixed),
            opset_version=opset, verbose=False,
        )  # fmt: skip
    proto = program.model_proto
    if precision == "fp16":
        from onnxruntime.transformers.float16 import convert_float_to_float16

        proto = convert_float_to_float16(proto, keep_io_types=True)
    del proto.metadata_props[:]
    for key, value in _metadata(spec, fixed, precision).items():
        proto.metadata_props.add(key=key, value=value)
    if precision == "dynamic-int8":
        import tempfile

        from onnxruntime.quantization import QuantType, quantize_dynamic

        with tempfile.TemporaryDirectory() as tmp:
            plain = Path(tmp) / "fp32.onnx"
            onnx.save(proto, plain)
            quantize_dynamic(plain, path, op_types_to_quantize=["Conv"],
                             weight_type=QuantType.QUInt8)  # fmt: skip
    else:
        onnx.save(proto, path)
    return path


def _keras_model(spec: UNetSpec, weights: Weights, fixed: int | None):
    from unet_bridge.parity import keras_model

    return keras_model(spec, weights, fixed)


def write_savedmodel(
    weights: Weights,
    spec: UNetSpec,
    path: Path,
    input_size: Size = None,
    *,
    dynamic: bool | None = None,
    opset: int | None = None,
    precision: str = "fp32",
) -> Path:
    """Export the Keras twin with ``model.export(path, format="tf_saved_model")`` (a folder);
    the spec and the size rule go to ``assets.extra/`` (the SavedModel place for extra files)."""
    _, fixed = export_size(spec, _as_int(input_size), dynamic)
    model = _keras_model(spec, weights, fixed)
    model.export(str(path), format="tf_saved_model", verbose=False)
    extra = Path(path) / "assets.extra"
    extra.mkdir(exist_ok=True)
    (extra / "unet_spec.json").write_text(
        json.dumps({k: v for k, v in _metadata(spec, fixed, precision).items()}, indent=1)
    )
    return path


def write_tflite(
    weights: Weights,
    spec: UNetSpec,
    path: Path,
    input_size: Size = None,
    *,
    dynamic: bool | None = None,
    opset: int | None = None,
    precision: str = "fp32",
) -> Path:
    """Export the Keras twin with ``model.export(path, format="litert")``; fp16 stores float16
    weights, dynamic-int8 is LiteRT's dynamic-range quantisation. The spec goes into the
    flatbuffer's metadata table (key ``unet_spec``)."""
    _, fixed = export_size(spec, _as_int(input_size), dynamic)
    model = _keras_model(spec, weights, fixed)  # loads the frameworks in their safe order
    import tensorflow as tf

    options: dict[str, Any] = {}
    if precision in ("fp16", "dynamic-int8"):
        options["optimizations"] = [tf.lite.Optimize.DEFAULT]
    if precision == "fp16":
        options["target_spec"] = {"supported_types": [tf.float16]}
    model.export(str(path), format="litert", verbose=False, **options)
    _add_tflite_metadata(Path(path), _metadata(spec, fixed, precision))
    return path


def _add_tflite_metadata(path: Path, metadata: Mapping[str, str]) -> None:
    """Add string entries to a ``.tflite`` file's metadata table (name → buffer)."""
    try:
        from tensorflow.lite.tools import flatbuffer_utils
    except ImportError:  # an install without the tools: the card beside the file carries the spec
        return
    model = flatbuffer_utils.read_model(str(path))
    from tensorflow.lite.python import schema_py_generated as schema

    model.metadata = list(model.metadata or [])
    for key, value in metadata.items():
        buffer = schema.BufferT()
        buffer.data = np.frombuffer(value.encode(), dtype=np.uint8)
        model.buffers.append(buffer)
        entry = schema.MetadataT()
        entry.name = key
        entry.buffer = len(model.buffers) - 1
        model.metadata.append(entry)
    flatbuffer_utils.write_model(model, str(path))


def write_pt2(
    weights: Weights,
    spec: UNetSpec,
    path: Path,
    input_size: Size = None,
    *,
    dynamic: bool | None = None,
    opset: int | None = None,
    precision: str = "fp32",
) -> Path:
    """``torch.export.export`` of the PyTorch twin, saved with ``torch.export.save`` (the spec and
    the size rule as extra files)."""
    import torch

    trace, fixed = export_size(spec, _as_int(input_size), dynamic)
    model = _torch_module(spec, weights)
    program = torch.export.export(
        model, (_example(spec, trace),), dynamic_shapes=_torch_dynamic_shapes(spec, fixed)
    )
    torch.export.save(program, str(path), extra_files=_metadata(spec, fixed, precision))
    return path


def _as_int(size: Size) -> int | None:
    if size is None or isinstance(size, int):
        return size
    h, w = size
    if h != w:
        raise ValueError(f"exports take square sizes. Received: {h}x{w}")
    return int(h)


# -- runners --------------------------------------------------------------------------------------
class LoadError(ValueError):
    """An artefact its runtime cannot load (bad input: exit 2 in the CLI)."""


def onnx_session(path: Path):
    """An onnxruntime CPU session for ``path``."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    try:
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as err:  # onnxruntime raises its own exception types
        raise LoadError(f"{path}: onnxruntime cannot load it ({_first_line(err)})") from None


def onnx_metadata(path: Path) -> dict[str, str]:
    """The ``metadata_props`` of an ONNX file (through onnxruntime)."""
    return dict(onnx_session(path).get_modelmeta().custom_metadata_map)


def run_onnx(path: Path, x: np.ndarray, session: Any = None) -> np.ndarray:
    """NCHW logits of an ONNX artefact on NCHW ``x`` (onnxruntime, CPU)."""
    session = session or onnx_session(path)
    name = session.get_inputs()[0].name
    out = session.run(None, {name: np.ascontiguousarray(x, dtype=np.float32)})[0]
    return np.asarray(out, dtype=np.float32)


def run_savedmodel(path: Path, x: np.ndarray) -> np.ndarray:
    """NCHW logits of a SavedModel folder (``tf.saved_model.load`` and its ``serve`` endpoint)."""
    return load_savedmodel(path)(x)


def load_savedmodel(path: Path) -> Callable[[np.ndarray], np.ndarray]:
    """A SavedModel folder loaded once, as an NCHW → NCHW logits function."""
    from unet_bridge.frameworks import import_frameworks

    import_frameworks()
    import tensorflow as tf

    try:
        loaded = tf.saved_model.load(str(path))
    except Exception as err:
        raise LoadError(f"{path}: TensorFlow cannot load it ({_first_line(err)})") from None

    def run(x: np.ndarray) -> np.ndarray:
        nhwc = np.ascontiguousarray(np.transpose(x, (0, 2, 3, 1)), dtype=np.float32)
        out = np.asarray(loaded.serve(tf.constant(nhwc)), dtype=np.float32)
        return np.ascontiguousarray(np.transpose(out, (0, 3, 1, 2)))

    return run


def litert_interpreter(path: Path):
    """The LiteRT interpreter: ``ai_edge_litert`` when installed, else ``tf.lite.Interpreter``."""
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        from unet_bridge.frameworks import import_frameworks

        import_frameworks()
        import tensorflow as tf

        Interpreter = tf.lite.Interpreter
    try:
        return Interpreter(model_path=str(path))
    except Exception as err:
        raise LoadError(
            f"{path}: the LiteRT interpreter cannot load it ({_first_line(err)})"
        ) from None


def run_tflite(path: Path, x: np.ndarray) -> np.ndarray:
    """NCHW logits of a ``.tflite`` file in the LiteRT interpreter (NHWC inside)."""
    return load_tflite(path)(x)


def load_tflite(path: Path) -> Callable[[np.ndarray], np.ndarray]:
    """A ``.tflite`` file in one LiteRT interpreter, as an NCHW → NCHW logits function (tensors
    are reallocated when the input shape changes)."""
    interpreter = litert_interpreter(path)
    index = interpreter.get_input_details()[0]["index"]
    shape: list[tuple[int, ...]] = []

    def run(x: np.ndarray) -> np.ndarray:
        nhwc = np.ascontiguousarray(np.transpose(x, (0, 2, 3, 1)), dtype=np.float32)
        if not shape or shape[0] != nhwc.shape:
            interpreter.resize_tensor_input(index, nhwc.shape, strict=False)
            interpreter.allocate_tensors()
            shape[:] = [nhwc.shape]
        interpreter.set_tensor(index, nhwc)
        interpreter.invoke()
        out = interpreter.get_tensor(interpreter.get_output_details()[0]["index"])
        return np.ascontiguousarray(np.transpose(np.asarray(out, np.float32), (0, 3, 1, 2)))

    return run


def run_pt2(path: Path, x: np.ndarray) -> np.ndarray:
    """NCHW logits of a ``torch.export`` program (``torch.export.load``)."""
    return load_pt2(path)(x)


def load_pt2(path: Path) -> Callable[[np.ndarray], np.ndarray]:
    """A ``torch.export`` program loaded once, as an NCHW → NCHW logits function."""
    import torch

    try:
        module = torch.export.load(str(path)).module()
    except Exception as err:
        raise LoadError(f"{path}: torch.export cannot load it ({_first_line(err)})") from None

    def run(x: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return module(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))).numpy()

    return run


def load_onnx(path: Path) -> Callable[[np.ndarray], np.ndarray]:
    """An ONNX file in one onnxruntime session, as an NCHW → NCHW logits function."""
    session = onnx_session(path)
    return lambda x: run_onnx(path, x, session)


def load_artefact(path: str | os.PathLike[str]) -> Callable[[np.ndarray], np.ndarray]:
    """Any exported artefact loaded once in its runtime: NCHW float32 in, NCHW logits out."""
    suffix = export_of(path).fmt.suffix
    loaders = {".onnx": load_onnx, ".savedmodel": load_savedmodel, ".tflite": load_tflite,
               ".pt2": load_pt2}  # fmt: skip
    return loaders[suffix](Path(path))


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0] if text else ''}"[:300]


# -- the registry ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Export:
    """A deployment format: its registry entry, runner, runtime name and precisions."""

    fmt: Format
    run: Runner
    runtime: str
    precisions: tuple[str, ...]


EXPORTS: dict[str, Export] = {}

for _export in (
    Export(Format(".onnx", "ONNX model", "onnx", None, write_onnx), run_onnx, "onnxruntime",
           PRECISIONS),
    Export(Format(".savedmodel", "TensorFlow SavedModel folder", "keras", None, write_savedmodel,
                  folder=True), run_savedmodel, "TensorFlow", ("fp32",)),
    Export(Format(".tflite", "LiteRT (TensorFlow Lite) model", "keras", None, write_tflite),
           run_tflite, "LiteRT interpreter", PRECISIONS),
    Export(Format(".pt2", "torch.export program", "torch", None, write_pt2), run_pt2,
           "torch.export", ("fp32",)),
):  # fmt: skip
    register(_export.fmt)
    EXPORTS[_export.fmt.suffix] = _export


def export_of(path: str | os.PathLike[str]) -> Export:
    """The deployment format of ``path`` by its suffix (``ValueError`` for any other)."""
    name = Path(path).name
    if not any(name.endswith(s) and len(name) > len(s) for s in FORMATS):
        raise ValueError(
            f"{path}: unknown extension {Path(path).suffix or '(none)'!r}; "
            f"exports end in {', '.join(EXPORTS)}"
        )
    fmt = format_of(path)
    if fmt.suffix not in EXPORTS:
        raise ValueError(
            f"{path}: a {fmt.description} is a weight file, not a deployment format "
            f"(use `unet port`); exports end in {', '.join(EXPORTS)}"
        )
    return EXPORTS[fmt.suffix]


def run_artefact(path: str | os.PathLike[str], x: np.ndarray) -> np.ndarray:
    """Run any exported artefact in its own runtime: NCHW float32 in, NCHW logits out."""
    return export_of(path).run(Path(path), x)


# -- verified export ------------------------------------------------------------------------------
@dataclass(frozen=True)
class ExportCheck:
    """One input's comparison of the artefact against the canonical PyTorch model."""

    name: str
    shape: tuple[int, ...]
    logits: NoiseCheck
    output: NoiseCheck
    argmax_agreement: float

    @property
    def passed(self) -> bool:
        return self.logits.passed and self.output.passed

    def to_dict(self) -> dict[str, Any]:
        return {
            "input": self.name,
            "shape": list(self.shape),
            "passed": self.passed,
            "argmax_agreement": self.argmax_agreement,
            "logits": self.logits.to_dict(),
            "output": self.output.to_dict(),
        }


@dataclass
class ExportResult:
    """What :func:`export_model` wrote (or refused) and why."""

    ok: bool
    path: Path
    spec: UNetSpec
    precision: str
    runtime: str
    size_rule: str
    tolerance: NoiseTolerance
    checks: list[ExportCheck]
    seconds: dict[str, float] = field(default_factory=dict)
    bytes: int = 0
    card: Path | None = None

    def lines(self) -> list[str]:
        """The per-output report, one line per input and output."""
        rows = []
        for c in self.checks:
            h, w = c.shape[-2:]
            rows.append(
                f"{self.runtime} vs PyTorch, {c.name} {c.shape[0]}x{h}x{w}: logits {c.logits}; "
                f"argmax agreement {100 * c.argmax_agreement:.4f}%"
            )
            rows.append(f"  output ({self.spec.head}): {c.output}")
        return rows

    def to_dict(self) -> dict[str, Any]:
        return {
            "passed": self.ok,
            "path": str(self.path),
            "precision": self.precision,
            "runtime": self.runtime,
            "size_rule": self.size_rule,
            "tolerance": {"margin": self.tolerance.margin, "floor": self.tolerance.floor},
            "checks": [c.to_dict() for c in self.checks],
            "seconds": self.seconds,
            "bytes": self.bytes,
            "spec": self.spec.to_dict(),
        }


class ExportRejectedError(Exception):
    """The written artefact failed its verification; nothing was left at the destination."""

    def __init__(self, result: ExportResult) -> None:
        super().__init__("; ".join(result.lines()))
        self.result = result


def check_inputs(
    spec: UNetSpec, trace: int, fixed: int | None, seed: int = 0, image: str | None = None
) -> dict[str, np.ndarray]:
    """The inputs an export is checked on: a random batch of 2 (for a dynamic artefact at a
    non-square size other than the traced one, so the dynamic axes are exercised), and the image."""
    checks: dict[str, np.ndarray] = {}
    rng = np.random.default_rng(seed)
    if fixed is None:
        cell = 2**spec.depth
        h, w = trace + cell, trace + 2 * cell
    else:
        h = w = fixed
    checks["random"] = rng.random((2, spec.in_channels, h, w), dtype=np.float32)
    if image is not None:
        checks[Path(image).name] = inputs.image_input(image, spec, fixed or trace)
    return checks


def verify_artefact(
    weights: Weights,
    spec: UNetSpec,
    path: Path,
    xs: Mapping[str, np.ndarray],
    tolerance: NoiseTolerance,
    run: Runner | None = None,
) -> list[ExportCheck]:
    """Run ``path`` in its runtime on each input and judge it against the PyTorch model (fp32, and
    float64 for the noise). Needs PyTorch, not Keras."""
    from unet_bridge.parity import check_outputs, torch_model, torch_taps

    run = run or export_of(path).run
    out_name = build_plan(spec).output.name
    model = torch_model(spec, weights)
    model64 = torch_model(spec, weights).double()
    checks = []
    for name, x in xs.items():
        got = run(path, x)
        ref = torch_taps(model, x, [out_name])[out_name]
        ref64 = torch_taps(model64, x, [out_name])[out_name]
        if got.shape != ref.shape:
            raise ValueError(
                f"{path}: the artefact gives shape {got.shape} for input {x.shape}; "
                f"the model gives {ref.shape}"
            )
        logits, output = check_outputs(spec, got, ref, ref64, tolerance)
        checks.append(
            ExportCheck(name, tuple(x.shape), logits, output, compare(got, ref64).argmax_agreement)
        )
    return checks


def export_model(
    weights: Weights,
    spec: UNetSpec,
    dst: str | os.PathLike[str],
    *,
    size: int | None = None,
    dynamic: bool | None = None,
    opset: int | None = None,
    precision: str = "fp32",
    image: str | os.PathLike[str] | None = None,
    seed: int = 0,
    tolerance: NoiseTolerance | None = None,
    card: bool = True,
    metrics: Mapping[str, Any] | None = None,
    source: str | None = None,
) -> ExportResult:
    """Write ``weights`` as the deployment artefact ``dst`` (format by suffix), proven first.

    Args:
        weights, spec: Canonical weights and their spec.
        dst: ``.onnx``, ``.savedmodel`` (a folder), ``.tflite`` or ``.pt2``.
        size: The input size (default: dynamic where the spec allows it, else the preset's size).
        dynamic: H and W dynamic (``None``: where the spec allows it and ``size`` is not given).
        opset: ONNX opset (default: the exporter's).
        precision: ``fp32``, ``fp16`` or ``dynamic-int8`` (see :data:`PRECISIONS`).
        image: An image to check on besides the random batch.
        seed: Seed of the random check input.
        tolerance: The fp32 tolerance (scaled by :func:`precision_tolerance` for lower precisions).
        card: Write a model card beside the artefact (``DST.README.md``; ``README.md`` inside a
            SavedModel folder).
        metrics: Training metrics for the card (a run's ``metrics.json``).
        source: Where the weights came from, for the card.

    Returns:
        The verification's outcome (the artefact is at ``dst``).

    Raises:
        ValueError: An unknown suffix, a precision the format does not take, a size the spec does
            not take, an existing folder, or an artefact its runtime cannot load.
        ExportRejectedError: The artefact computed something else; nothing is at ``dst``.
    """
    dst = Path(dst)
    export = export_of(dst)
    if precision not in export.precisions:
        raise ValueError(
            f"{dst}: a {export.fmt.description} is written in {', '.join(export.precisions)}; "
            f"precision {precision!r} is not available"
        )
    trace, fixed = export_size(spec, size, dynamic)
    check_destination(dst, folder_ok=export.fmt.folder)
    xs = check_inputs(spec, trace, fixed, seed, None if image is None else str(image))
    tol = precision_tolerance(precision, tolerance)
    from unet_bridge.parity import check_finite

    check_finite(weights)
    import unet_torch  # noqa: F401  (the reference; loaded before any TensorFlow, see frameworks)

    seconds: dict[str, float] = {}
    with atomic_path(dst, folder=export.fmt.folder) as tmp:
        start = time.perf_counter()
        export.fmt.write(weights, spec, tmp, trace if fixed is not None else None,
                         dynamic=fixed is None, opset=opset, precision=precision)  # fmt: skip
        seconds["export"] = time.perf_counter() - start
        start = time.perf_counter()
        checks = verify_artefact(weights, spec, tmp, xs, tol, export.run)
        seconds["verify"] = time.perf_counter() - start
        result = ExportResult(
            all(c.passed for c in checks), dst, spec, precision, export.runtime,
            size_rule(spec, fixed), tol, checks, seconds, _size_of(tmp),
        )  # fmt: skip
        if not result.ok:
            raise ExportRejectedError(result)
        if card:
            from unet_bridge.card import card_path, write_model_card

            inside = export.fmt.folder
            where = tmp if inside else card_path(dst)
            result.card = card_path(dst) if not inside else dst / "README.md"
            write_model_card(where, spec, parity=result, metrics=metrics, artefact=dst,
                             source=source)  # fmt: skip
    return result


def _size_of(path: Path) -> int:
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size


__all__ = [
    "EXPORTS",
    "PRECISIONS",
    "Export",
    "ExportCheck",
    "ExportRejectedError",
    "ExportResult",
    "LoadError",
    "any_size",
    "export_model",
    "export_of",
    "export_size",
    "load_artefact",
    "onnx_metadata",
    "onnx_session",
    "precision_tolerance",
    "run_artefact",
    "run_onnx",
    "run_pt2",
    "run_savedmodel",
    "run_tflite",
    "size_rule",
    "verify_artefact",
]
