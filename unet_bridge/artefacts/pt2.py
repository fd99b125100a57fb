"""``torch.export`` programs (``.pt2``): the PyTorch twin through ``torch.export.export``, saved
with ``torch.export.save`` (the metadata as extra files) and run through ``torch.export.load``."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from unet_bridge.artefacts.common import (
    SIZES_KEY,
    SPEC_KEY,
    Artefact,
    LoadError,
    Runner,
    as_int,
    export_size,
    first_line,
    metadata,
    torch_dynamic_shapes,
    torch_example,
    torch_module,
)
from unet_bridge.formats import Format, Size, Weights
from unet_spec import UNetSpec


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
    """Export the PyTorch twin as a ``.pt2`` program at ``path``."""
    import torch

    trace, fixed = export_size(spec, as_int(input_size), dynamic)
    model = torch_module(spec, weights)
    program = torch.export.export(
        model, (torch_example(spec, trace),), dynamic_shapes=torch_dynamic_shapes(spec, fixed)
    )
    torch.export.save(program, str(path), extra_files=metadata(spec, fixed, precision))
    return path


def read_metadata(path: Path) -> dict[str, str]:
    import torch

    extra = {SPEC_KEY: "", SIZES_KEY: ""}
    try:
        torch.export.load(str(path), extra_files=extra)
    except Exception as err:
        raise LoadError(f"{path}: torch.export cannot load it ({first_line(err)})") from None
    return {k: v for k, v in extra.items() if v}


def load(path: Path) -> Runner:
    """A ``torch.export`` program loaded once."""
    import torch

    try:
        module = torch.export.load(str(path)).module()
    except Exception as err:
        raise LoadError(f"{path}: torch.export cannot load it ({first_line(err)})") from None

    def run(x: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return module(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))).numpy()

    return run


ENTRY = Artefact(
    Format(".pt2", "torch.export program", "torch", None, write), "torch.export", ("fp32",),
    load, read_metadata,
)  # fmt: skip
