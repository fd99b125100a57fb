"""``unet port`` for U-Nets no converter names, read from their graph: a state dict with its class
(importable or a file), TorchScript, ``torch.export`` and ONNX files with no flags, a Keras builder
with its ``.weights.h5``, MONAI's ``BasicUNet`` and keras-unet through the graph path; the reverse
into the class's own keys; and every planted mismatch refused with nothing written.

Each proof inside the command runs the source itself against the twin by the noise rule; the tests
check that the command says so, that the files land (or do not), and that the reverse file loads
strictly into the class and computes what the source computes.
"""

from __future__ import annotations

import contextlib
import io

import numpy as np
import pytest
import torch

from tests.peers.milesial_layout import UNet as MilesialUNet
from tests.peers.plain_unets import BilinearUNet, FlatUNet, ListUNet, randomise
from unet_bridge import load_any_weights
from unet_bridge.sources import _torch as tio
from unet_cli.main import main

LIST = "tests.peers.plain_unets:ListUNet"
FILE = "tests/peers/plain_unets.py"


def _port(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(["port", *map(str, argv)])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _proven(out: str, times: int = 2) -> None:
    """The source's own run judged against the twin at ``times`` sizes, all within the rule."""
    assert "verified:" in out, out
    assert out.count(" vs PyTorch (") >= times, out
    assert "failed" not in out


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("any")
    torch.manual_seed(0)
    listed = randomise(ListUNet())
    # A training script's checkpoint: DataParallel keys, wrapped beside the optimiser's epoch.
    wrapped = {f"module.{k}": v for k, v in listed.state_dict().items()}
    torch.save({"model": wrapped, "epoch": 7}, folder / "list.pkl")
    flat = randomise(FlatUNet())
    torch.save(flat.state_dict(), folder / "flat.pth")
    return folder, listed, flat


def test_state_dict_and_class_both_ways(files, capsys, tmp_path) -> None:
    """A wrapped .pkl checkpoint with DataParallel keys, its class importable; then the reverse
    into the class named by file path, loaded strictly, computing what the source computes."""
    folder, listed, _ = files
    out_file = tmp_path / "list.safetensors"
    code, out, err = _port(capsys, folder / "list.pkl", out_file, "--source-model", LIST)
    assert code == 0, err
    _proven(out)
    assert "spec read from its graph" in out
    assert "the Keras twin not run" in out  # proven against its class: no TensorFlow needed
    back = tmp_path / "back.pth"
    code, out, err = _port(capsys, out_file, back, "--source-model", f"{FILE}:ListUNet")
    assert code == 0, err
    _proven(out)
    model = ListUNet()
    model.load_state_dict(torch.load(back, weights_only=True), strict=True)
    x = torch.rand(1, 3, 45, 45)
    with torch.no_grad():
        assert torch.equal(model.eval()(x), listed(x))


def test_class_from_a_file_with_a_sigmoid_in_forward(files, capsys, tmp_path) -> None:
    folder, _, flat = files
    dst = tmp_path / "flat.safetensors"
    code, out, err = _port(capsys, folder / "flat.pth", dst, "--source-model", f"{FILE}:FlatUNet")
    assert code == 0, err
    _proven(out)
    assert "(sigmoid)" in out
    weights, spec, *_ = load_any_weights(dst)
    assert spec.head == "sigmoid" and spec.upsample == "nearest" and spec.up_conv_kernel == 2
    np.testing.assert_array_equal(
        weights["head.weight"], flat.layers["out"].weight.detach().numpy()
    )


@pytest.mark.parametrize("key", ["state_dict", "model_state_dict", "net"])
def test_checkpoint_wrappers_give_the_state_dict(key) -> None:
    state = {"module.conv.weight": torch.ones(2, 1, 3, 3), "module.conv.bias": torch.zeros(2)}
    tensors, other = tio.state_of({key: state, "optimizer": {"lr": 0.1}, "epoch": 3})
    assert sorted(tensors) == ["conv.bias", "conv.weight"] and other == []


def test_files_that_carry_their_graph_need_no_flags(capsys, tmp_path) -> None:
    """TorchScript (traced) and a torch.export program, each proven against the loaded module."""
    torch.manual_seed(1)
    flat = randomise(FlatUNet())
    script = tmp_path / "flat.pt"
    torch.jit.trace(flat, torch.rand(1, 1, 32, 32)).save(str(script))
    code, out, err = _port(capsys, script, tmp_path / "script.safetensors")
    assert code == 0, err
    _proven(out)
    assert "the TorchScript module in flat.pt vs PyTorch" in out

    bilinear = randomise(BilinearUNet())
    dims = {
        "x": {2: torch.export.Dim("h", min=16, max=512), 3: torch.export.Dim("w", min=16, max=512)}
    }
    program = torch.export.export(bilinear, (torch.rand(1, 3, 48, 48),), dynamic_shapes=dims)
    exported = tmp_path / "bilinear.pt2"
    torch.export.save(program, exported)
    code, out, err = _port(capsys, exported, tmp_path / "exported.safetensors")
    assert code == 0, err
    _proven(out)
    weights, spec, *_ = load_any_weights(tmp_path / "exported.safetensors")
    assert spec.norm == "batch" and spec.act_before_norm and spec.bn_epsilon == 1e-3


def test_onnx_with_batch_norm_folded(capsys, tmp_path) -> None:
    """torch.onnx folds batch norm into the convs: read as convs with bias, noted, proven against
    onnxruntime at two sizes (the input is dynamic)."""
    torch.manual_seed(2)
    model = randomise(MilesialUNet(3, 2, base=4, depth=2))
    dims = {
        "x": {2: torch.export.Dim("h", min=16, max=512), 3: torch.export.Dim("w", min=16, max=512)}
    }
    path = tmp_path / "milesial.onnx"
    with contextlib.redirect_stdout(io.StringIO()):
        torch.onnx.export(model, (torch.rand(1, 3, 32, 32),), path, input_names=["x"],
                          dynamic_shapes=dims)  # fmt: skip
    code, out, err = _port(capsys, path, tmp_path / "onnx.safetensors")
    assert code == 0, err
    _proven(out)
    assert "onnxruntime on milesial.onnx vs PyTorch" in out
    assert "batch norm folded into the convs" in out
    _, spec, *_ = load_any_weights(tmp_path / "onnx.safetensors")
    assert spec.norm == "none" and spec.conv_bias and spec.skip_merge == "pad"


@pytest.mark.parametrize("preset", ["seed-small", "paper-small"])
def test_onnx_crops_and_resizes_measured_at_its_size(capsys, tmp_path, preset) -> None:
    """A fixed-size ONNX model whose skips are resized (the starting model) or centre-cropped (the
    paper's): the sizes the exporter computes are measured by running it, and the proof runs at
    the file's own size."""
    from unet_bridge.parity import torch_model
    from unet_spec import get_preset, random_weights

    spec = get_preset(preset).replace(depth=2, base_filters=4, dropout_at=("mid",))
    size = spec.plan().nearest_valid_size(40)
    model = torch_model(spec, random_weights(spec, seed=5))
    path = tmp_path / f"{preset}.onnx"
    with contextlib.redirect_stdout(io.StringIO()):
        torch.onnx.export(model, (torch.rand(1, spec.in_channels, size, size),), path)
    code, out, err = _port(capsys, path, tmp_path / "out.safetensors")
    assert code == 0, err
    _proven(out, times=1)
    assert f"at {size}x{size}" in out
    _, read, *_ = load_any_weights(tmp_path / "out.safetensors")
    assert read.replace(head=spec.head, dropout=spec.dropout) == spec


def test_keras_builder_with_its_weights_file(capsys, tmp_path) -> None:
    """keras-unet's custom_unet as the builder, its .weights.h5 (no graph in the file): the model
    is built, loaded by its own load_weights and read from its layer graph."""
    models = pytest.importorskip("keras_unet.models")
    args = '{"input_shape": [32, 32, 3], "filters": 4, "num_layers": 2, "num_classes": 2, ' \
           '"output_activation": "softmax"}'  # fmt: skip
    model = models.custom_unet(input_shape=(32, 32, 3), filters=4, num_layers=2, num_classes=2,
                               output_activation="softmax")  # fmt: skip
    rng = np.random.default_rng(0)
    # Kernels around 0; norm parameters and statistics in [0.5, 1.5] (a variance must be positive).
    model.set_weights([(rng.uniform(0.5, 1.5, w.shape) if w.ndim == 1 else rng.normal(0, 0.3, w.shape))
                       .astype("float32") for w in model.get_weights()])  # fmt: skip
    src = tmp_path / "custom.weights.h5"
    model.save_weights(src)
    dst = tmp_path / "keras.safetensors"
    argv = [src, dst, "--source-model", "keras_unet.models:custom_unet", "--source-args", args]
    code, out, err = _port(capsys, *argv)
    assert code == 0, err
    _proven(out, times=1)  # a Keras model built for 32x32 runs at that size only
    assert "source model vs PyTorch (softmax)" in out


def test_monai_basicunet_through_the_graph(capsys, tmp_path) -> None:
    nets = pytest.importorskip("monai.networks.nets")
    torch.manual_seed(3)
    features = [4, 4, 8, 8, 16, 4]
    model = randomise(nets.BasicUNet(spatial_dims=2, features=features))
    src = tmp_path / "basic.pth"
    torch.save(model.state_dict(), src)
    args = f'{{"spatial_dims": 2, "features": {features}}}'
    code, out, err = _port(capsys, src, tmp_path / "basic.safetensors", "--from", "graph",
                           "--source-model", "monai.networks.nets:BasicUNet", "--source-args", args)  # fmt: skip
    assert code == 0, err
    _proven(out)
    assert "spec read from its graph" in out


# -- refusals ---------------------------------------------------------------------------------------
def test_wrong_class_arguments_name_the_keys(files, capsys, tmp_path) -> None:
    folder, _, _ = files
    dst = tmp_path / "out.safetensors"
    code, out, err = _port(capsys, folder / "list.pkl", dst, "--source-model", LIST,
                           "--source-args", '{"depth": 2}')  # fmt: skip
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "Unexpected key(s)" in err and "encoder.3" in err
    assert not dst.exists()


def test_a_model_the_spec_cannot_express_names_every_mismatch(capsys, tmp_path) -> None:
    """A 5x5 first conv and a grouped decoder conv, in a class written to a file here."""
    (tmp_path / "odd_flat.py").write_text(
        "import torch\n"
        "from tests.peers.plain_unets import FlatUNet\n"
        "def build():\n"
        "    m = FlatUNet()\n"
        "    m.layers['c1a'] = torch.nn.Conv2d(1, 4, 5, padding=2)\n"
        "    m.layers['d2b'] = torch.nn.Conv2d(8, 8, 3, padding=1, groups=2)\n"
        "    return m\n"
    )
    import importlib.util

    spec = importlib.util.spec_from_file_location("odd_flat_here", tmp_path / "odd_flat.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    torch.save(module.build().state_dict(), tmp_path / "odd.pth")
    dst = tmp_path / "out.safetensors"
    code, _, err = _port(capsys, tmp_path / "odd.pth", dst, "--source-model",
                         f"{tmp_path / 'odd_flat.py'}:build")  # fmt: skip
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "layers.c1a" in err and "5x5" in err
    assert "layers.d2b" in err and "groups" in err
    assert not dst.exists()


def test_a_wrong_mapping_never_lands(files, capsys, tmp_path, monkeypatch) -> None:
    """Two tensors swapped on the way: the proof against the class refuses the port (exit 1)."""
    import unet_torch.graph as graph

    folder, _, _ = files
    real = graph.canonical_weights

    def swapped(state, mapping):
        weights = real(state, mapping)
        a, b = "enc1.norm1.weight", "enc1.norm1.bias"
        weights[a], weights[b] = weights[b], weights[a]
        return weights

    monkeypatch.setattr(graph, "canonical_weights", swapped)
    dst = tmp_path / "out.safetensors"
    code, out, _ = _port(capsys, folder / "list.pkl", dst, "--source-model", LIST)
    assert code == 1 and "verification failed, nothing written" in out
    assert list(tmp_path.iterdir()) == []


def test_this_projects_own_export_keeps_its_meaning(capsys, tmp_path) -> None:
    """An .onnx written by `unet export` is a deployment artefact, not a model from elsewhere."""
    from unet_bridge.export import EXPORTS
    from unet_spec import get_preset, random_weights

    spec = get_preset("modern-small").replace(depth=2, base_filters=4)
    own = tmp_path / "own.onnx"
    EXPORTS[".onnx"].fmt.write(random_weights(spec), spec, own, 32)
    code, _, err = _port(capsys, own, tmp_path / "out.safetensors")
    assert code == 2 and "deployment artefact" in err
