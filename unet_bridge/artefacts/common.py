"""What every deployment format shares: the registry entry's shape, the size rule, the metadata
written into an artefact, and the one error for an artefact its runtime cannot load."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from unet_bridge import inputs
from unet_bridge.formats import Format, Size, Weights
from unet_spec import UNetSpec
from unet_spec.sizes import any_size

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


def as_int(size: Size) -> int | None:
    if size is None or isinstance(size, int):
        return size
    h, w = size
    if h != w:
        raise ValueError(f"exports take square sizes. Received: {h}x{w}")
    return int(h)


def metadata(spec: UNetSpec, fixed: int | None, precision: str) -> dict[str, str]:
    """The string metadata every artefact carries."""
    return {
        SPEC_KEY: spec.to_json(),
        SIZES_KEY: size_rule(spec, fixed),
        "unet_layout": "NCHW float32 in, NCHW float32 logits out",
        "unet_precision": precision,
    }


def metadata_json(spec: UNetSpec, fixed: int | None, precision: str) -> str:
    return json.dumps(metadata(spec, fixed, precision), indent=1)


def torch_module(spec: UNetSpec, weights: Weights):
    """The PyTorch twin the torch writers export."""
    from unet_bridge.parity import torch_model

    return torch_model(spec, weights)


def keras_model(spec: UNetSpec, weights: Weights, fixed: int | None):
    """The Keras twin the TensorFlow writers export (loads the frameworks in their safe order)."""
    from unet_bridge.parity import keras_model as build

    return build(spec, weights, fixed)


def torch_dynamic_shapes(spec: UNetSpec, fixed: int | None) -> dict[str, dict[int, Any]]:
    from torch.export import Dim

    shapes: dict[int, Any] = {0: Dim("batch", min=1, max=4096)}
    if fixed is None:
        cell = 2**spec.depth
        shapes[2] = cell * Dim("h", min=1, max=8192 // cell)
        shapes[3] = cell * Dim("w", min=1, max=8192 // cell)
    return {"x": shapes}


def torch_example(spec: UNetSpec, trace: int):
    import torch

    return torch.from_numpy(inputs.random_input(spec, trace, 2, seed=1))


def nchw_to_nhwc(x: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(np.transpose(x, (0, 2, 3, 1)), dtype=np.float32)


def nhwc_to_nchw(x: Any) -> np.ndarray:
    return np.ascontiguousarray(np.transpose(np.asarray(x, np.float32), (0, 3, 1, 2)))


Writer = Callable[..., Path]
Metadata = Mapping[str, str]
