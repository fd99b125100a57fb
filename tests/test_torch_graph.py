"""The PyTorch front-end of the graph reader (:mod:`unet_torch.graph`): plain U-Nets in the styles
public repositories use (``tests/peers/plain_unets.py``, milesial's layout, MONAI's ``BasicUNet``)
read from their graphs, their weights carried into the twin through the mapping, the twin proven
against the source module by the bridge's noise-aware judge at two sizes, and the weights written
back under the source's keys; models the spec cannot express refused with the module named.
"""

from __future__ import annotations

import functools

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from tests.peers import plain_unets as plain
from tests.peers.milesial_layout import UNet as MilesialUNet
from unet_bridge import random_input
from unet_bridge.judge import judge, proof_inputs
from unet_bridge.reads import module_reference
from unet_bridge.sources import _torch as tio
from unet_bridge.sources import monai_basicunet
from unet_graph import GraphMismatchError
from unet_spec import UNetSpec
from unet_torch.graph import (
    Fixed,
    TorchGraphSpec,
    canonical_weights,
    read_torch_graph,
    source_state,
    tensor_mapping,
)

# The flat stand-in's 2x2 'same' convs are torch's own padding="same", which warns on every call.
pytestmark = pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel")

# name → (factory, the spec fields its graph must give).
STYLES = {
    "milesial-bilinear": (
        lambda: MilesialUNet(3, 2, True, base=4, depth=3),
        {"upsample": "bilinear", "align_corners": True, "up_conv_kernel": 0, "skip_merge": "pad",
         "concat_order": "skip_up", "norm": "batch", "conv_bias": False, "depth": 3},
    ),
    "flat-moduledict": (
        plain.FlatUNet,
        {"upsample": "nearest", "up_conv_kernel": 2, "up_activation": True, "skip_merge": "none",
         "concat_order": "up_skip", "head": "sigmoid", "padding": "same", "num_classes": 1},
    ),
    "modulelist-instance": (
        plain.ListUNet,
        {"upsample": "transpose", "norm": "instance", "activation": "leaky_relu",
         "negative_slope": 0.1, "skip_merge": "pad", "concat_order": "skip_up", "depth": 3},
    ),
    "modulelist-plain-instance": (
        lambda: plain.ListUNet(norm="plain", depth=2),
        {"norm": "instance", "depth": 2},
    ),
    "modulelist-groupnorm": (
        lambda: plain.ListUNet(norm="group", depth=2),
        {"norm": "instance", "depth": 2},
    ),
    "valid-slice-crop": (
        plain.ValidUNet,
        {"padding": "valid", "skip_merge": "crop", "head": "softmax", "dropout": 0.3,
         "dropout_at": ("mid",), "concat_order": "up_skip"},
    ),
    "valid-torchvision-crop": (
        lambda: plain.ValidUNet(crop="torchvision"),
        {"padding": "valid", "skip_merge": "crop"},
    ),
    "bilinear-act-before-bn": (
        plain.BilinearUNet,
        {"upsample": "bilinear", "align_corners": False, "up_conv_kernel": 1, "norm": "batch",
         "act_before_norm": True, "bn_epsilon": 1e-3, "bn_momentum": 0.01, "skip_merge": "pad",
         "num_classes": 3},
    ),
    "pooled-resize": (
        plain.PooledResizeUNet,
        {"skip_source": "pooled", "skip_merge": "resize", "padding": "valid", "head": "sigmoid"},
    ),
    "attention-plain": (
        plain.AttentionPlainUNet,
        {"upsample": "nearest", "up_conv_kernel": 3, "up_norm": True, "up_activation": True,
         "norm": "batch", "concat_order": "skip_up", "skip_merge": "none"},
    ),
    "branch-on-sizes": (
        plain.BranchyUNet,
        {"skip_merge": "pad", "pad_mode": "replicate", "norm": "batch"},
    ),
}  # fmt: skip


@functools.cache
def _read(name: str) -> tuple[nn.Module, TorchGraphSpec]:
    torch.manual_seed(0)
    model = plain.randomise(STYLES[name][0]())
    return model, read_torch_graph(model)


def _sizes(spec: UNetSpec) -> list[int]:
    """A valid size near 64, and for a spec that takes any size the bridge's odd one joins it
    (:func:`unet_bridge.reads.reference_sizes`); otherwise the next valid size."""
    size = spec.plan().nearest_valid_size(64)
    if spec.skip_merge == "pad":
        return [size]
    return [size, spec.plan().nearest_valid_size(size + 1, "up")]


def _prove(model: nn.Module, read: TorchGraphSpec, weights: dict[str, np.ndarray]) -> list[int]:
    output = "logits" if read.head == "none" else read.head
    reference = module_reference(model, "the source module", output)
    proven = []
    for size in _sizes(read.spec):
        x = random_input(read.spec, size, 1, seed=size)
        runs = proof_inputs(reference, read.spec, x)
        verdicts = judge(reference, read.spec, weights, [xi for _, xi in runs])
        for (n, _), verdict in zip(runs, verdicts, strict=True):
            assert verdict.check.passed, f"{n}x{n}: {verdict.check}"
            assert verdict.what == output
            proven.append(n)
    return proven


@pytest.mark.parametrize("name", list(STYLES))
def test_a_plain_unet_reads_ports_and_goes_back(name: str) -> None:
    model, read = _read(name)
    fields = {k: getattr(read.spec, k) for k in STYLES[name][1]}
    assert fields == STYLES[name][1], read.notes
    assert read.head == read.spec.head
    if read.spec.dropout:
        assert any("Dropout2d (whole channels) becomes Dropout" in n for n in read.notes)

    weights = canonical_weights(model.state_dict(), read.mapping)
    proven = _prove(model, read, weights)
    assert len(set(proven)) == 2, proven
    if read.spec.skip_merge == "pad":
        assert any(n % 2 for n in proven), proven  # pads show their placement at odd sizes

    # Back under the source's own keys: a fresh instance loads them strictly and reads the same.
    fresh = STYLES[name][0]()
    fresh.load_state_dict(source_state(weights, read.mapping, read.bookkeeping), strict=True)
    again = canonical_weights(fresh.state_dict(), read.mapping)
    assert all(np.array_equal(again[k], v) for k, v in weights.items())


def test_the_mapping_names_the_source_keys_and_its_bookkeeping() -> None:
    model, read = _read("milesial-bilinear")
    assert read.mapping["enc1.conv1.weight"] == "inc.double_conv.0.weight"
    assert read.mapping["enc1.bn1.running_var"] == "inc.double_conv.1.running_var"
    assert read.mapping["head.bias"] == "outc.conv.bias"
    assert "inc.double_conv.1.num_batches_tracked" in read.bookkeeping
    assert read.blocks["dec1.upsample"] == "module up3.up (Upsample)"
    assert read.traced == "torch.fx" and not read.unmapped
    # A converter's name map (plan block → module path) gives the same tensors and counters.
    names = {n.rsplit(".", 1)[0]: k.rsplit(".", 1)[0] for n, k in read.mapping.items()}
    mapping, counters = tensor_mapping(names, read.spec, model.state_dict())
    assert mapping == read.mapping and counters == read.bookkeeping


def test_a_norm_without_affine_parameters_is_fixed_and_says_so() -> None:
    _, read = _read("modulelist-plain-instance")
    fixed = read.mapping["enc1.norm1.weight"]
    assert fixed == Fixed(1.0, (4,)) and read.mapping["enc1.norm1.bias"] == Fixed(0.0, (4,))
    assert any("without affine parameters" in note for note in read.notes), read.notes
    weights = canonical_weights(_read("modulelist-plain-instance")[0].state_dict(), read.mapping)
    weights["enc1.norm1.weight"] = weights["enc1.norm1.weight"] * 2
    with pytest.raises(ValueError, match="enc1.norm1.weight: the source has no tensor"):
        source_state(weights, read.mapping, read.bookkeeping)


def test_a_model_fx_cannot_trace_is_read_from_torch_export() -> None:
    _, read = _read("branch-on-sizes")
    assert read.traced == "torch.export"
    assert any("torch.fx cannot trace it" in note for note in read.notes), read.notes
    assert read.size % 2 == 1  # measured where the branch pads


def test_monai_basicunet_reads_as_its_converter_does() -> None:
    basic_unet = pytest.importorskip("monai.networks.nets").BasicUNet
    torch.manual_seed(0)
    model = plain.randomise(basic_unet(spatial_dims=2, features=(4, 4, 8, 8, 16, 4)))
    read = read_torch_graph(model, "MONAI BasicUNet")
    named, problems = monai_basicunet.infer(tio.shapes_of(model.state_dict()))
    assert problems == []
    # BasicUNet returns logits (its converter assumes a softmax head), and it pads one row or
    # column at most, which "center" (the extra one after) and "end" place alike.
    assert read.spec == named.replace(head="none", pad_align=read.spec.pad_align)
    weights = canonical_weights(model.state_dict(), read.mapping)
    assert len(set(_prove(model, read, weights))) == 2


# -- refusals ---------------------------------------------------------------------------------------
def _planted(change) -> nn.Module:
    torch.manual_seed(0)
    model = plain.ListUNet(depth=2)
    change(model)
    return model.eval()


def _conv5(m: plain.ListUNet) -> None:
    m.encoder[1][0] = nn.Conv2d(4, 8, 5, padding=2, bias=False)


def _strided(m: plain.ListUNet) -> None:
    m.encoder[2][0] = nn.Conv2d(8, 16, 3, stride=2, padding=1, bias=False)


def _extra(m: plain.ListUNet) -> None:
    m.decoder[0].append(nn.Softsign())


def _three_convs(m: plain.ListUNet) -> None:
    m.encoder[1].extend([nn.Conv2d(8, 8, 3, padding=1, bias=False), nn.InstanceNorm2d(8, affine=True),
                         nn.LeakyReLU(0.1)])  # fmt: skip


def _two_groups(m: plain.ListUNet) -> None:
    m.decoder[1][1] = nn.GroupNorm(2, 4)


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (_conv5, "module encoder.1.0 (Conv2d): kernel 5x5"),
        (_strided, "module encoder.2.0 (Conv2d): strides (2, 2)"),
        (_extra, "module decoder.0.6 (Softsign): module class Softsign"),
        (_three_convs, "module encoder.1.0 (Conv2d): enc2 has 3 convs"),
        (_two_groups, "module decoder.1.1 (GroupNorm): 2 groups over 4 channels"),
    ],
    ids=["5x5-conv", "strided-conv", "extra-op", "three-convs", "groupnorm-2-groups"],
)
def test_a_planted_mismatch_is_refused_with_the_module_named(change, expected: str) -> None:
    with pytest.raises(GraphMismatchError) as caught:
        read_torch_graph(_planted(change), size=32)
    assert expected in str(caught.value), str(caught.value)
    assert "\n" not in str(caught.value)


class _DataDependent(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        return F.relu(y) if bool(y.mean() > 0) else y


def test_a_module_that_traces_nowhere_says_what_to_pass_instead() -> None:
    with pytest.raises(ValueError) as caught:
        read_torch_graph(_DataDependent(), size=16)
    text = str(caught.value)
    assert "torch.fx cannot trace it" in text and "torch.export cannot export it" in text, text
    assert "TorchScript, .pt2 or .onnx" in text and "\n" not in text
