"""onnxruntime as a third runtime: the ONNX export of every preset computes the PyTorch twin's
function.

The ONNX model is exported from the PyTorch twin (``torch.onnx.export``, dynamo exporter) through
the bridge's writer and run in onnxruntime. It is judged against PyTorch in fp32 and its float64
run by the noise-aware comparison (16× the measured fp32 noise, no label flip at a clear pixel), on
the logits and on the outputs of the spec's head.

The Keras twin is not built here: ``test_forward`` judges it against the same PyTorch twin at
every architecture at this very size (and the small presets at their default size too), so running
it again here would repeat that proof. What only this file proves is the export.
"""

from __future__ import annotations

import pytest

from parity_tests.conftest import ARCHITECTURES, make_twins
from unet_bridge.artefacts import onnx
from unet_bridge.parity import check_outputs
from unet_spec import PRESETS, UNetSpec
from unet_spec.sizes import any_size

SMALL = sorted(n for n in PRESETS if PRESETS[n].base_filters <= 16)
#: Full-width presets without a small sibling, narrowed (parity_tests.conftest.ARCHITECTURES).
NARROWED = sorted(n for n in ARCHITECTURES if n not in PRESETS)


def _smallest_size(spec: UNetSpec) -> int:
    return spec.plan().valid_sizes(1, 1024)[0]


def _onnx_against_torch(name: str, tmp_path) -> None:
    spec = ARCHITECTURES[name]
    size = _smallest_size(spec)
    twins = make_twins(spec, size, keras=False)
    path = tmp_path / "model.onnx"
    # Dynamic H and W where the spec allows it: the export is traced at another size than checked.
    onnx.write(twins.weights, spec, path, None if any_size(spec) else size)
    x = twins.inputs(batch=2)
    ref, ref64 = twins.torch_logits(x), twins.reference_logits(x)
    checks = check_outputs(spec, onnx.load(path)(x), ref, ref64)
    for what, check in zip(("logits", "output"), checks, strict=True):
        assert check.passed, f"{name} @ {size}: onnxruntime {what}: {check}"


@pytest.mark.parametrize("name", SMALL)
def test_small_presets(name: str, tmp_path) -> None:
    _onnx_against_torch(name, tmp_path)


@pytest.mark.parametrize("name", NARROWED)
def test_full_width_architectures_at_their_smallest_size(name: str, tmp_path) -> None:
    _onnx_against_torch(name, tmp_path)
