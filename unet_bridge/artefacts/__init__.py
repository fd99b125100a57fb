"""Deployment artefacts, one module per format: its writer, its runtime loader and its spec reader.

Each module defines ``export`` (the format's own exporter, given one
:class:`~unet_bridge.artefacts.common.Export`), ``write`` (the registry's writer made from it),
``load``, ``read_metadata`` and ``ENTRY``, an :class:`~unet_bridge.artefacts.common.Artefact`: the
format's registry entry (:class:`unet_bridge.formats.Format`, write-only: weights are not read back
from a deployment format), the runtime that runs it, the precisions it is written in, how to load it
once as an NCHW → NCHW logits function, and how to read back the spec written into it.
:mod:`unet_bridge.export` registers them and proves every artefact before it lands; what the formats
share is in :mod:`unet_bridge.artefacts.common`.

Framework imports happen inside functions, so importing this package loads numpy only.
"""

from unet_bridge.artefacts import onnx, pt2, savedmodel, tflite
from unet_bridge.artefacts.common import Artefact

#: Every deployment format, by suffix.
ARTEFACTS: dict[str, Artefact] = {
    m.ENTRY.fmt.suffix: m.ENTRY for m in (onnx, savedmodel, tflite, pt2)
}

__all__ = ["ARTEFACTS"]
