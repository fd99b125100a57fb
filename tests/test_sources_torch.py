"""PyTorch models from elsewhere: milesial/Pytorch-UNet (a stand-in with its layout, both variants,
both bias eras) and MONAI's ``BasicUNet`` (the real one), ported both ways and proven against the
peer's own forward pass, at a valid size and at odd sizes the peer accepts.

The milesial proof is against ``tests/peers/milesial_layout.py`` (milesial's code is not a package);
MONAI's is against ``monai.networks.nets.BasicUNet`` itself.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from tests.peers.milesial_layout import UNet as MilesialUNet
from tests.peers.milesial_layout import randomise
from unet_bridge import port, random_input, sources
from unet_bridge.judge import judge, proof_inputs
from unet_bridge.port import RejectedError, write_source, write_verified
from unet_bridge.sources import SourceFile, milesial, monai_basicunet
from unet_bridge.sources import _torch as tio
from unet_cli.main import main
from unet_spec import PRESETS, random_weights

BasicUNet = pytest.importorskip("monai.networks.nets").BasicUNet

# The bar for a port, beside the noise rule.
REL = 1e-5
STANDIN = "tests.peers.milesial_layout:UNet"
SMALL = (4, 4, 8, 8, 16, 4)  # BasicUNet features


def _milesial(bilinear: bool, bias: bool, base: int = 4, depth: int = 4, seed: int = 0):
    torch.manual_seed(seed)
    return randomise(MilesialUNet(3, 2, bilinear, base=base, depth=depth, bias=bias), seed)


def _basicunet(seed: int = 0, **kwargs):
    """A BasicUNet whose norms have non-trivial affine parameters and statistics."""
    torch.manual_seed(seed)
    model = BasicUNet(spatial_dims=2, **{"features": SMALL, **kwargs}).eval()
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, (torch.nn.InstanceNorm2d, torch.nn.BatchNorm2d)):
                module.weight.uniform_(0.5, 1.5)
                module.bias.normal_(0, 0.1)
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.normal_(0, 0.1)
                module.running_var.uniform_(0.5, 1.5)
    return model


def _x(spec, size: int, seed: int = 0) -> np.ndarray:
    return random_input(spec, size, 1, seed)


def _assert_proven(reference, spec, weights, x) -> None:
    """The judge at each size a source is proven at (``x``'s, and an odd one for a pad merge)."""
    runs = proof_inputs(reference, spec, x)
    verdicts = judge(reference, spec, weights, [xi for _, xi in runs])
    for (size, _), verdict in zip(runs, verdicts, strict=True):
        assert verdict.check.passed, f"{size}: {verdict.check}"
        assert verdict.check.rel <= REL, f"{size}: {verdict.check}"
        assert verdict.what == "logits"


# -- milesial --------------------------------------------------------------------------------------
@pytest.mark.parametrize("bilinear", [False, True], ids=["transpose", "bilinear"])
@pytest.mark.parametrize("bias", [False, True], ids=["no-bias", "bias"])
def test_milesial_full_width_is_the_preset(bilinear, bias) -> None:
    with torch.device("meta"):
        model = MilesialUNet(3, 2, bilinear, bias=bias)
    spec, problems = milesial.infer(tio.shapes_of(model.state_dict()))
    assert problems == []
    preset = PRESETS["milesial-bilinear" if bilinear else "milesial"]
    assert spec == preset.replace(conv_bias=bias)
    assert sum(p.numel() for p in model.parameters()) == spec.plan().trainable_params


@pytest.mark.parametrize("bilinear", [False, True], ids=["transpose", "bilinear"])
@pytest.mark.parametrize("bias", [False, True], ids=["no-bias", "bias"])
def test_milesial_port_matches_its_forward_pass(tmp_path, bilinear, bias) -> None:
    model = _milesial(bilinear, bias)
    state = model.state_dict()
    state["mask_values"] = [0, 1]  # newer checkpoints carry it
    path = tmp_path / "carvana.pth"
    torch.save(state, path)
    assert sources.detect(SourceFile(path)) is sources.get_source("milesial")
    weights, spec, reference, note = milesial.SOURCE.read(SourceFile(path))
    assert reference is None and "mask_values" in note
    assert spec.conv_bias is bias and spec.upsample == ("bilinear" if bilinear else "transpose")
    ref = milesial.SOURCE.reference_from_module(
        _milesial(bilinear, bias, seed=1), SourceFile(path), "stand-in"
    )
    # 64: a valid size; 79 and 250 (+15): odd sizes, where milesial zero-pads around the map.
    _assert_proven(ref, spec, weights, _x(spec, 64))
    _assert_proven(ref, spec, weights, _x(spec, 250))


@pytest.mark.parametrize("bilinear", [False, True], ids=["transpose", "bilinear"])
@pytest.mark.parametrize("bias", [False, True], ids=["no-bias", "bias"])
def test_milesial_written_back_loads_strictly(tmp_path, bilinear, bias) -> None:
    spec = milesial.milesial_spec(3, 2, bilinear, base=4, bias=bias)
    weights = random_weights(spec, seed=3)
    dst = tmp_path / "back.pth"

    def stand_in(file):
        return milesial.SOURCE.reference_from_module(_milesial(bilinear, bias), file, "stand-in")

    result = write_source(weights, spec, dst, sources.get_source("milesial"), stand_in)
    assert result.ok and "stand-in vs PyTorch" in result.summary
    model = MilesialUNet(3, 2, bilinear, base=4, bias=bias)
    model.load_state_dict(torch.load(dst, weights_only=True), strict=True)
    back = milesial.SOURCE.read(SourceFile(dst))
    assert back.spec == spec
    assert all(np.array_equal(back.weights[k], v) for k, v in weights.items())


# -- MONAI BasicUNet --------------------------------------------------------------------------------
def test_basicunet_defaults_are_the_preset() -> None:
    with torch.device("meta"):
        model = BasicUNet(spatial_dims=2)
    spec, problems = monai_basicunet.infer(tio.shapes_of(model.state_dict()))
    assert problems == [] and spec == PRESETS["basicunet"]


VARIANTS = {
    "instance": {},
    "batch-no-bias": {"norm": "batch", "bias": False, "features": (4, 6, 8, 10, 12, 5)},
    "rgb-one-class": {"in_channels": 3, "out_channels": 1},
}


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_basicunet_port_matches_monai(tmp_path, variant) -> None:
    path = tmp_path / "basicunet.pth"
    torch.save(_basicunet(**VARIANTS[variant]).state_dict(), path)
    assert sources.detect(SourceFile(path)) is sources.get_source("monai")
    weights, spec, reference, note = monai_basicunet.SOURCE.read(SourceFile(path))
    assert reference is not None and "BasicUNet" in reference.description
    # 32: a valid size; 47 (+15) and 37 + 15: odd sizes, where UpCat replicates the far edge.
    _assert_proven(reference, spec, weights, _x(spec, 32))
    _assert_proven(reference, spec, weights, _x(spec, 37))


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_basicunet_written_back_loads_strictly(tmp_path, variant) -> None:
    kwargs = VARIANTS[variant]
    path = tmp_path / "src.pth"
    torch.save(_basicunet(**kwargs).state_dict(), path)
    _, spec, _, _ = monai_basicunet.SOURCE.read(SourceFile(path))
    weights = random_weights(spec, seed=5)
    dst = tmp_path / "back.pth"
    result = write_source(weights, spec, dst, sources.get_source("monai"))
    assert result.ok and "MONAI BasicUNet" in result.summary
    model = BasicUNet(spatial_dims=2, **{"features": SMALL, **kwargs})
    model.load_state_dict(torch.load(dst, weights_only=True), strict=True)


# -- the wrong concat order is refused ---------------------------------------------------------------
@pytest.mark.parametrize("peer", ["milesial", "monai"])
def test_wrong_concat_order_is_refused(tmp_path, peer) -> None:
    """The mapping that keeps every tensor but reads the decoder input as ``[up, skip]``: every
    shape fits (so a twin-vs-twin check passes), yet it computes something else; the proof against
    the source catches it and nothing lands."""
    path = tmp_path / "src.pth"
    if peer == "milesial":
        torch.save(_milesial(False, False).state_dict(), path)
        weights, spec, _, _ = milesial.SOURCE.read(SourceFile(path))
        reference = milesial.SOURCE.reference_from_module(
            _milesial(False, False, seed=7), SourceFile(path), "src"
        )
    else:
        torch.save(_basicunet(features=(4, 4, 8, 8, 16, 8)).state_dict(), path)
        weights, spec, reference, _ = monai_basicunet.SOURCE.read(SourceFile(path))
    wrong = spec.replace(concat_order="up_skip")
    dst = tmp_path / "wrong.safetensors"
    assert port(weights, wrong, dst, verify=True).ok  # twin against twin cannot tell
    dst.unlink()
    with pytest.raises(RejectedError) as info:
        write_verified(weights, wrong, dst, reference=reference)
    assert "vs PyTorch" in str(info.value) and not dst.exists()
    assert not list(tmp_path.glob("wrong*"))


def test_wrong_concat_order_is_refused_by_the_command(tmp_path, monkeypatch, capsys) -> None:
    path = tmp_path / "src.pth"
    torch.save(_milesial(False, False).state_dict(), path)
    infer = milesial.infer

    def wrong_order(shapes):
        spec, problems = infer(shapes)
        return spec.replace(concat_order="up_skip"), problems

    monkeypatch.setattr(milesial, "infer", wrong_order)
    dst = tmp_path / "out.safetensors"
    args = json.dumps({"n_channels": 3, "n_classes": 2, "base": 4})
    argv = ["port", str(path), str(dst), "--source-model", STANDIN, "--source-args", args]
    assert main(argv) == 1
    assert "verification failed, nothing written" in capsys.readouterr().out
    assert not dst.exists()


def test_parity_judges_the_twins_against_the_source_too(tmp_path, monkeypatch, capsys) -> None:
    """``unet parity`` reads a layout from elsewhere as ``unet port`` does, and judges the twin
    against the source as well: a wrong concat order passes twin against twin and fails there."""
    path = tmp_path / "src.pth"
    torch.save(_milesial(False, False, depth=2).state_dict(), path)
    args = json.dumps({"n_channels": 3, "n_classes": 2, "base": 4, "depth": 2})
    argv = ["parity", str(path), "--size", "32", "--source-model", STANDIN, "--source-args", args]
    assert main(argv) == 0
    assert f"against the source: {STANDIN}(" in capsys.readouterr().out
    infer = milesial.infer
    monkeypatch.setattr(
        milesial, "infer", lambda shapes: (infer(shapes)[0].replace(concat_order="up_skip"), [])
    )
    assert main(argv) == 1
    out = capsys.readouterr().out
    assert "verdict: PASS" in out and f"against the source: {STANDIN}(" in out


# -- the command ---------------------------------------------------------------------------------
def test_command_ports_milesial_with_no_flags(tmp_path, capsys) -> None:
    path = tmp_path / "carvana.pth"
    torch.save(_milesial(True, False, depth=2).state_dict(), path)
    dst = tmp_path / "out.keras"
    assert main(["port", str(path), str(dst)]) == 0
    out = capsys.readouterr().out
    assert "PyTorch vs Keras" in out and "not proven" in out and "--source-model" in out
    # Every reader (unet predict, unet parity, unet export: sources.read_any) takes it as it is.
    weights, spec, *_ = sources.read_any(path)[1]
    assert spec == milesial.milesial_spec(3, 2, True, base=4, depth=2)
    args = json.dumps({"n_channels": 3, "n_classes": 2, "bilinear": True, "base": 4, "depth": 2})
    proven = tmp_path / "proven.safetensors"
    argv = ["port", str(path), str(proven), "--source-model", STANDIN, "--source-args", args]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert f"{STANDIN}(" in out and "not proven" not in out
    # And back: a file the stand-in loads strictly, proven against it.
    back = tmp_path / "back.pth"
    argv = ["port", str(proven), str(back), "--to", "milesial", "--source-model", STANDIN]
    assert main([*argv, "--source-args", args]) == 0
    model = MilesialUNet(3, 2, True, base=4, depth=2)
    model.load_state_dict(torch.load(back, weights_only=True), strict=True)


def test_command_ports_basicunet_both_ways(tmp_path, capsys) -> None:
    path = tmp_path / "basicunet.pt"
    torch.save(_basicunet().state_dict(), path)
    keras_file = tmp_path / "out.keras"
    assert main(["port", str(path), str(keras_file)]) == 0
    assert "MONAI BasicUNet" in capsys.readouterr().out
    back = tmp_path / "back.pth"
    assert main(["port", str(keras_file), str(back), "--to", "monai"]) == 0
    BasicUNet(spatial_dims=2, features=SMALL).load_state_dict(
        torch.load(back, weights_only=True), strict=True
    )


def test_sources_are_listed(capsys) -> None:
    assert main(["port", "--sources"]) == 0
    out = capsys.readouterr().out
    assert "milesial" in out and "monai" in out and ".pth" in out


def _one_line_exit_2(argv, capsys, *needles: str) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    for needle in needles:
        assert needle in err, err
    return err


def test_every_mismatch_is_named(tmp_path, capsys) -> None:
    state = _milesial(False, False).state_dict()
    state["inc.double_conv.0.bias"] = torch.zeros(4)  # one conv with a bias: mixed eras
    state["up2.up.weight"] = torch.zeros(32, 8, 2, 2)  # a width that does not fit
    del state["up3.conv.double_conv.1.running_var"]  # a norm statistic lost
    path = tmp_path / "odd.pth"
    torch.save(state, path)
    dst = tmp_path / "out.safetensors"
    err = _one_line_exit_2(["port", str(path), str(dst)], capsys, "mismatches")
    named = ["inc.double_conv.0.bias is unexpected (conv bias", "up2.up.bias", "(widths)",
             "up3.conv.double_conv.1.running_var is missing (norm"]  # fmt: skip
    for needle in named:
        assert needle in err
    assert not dst.exists()


def test_bad_inputs_are_one_line(tmp_path, capsys) -> None:
    milesial_file = tmp_path / "m.pth"
    torch.save(_milesial(False, True, depth=2).state_dict(), milesial_file)
    monai_file = tmp_path / "b.pth"
    torch.save(_basicunet().state_dict(), monai_file)
    canonical = tmp_path / "b.safetensors"
    assert main(["port", str(monai_file), str(canonical), "--no-verify"]) == 0
    volume = tmp_path / "v.pth"
    torch.save(BasicUNet(spatial_dims=3, features=SMALL).state_dict(), volume)
    unknown = tmp_path / "u.pth"
    torch.save({"features.0.weight": torch.zeros(4, 3, 3, 3)}, unknown)
    out = str(tmp_path / "o.safetensors")
    cases = [
        (["port", str(milesial_file), out, "--from", "nope"], ("unknown source 'nope'", "milesial")),
        (["port", str(milesial_file), out, "--from", "monai"], ("not a monai BasicUNet layout",)),
        (["port", str(milesial_file), out, "--preset", "milesial"], ("conv_bias=True",)),
        (["port", str(volume), out], ("spatial_dims=3", "2-D")),
        (["port", str(canonical), str(tmp_path / "m2.pth"), "--to", "milesial"],
         ("cannot be written as a milesial", "norm='instance'", "pad_mode='replicate'")),
        (["port", str(canonical), str(tmp_path / "m2.keras"), "--to", "monai"], ("end in .pth",)),
        (["port", str(milesial_file), out, "--source-model", "nomodule"], ("pkg.module:factory",)),
        (["port", str(milesial_file), out, "--source-model", "no_such_pkg.x:UNet"], ("cannot import",)),
        (["port", str(milesial_file), out, "--source-model", STANDIN, "--source-args", "{"],
         ("--source-args is not valid JSON",)),
        (["port", str(milesial_file), out, "--source-model", STANDIN,
          "--source-args", '{"n_channels": 3, "n_classes": 2}'], ("Missing key", "into")),
        (["port", str(milesial_file)], ("SRC and DST are required",)),
        (["port", str(unknown), out], ("carries no spec", "nor is it a layout", "milesial, monai")),
    ]  # fmt: skip
    for argv, needles in cases:
        _one_line_exit_2(argv, capsys, *needles)
    assert not (tmp_path / "o.safetensors").exists() and not (tmp_path / "m2.pth").exists()


def test_the_registry_loads_no_framework() -> None:
    """Listing the sources (``unet port --sources``) imports no framework: converters import
    theirs inside their functions."""
    import subprocess
    import sys

    code = (
        "import sys, unet_bridge.sources as s; s.all_sources(); s.listing(); "
        "print(sorted(m for m in ('torch', 'keras', 'tensorflow', 'monai') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
