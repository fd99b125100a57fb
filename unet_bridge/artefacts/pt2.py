"""``torch.export`` programs (``.pt2``): the PyTorch twin through ``torch.export.export``, saved
with ``torch.export.save`` (the metadata as extra files) and run through ``torch.export.load``."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from unet_bridge.artefacts.common import (
    SIZES_KEY,
    SPEC_KEY,
    Artefact,
    Export,
    Runner,
    loading,
    writer,
)
from unet_bridge.formats import Format


def export(job: Export, path: Path) -> None:
    """Export the PyTorch twin as a ``.pt2`` program at ``path``."""
    import torch

    program = torch.export.export(
        job.torch_module(), (job.torch_example(),), dynamic_shapes=job.torch_dynamic_shapes()
    )
    torch.export.save(program, str(path), extra_files=job.metadata())


#: The registry's writer: ``write(weights, spec, path, input_size, *, dynamic, opset, precision)``.
write = writer(export)


def read_metadata(path: Path) -> dict[str, str]:
    import torch

    extra = {SPEC_KEY: "", SIZES_KEY: ""}
    with loading(path, "torch.export"):
        torch.export.load(str(path), extra_files=extra)
    return {k: v for k, v in extra.items() if v}


def load(path: Path) -> Runner:
    """A ``torch.export`` program loaded once."""
    import torch

    with loading(path, "torch.export"):
        module = torch.export.load(str(path)).module()

    def run(x: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return module(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))).numpy()

    return run


ENTRY = Artefact(
    Format(".pt2", "torch.export program", "torch", None, write), "torch.export", ("fp32",),
    load, read_metadata,
)  # fmt: skip
