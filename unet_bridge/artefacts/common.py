"""What every deployment format shares: the registry entry's shape, the size rule, one export's
settings and the models it exports, the metadata written into an artefact, and the one error for
an artefact its runtime cannot load.

A format module writes the export it is given (:class:`Export`) with its own exporter, loads an
artefact in its runtime and reads the metadata back; the writer the format registry calls, with
its sizes and options, is the same for all of them (:func:`writer`).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from unet_bridge.formats import Format, Size, Weights, Writer
from unet_bridge.inputs import random_input
from unet_spec import UNetSpec
from unet_spec.sizes import any_size, check_size, default_size, small_size

#: Precisions an export can be written in; each format takes some of them.
PRECISIONS = ("fp32", "fp16", "dynamic-int8")

#: The metadata key that holds the spec JSON (ONNX metadata_props, .pt2 extra files, SavedModel
#: assets.extra, the .tflite metadata table), and the one that holds the valid-size rule.
SPEC_KEY = "unet_spec"
SIZES_KEY = "unet_valid_sizes"

#: An artefact loaded once in its runtime: NCHW float32 in, NCHW float32 logits out.
Runner = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class Artefact:
    """A deployment format.

    Attributes:
        fmt: Its entry in the format registry (suffix, description, install extra, writer).
        runtime: The runtime that runs it, for reports and cards.
        precisions: The precisions it is written in (a subset of :data:`PRECISIONS`).
        load: Load an artefact once in its runtime (``LoadError`` when the runtime cannot).
        read_metadata: The string metadata written into an artefact (``SPEC_KEY``, ``SIZES_KEY``,
            ...), empty when it holds none.
    """

    fmt: Format
    runtime: str
    precisions: tuple[str, ...]
    load: Callable[[Path], Runner]
    read_metadata: Callable[[Path], dict[str, str]]

    def run(self, path: Path, x: np.ndarray) -> np.ndarray:
        """Load ``path`` and run it once on NCHW ``x``."""
        return self.load(Path(path))(x)

    def spec(self, path: Path) -> UNetSpec | None:
        """The spec written into the artefact, if any."""
        text = self.read_metadata(Path(path)).get(SPEC_KEY)
        return UNetSpec.from_json(text) if text else None


class LoadError(ValueError):
    """An artefact its runtime cannot load (bad input: exit 2 in the CLI)."""


def first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0] if text else ''}"[:300]


@contextlib.contextmanager
def loading(path: Path, runtime: str) -> Iterator[None]:
    """Whatever ``runtime`` raises while it loads ``path`` becomes one :class:`LoadError` line
    (each runtime raises its own exception types)."""
    try:
        yield
    except Exception as err:
        raise LoadError(f"{path}: {runtime} cannot load it ({first_line(err)})") from None


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
        check_size(spec, size)
    if dynamic and not any_size(spec):
        raise ValueError(
            f"this spec ({spec.padding} padding, skip_merge={spec.skip_merge!r}) takes one input "
            "size per model, so H and W cannot be dynamic; drop --dynamic and give --size"
        )
    if dynamic is None:
        dynamic = any_size(spec) and size is None
    trace = size if size is not None else small_size(spec)
    if not dynamic and size is None:
        trace = default_size(spec)
    return trace, (None if dynamic else trace)


def as_int(size: Size) -> int | None:
    if size is None or isinstance(size, int):
        return size
    h, w = size
    if h != w:
        raise ValueError(f"exports take square sizes. Received: {h}x{w}")
    return int(h)


@dataclass(frozen=True)
class Export:
    """One export, as every format's exporter receives it.

    Attributes:
        weights, spec: Canonical weights and their spec.
        trace: The input size the model is traced or built at.
        fixed: The one input size the artefact takes, or ``None`` when H and W are dynamic.
        opset: The ONNX opset (``None``: the exporter's own; other formats ignore it).
        precision: One of :data:`PRECISIONS`.
    """

    weights: Weights
    spec: UNetSpec
    trace: int
    fixed: int | None
    opset: int | None
    precision: str

    def metadata(self) -> dict[str, str]:
        """The string metadata every artefact carries."""
        return {
            SPEC_KEY: self.spec.to_json(),
            SIZES_KEY: size_rule(self.spec, self.fixed),
            "unet_layout": "NCHW float32 in, NCHW float32 logits out",
            "unet_precision": self.precision,
        }

    def metadata_json(self) -> str:
        return json.dumps(self.metadata(), indent=1)

    def torch_module(self):
        """The PyTorch twin the torch exporters export."""
        from unet_bridge.parity import torch_model

        return torch_model(self.spec, self.weights)

    def torch_example(self):
        """A traced batch of 2 at the trace size."""
        import torch

        return torch.from_numpy(random_input(self.spec, self.trace, 2, seed=1))

    def torch_dynamic_shapes(self) -> dict[str, dict[int, Any]]:
        """``torch.export``'s dynamic shapes of the input ``x``: the batch always, H and W in whole
        pooling cells when the artefact takes any size."""
        from torch.export import Dim

        shapes: dict[int, Any] = {0: Dim("batch", min=1, max=4096)}
        if self.fixed is None:
            cell = 2**self.spec.depth
            shapes[2] = cell * Dim("h", min=1, max=8192 // cell)
            shapes[3] = cell * Dim("w", min=1, max=8192 // cell)
        return {"x": shapes}

    def keras_model(self):
        """The Keras twin the TensorFlow exporters export, built for the fixed size (loads the
        frameworks in their safe order)."""
        from unet_bridge.parity import keras_model

        return keras_model(self.spec, self.weights, self.fixed)


def writer(export: Callable[[Export, Path], None]) -> Writer:
    """The format registry's writer for a format whose exporter is ``export``.

    The writer takes the registry's arguments (``weights, spec, path, input_size``) and the export
    options (``dynamic``, ``opset``, ``precision``), settles the sizes (:func:`export_size`) and
    hands the exporter one :class:`Export`.
    """

    def write(
        weights: Weights,
        spec: UNetSpec,
        path: Path,
        input_size: Size = None,
        *,
        dynamic: bool | None = None,
        opset: int | None = None,
        precision: str = "fp32",
    ) -> Path:
        trace, fixed = export_size(spec, as_int(input_size), dynamic)
        export(Export(weights, spec, trace, fixed, opset, precision), Path(path))
        return path

    return write


def nhwc_runner(run_nhwc: Callable[[np.ndarray], Any]) -> Runner:
    """A runtime that computes in NHWC (TensorFlow, LiteRT) as an NCHW → NCHW :data:`Runner`.

    The transposes are numpy's: the LiteRT interpreter runs without TensorFlow, so the Keras
    adapters (which load it) are not used here.
    """

    def run(x: np.ndarray) -> np.ndarray:
        nhwc = np.ascontiguousarray(np.transpose(x, (0, 2, 3, 1)), dtype=np.float32)
        out = np.asarray(run_nhwc(nhwc), dtype=np.float32)
        return np.ascontiguousarray(np.transpose(out, (0, 3, 1, 2)))

    return run
