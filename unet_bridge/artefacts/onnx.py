"""ONNX: the PyTorch twin through ``torch.onnx.export(..., dynamo=True)``, run in onnxruntime.

fp16 is onnxruntime's float16 conversion (float32 inputs and outputs kept); dynamic-int8 is its
dynamic quantisation of the convolutions. The metadata goes to the model's ``metadata_props``.
"""

from __future__ import annotations

import contextlib
import io
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from unet_bridge.artefacts.common import PRECISIONS, Artefact, Export, Runner, loading, writer
from unet_bridge.formats import Format


def export(job: Export, path: Path) -> None:
    """Export the PyTorch twin to ``path``."""
    import onnx
    import torch

    if job.opset is not None:
        newest = onnx.defs.onnx_opset_version()
        if not 18 <= job.opset <= newest:
            raise ValueError(f"--opset must be between 18 and {newest}. Received: {job.opset}")
    model = job.torch_module()
    # The exporter reports its steps on stdout; the caller prints its own report.
    with contextlib.redirect_stdout(io.StringIO()):
        program = torch.onnx.export(
            model, (job.torch_example(),), dynamo=True, input_names=["x"],
            output_names=["logits"], dynamic_shapes=job.torch_dynamic_shapes(),
            opset_version=job.opset, verbose=False,
        )  # fmt: skip
    proto = program.model_proto
    if job.precision == "fp16":
        from onnxruntime.transformers.float16 import convert_float_to_float16

        proto = convert_float_to_float16(proto, keep_io_types=True)
    del proto.metadata_props[:]
    for key, value in job.metadata().items():
        proto.metadata_props.add(key=key, value=value)
    if job.precision == "dynamic-int8":
        from onnxruntime.quantization import QuantType, quantize_dynamic

        with tempfile.TemporaryDirectory() as tmp:
            plain = Path(tmp) / "fp32.onnx"
            onnx.save(proto, plain)
            quantize_dynamic(plain, path, op_types_to_quantize=["Conv"],
                             weight_type=QuantType.QUInt8)  # fmt: skip
    else:
        onnx.save(proto, path)


#: The registry's writer: ``write(weights, spec, path, input_size, *, dynamic, opset, precision)``.
write = writer(export)


def session(path: Path) -> Any:
    """An onnxruntime CPU session for ``path``."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    with loading(path, "onnxruntime"):
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def read_metadata(path: Path) -> dict[str, str]:
    """The ``metadata_props`` of an ONNX file (through onnxruntime)."""
    return dict(session(path).get_modelmeta().custom_metadata_map)


def run(path: Path, x: np.ndarray, sess: Any = None) -> np.ndarray:
    """NCHW logits of an ONNX artefact on NCHW ``x`` (onnxruntime, CPU)."""
    sess = sess or session(path)
    name = sess.get_inputs()[0].name
    out = sess.run(None, {name: np.ascontiguousarray(x, dtype=np.float32)})[0]
    return np.asarray(out, dtype=np.float32)


def load(path: Path) -> Runner:
    """An ONNX file in one onnxruntime session."""
    sess = session(path)
    return lambda x: run(path, x, sess)


ENTRY = Artefact(
    Format(".onnx", "ONNX model", "onnx", None, write), "onnxruntime", PRECISIONS, load,
    read_metadata,
)  # fmt: skip
