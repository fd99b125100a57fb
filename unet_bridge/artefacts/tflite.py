"""LiteRT (``.tflite``): the Keras twin through ``model.export(format="litert")``, run in the LiteRT
interpreter (``ai_edge_litert``, else ``tf.lite``). fp16 stores float16 weights; dynamic-int8 is
LiteRT's dynamic-range quantisation. The metadata goes into the flatbuffer's metadata table."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from unet_bridge.artefacts.common import (
    PRECISIONS,
    Artefact,
    Export,
    Runner,
    loading,
    nhwc_runner,
    writer,
)
from unet_bridge.formats import Format


def export(job: Export, path: Path) -> None:
    """Export the Keras twin as a ``.tflite`` file at ``path``."""
    model = job.keras_model()  # loads the frameworks in their safe order
    import tensorflow as tf

    options: dict[str, Any] = {}
    if job.precision in ("fp16", "dynamic-int8"):
        options["optimizations"] = [tf.lite.Optimize.DEFAULT]
    if job.precision == "fp16":
        options["target_spec"] = {"supported_types": [tf.float16]}
    model.export(str(path), format="litert", verbose=False, **options)
    _add_metadata(path, job.metadata())


#: The registry's writer: ``write(weights, spec, path, input_size, *, dynamic, opset, precision)``.
write = writer(export)


def _add_metadata(path: Path, entries: Mapping[str, str]) -> None:
    """Add string entries to a ``.tflite`` file's metadata table (name → buffer). TensorFlow's
    flatbuffer tools are the public way to edit the table; without them the card beside the file
    carries the spec."""
    try:
        from tensorflow.lite.python import schema_py_generated as schema
        from tensorflow.lite.tools import flatbuffer_utils
    except ImportError:
        return
    model = flatbuffer_utils.read_model(str(path))
    model.metadata = list(model.metadata or [])
    for key, value in entries.items():
        buffer = schema.BufferT()
        buffer.data = np.frombuffer(value.encode(), dtype=np.uint8)
        model.buffers.append(buffer)
        entry = schema.MetadataT()
        entry.name = key
        entry.buffer = len(model.buffers) - 1
        model.metadata.append(entry)
    flatbuffer_utils.write_model(model, str(path))


def read_metadata(path: Path) -> dict[str, str]:
    try:
        from tensorflow.lite.tools import flatbuffer_utils
    except ImportError:
        return {}
    model = flatbuffer_utils.read_model(str(path))
    out = {}
    for entry in model.metadata or []:
        name = entry.name.decode() if isinstance(entry.name, bytes) else str(entry.name)
        data = model.buffers[entry.buffer].data
        if data is not None:
            out[name] = bytes(np.asarray(data, dtype=np.uint8)).decode("utf-8", "replace")
    return out


def interpreter(path: Path) -> Any:
    """The LiteRT interpreter: ``ai_edge_litert`` when installed, else ``tf.lite.Interpreter``."""
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        from unet_bridge.frameworks import import_frameworks

        import_frameworks()
        import tensorflow as tf

        Interpreter = tf.lite.Interpreter
    with loading(path, "the LiteRT interpreter"):
        return Interpreter(model_path=str(path))


def load(path: Path) -> Runner:
    """A ``.tflite`` file in one LiteRT interpreter (tensors are reallocated when the input shape
    changes)."""
    interp = interpreter(path)
    index = interp.get_input_details()[0]["index"]
    shape: list[tuple[int, ...]] = []

    def run(nhwc: np.ndarray) -> np.ndarray:
        if not shape or shape[0] != nhwc.shape:
            interp.resize_tensor_input(index, nhwc.shape, strict=False)
            interp.allocate_tensors()
            shape[:] = [nhwc.shape]
        interp.set_tensor(index, nhwc)
        interp.invoke()
        return interp.get_tensor(interp.get_output_details()[0]["index"])

    return nhwc_runner(run)


ENTRY = Artefact(
    Format(".tflite", "LiteRT (TensorFlow Lite) model", "keras", None, write),
    "LiteRT interpreter", PRECISIONS, load, read_metadata,
)  # fmt: skip
