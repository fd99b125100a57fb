"""Hub folders (``config.json``, ``model.safetensors``, ``README.md``): every way in and out, offline.

Folder → PyTorch (``UNet.from_pretrained``), folder → Keras (``unet_keras.from_pretrained``),
checkpoint → folder (``unet port``, verified), ``torch.hub`` from the local repository, a hub id
through huggingface_hub's cache with the network off, a training run's folder, and bad folders
refused with one line (exit 2 from ``unet``). Nothing here reaches the network, and ``push_to_hub``
is never called.
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from unet_bridge import FORMATS, format_of, load_any_weights, random_input, save_any_weights
from unet_cli.main import main
from unet_spec import UNetSpec, check_against_noise, get_preset, label_rule, random_weights
from unet_spec import hub as hub_folder

ROOT = Path(__file__).resolve().parents[1]
# Batch norm (running statistics, the counter canonical files leave out) and transposed convs.
SPEC = get_preset("modern-small").replace(depth=2, base_filters=4)
SIZE = 32


@pytest.fixture(scope="module")
def weights() -> dict[str, np.ndarray]:
    return random_weights(SPEC, seed=5)


@pytest.fixture(scope="module")
def folder(tmp_path_factory, weights) -> Path:
    """A hub folder written (unverified) through the registry."""
    path = tmp_path_factory.mktemp("hub") / "my-unet"
    save_any_weights(weights, SPEC, path)
    return path


def _torch_model(weights):
    from unet_torch import UNet, load_canonical

    return load_canonical(UNet(SPEC), weights).eval()


def _assert_same(actual: dict, expected: dict) -> None:
    assert sorted(actual) == sorted(expected)
    for name, value in expected.items():
        np.testing.assert_array_equal(actual[name], value, err_msg=name)


# -- the layout ----------------------------------------------------------------------------------
def test_registry_writes_the_layout(folder, weights) -> None:
    from huggingface_hub import ModelCard

    assert sorted(p.name for p in folder.iterdir()) == ["README.md", "config.json",
                                                        "model.safetensors"]  # fmt: skip
    assert sorted(p.name for p in folder.parent.iterdir()) == ["my-unet"]  # no temporary folder
    config = json.loads((folder / "config.json").read_text())
    assert config["model_class"] == "unet_torch.UNet"
    assert UNetSpec.from_dict(config["spec"]) == SPEC
    loaded, spec, reference, _ = load_any_weights(folder)
    assert spec == SPEC and reference is None
    _assert_same(loaded, weights)
    card = ModelCard.load(folder / "README.md")  # the metadata hubs index
    assert card.data.library_name == "unet-twins" and card.data.license == "mit"
    assert card.data.pipeline_tag == "image-segmentation" and "unet" in card.data.tags
    assert 'UNet.from_pretrained("PATH")' in card.text  # no name given: the placeholder


def test_format_of_a_folder(tmp_path) -> None:
    hub = FORMATS["/"]
    assert format_of(tmp_path) is hub  # an existing folder
    assert format_of("my-unet/") is hub and format_of("my-unet") is hub
    assert format_of("out.savedmodel").suffix == ".savedmodel"
    with pytest.raises(ValueError, match="unknown extension '.npz'"):
        format_of("w.npz")


# -- PyTorch ---------------------------------------------------------------------------------------
def test_construction_and_state_dict_are_unchanged(weights) -> None:
    from unet_torch import UNet, canonical_state

    model = UNet(SPEC)
    names = set(model.plan.weight_shapes)
    counters = {k for k in model.state_dict() if k.endswith("num_batches_tracked")}
    assert set(model.state_dict()) == names | counters
    assert UNet(SPEC, recompute=("enc1",)).recompute == ("enc1",)
    twin = copy.deepcopy(_torch_model(weights))
    _assert_same(canonical_state(twin), weights)


def test_torch_save_and_load_pretrained(tmp_path, weights) -> None:
    from huggingface_hub import ModelCard

    from unet_spec import load_weights
    from unet_torch import UNet, canonical_state

    model = _torch_model(weights)
    model.save_pretrained(tmp_path / "saved")
    config = json.loads((tmp_path / "saved" / "config.json").read_text())
    assert UNetSpec.from_dict(config["spec"]) == SPEC  # the spec round-trips through the config
    stored, spec = load_weights(tmp_path / "saved" / "model.safetensors")  # canonical, spec inside
    assert spec == SPEC
    _assert_same(stored, weights)
    card = ModelCard.load(tmp_path / "saved" / "README.md")
    assert card.data.pipeline_tag == "image-segmentation"
    assert card.data.library_name == "unet-twins"
    loaded = UNet.from_pretrained(tmp_path / "saved")
    assert isinstance(loaded, UNet) and loaded.spec == SPEC and not loaded.training
    _assert_same(canonical_state(loaded), weights)
    with_kwargs = UNet.from_pretrained(str(tmp_path / "saved"), recompute=("enc1",))
    assert with_kwargs.recompute == ("enc1",)


def test_push_to_hub_is_the_mixins() -> None:
    from huggingface_hub import ModelHubMixin

    from unet_torch import UNet

    assert UNet.push_to_hub is ModelHubMixin.push_to_hub  # documented, never called here


# -- both twins from one folder ----------------------------------------------------------------------
def test_folder_to_both_twins_within_the_parity_rule(folder) -> None:
    import torch

    import unet_keras
    from unet_torch import UNet, float64_reference

    x = random_input(SPEC, SIZE, seed=3)
    torch_model = UNet.from_pretrained(folder)
    with torch.no_grad():
        logits = torch_model(torch.from_numpy(x)).numpy()
    logits64 = float64_reference(torch_model, torch.from_numpy(x)).numpy()
    keras_model = unet_keras.from_pretrained(folder)
    keras_logits = unet_keras.to_nchw(np.asarray(keras_model(unet_keras.to_nhwc(x))))
    check = check_against_noise(keras_logits, logits, logits64, labels=label_rule(SPEC, False))
    assert check.passed, check


def test_keras_written_folder_round_trips_bit_exact(tmp_path, weights) -> None:
    import unet_keras
    from unet_torch import UNet, canonical_state

    keras_model = unet_keras.from_canonical(unet_keras.build_unet(SPEC), weights, SPEC)
    unet_keras.save_pretrained(keras_model, tmp_path / "from-keras", SPEC, with_keras=True)
    assert sorted(p.name for p in (tmp_path / "from-keras").iterdir()) == [
        "README.md", "config.json", "model.keras", "model.safetensors"]  # fmt: skip
    torch_model = UNet.from_pretrained(tmp_path / "from-keras")
    _assert_same(canonical_state(torch_model), weights)
    torch_model.save_pretrained(tmp_path / "from-torch")
    back = unet_keras.from_pretrained(tmp_path / "from-torch")
    _assert_same(unet_keras.to_canonical(back, SPEC), weights)
    with pytest.raises(ValueError, match="already exists"):
        unet_keras.save_pretrained(keras_model, tmp_path / "from-keras", SPEC)


# -- unet port -----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def run_checkpoint(tmp_path_factory, weights) -> Path:
    """A checkpoint laid out as a training run leaves it, with the run's metrics.json."""
    run = tmp_path_factory.mktemp("runs") / "demo" / "version_0"
    (run / "checkpoints").mkdir(parents=True)
    ckpt = run / "checkpoints" / "best.ckpt"
    save_any_weights(weights, SPEC, ckpt)
    metrics = {
        "monitor": "val/dice",
        "best": {"epoch": 3, "val/dice": 0.8125, "val/miou": 0.7, "val/loss": 0.3},
        "last": {"epoch": 4, "val/dice": 0.8, "val/miou": 0.69},
        "epochs": 5,
        "data": {"module": "SyntheticDataModule", "num_train": 8},
    }
    (run / "metrics.json").write_text(json.dumps(metrics))
    return ckpt


def test_port_checkpoint_to_folder_and_folder_to_keras(tmp_path, capsys, run_checkpoint, weights):
    from huggingface_hub import ModelCard

    dst = tmp_path / "my-unet"
    assert main(["port", str(run_checkpoint), f"{dst}/", "--with-keras"]) == 0
    out = capsys.readouterr().out
    assert "(hub folder)" in out and "model.keras: reload bit-exact" in out
    assert sorted(p.name for p in tmp_path.iterdir()) == ["my-unet"]
    assert sorted(p.name for p in dst.iterdir()) == [
        "README.md", "config.json", "model.keras", "model.safetensors"]  # fmt: skip
    card = ModelCard.load(dst / "README.md")
    assert card.data.datasets == ["synthetic"] and card.data.metrics == ["dice", "mean_iou"]
    dice = [r for r in card.data.eval_results if r.metric_type == "dice"]
    assert [r.metric_value for r in dice] == [0.8125]
    assert "verified: reload bit-exact" in card.text and "## Training" in card.text
    reference = load_any_weights(dst / "model.keras").reference
    assert reference is not None and reference.keras_model is not None

    back = tmp_path / "model.keras"
    assert main(["port", str(dst), str(back)]) == 0
    ported, spec, *_ = load_any_weights(back)
    assert spec == SPEC
    _assert_same(ported, weights)


def test_a_folder_whose_keras_file_is_wrong_is_not_written(
    tmp_path, capsys, run_checkpoint, plant_keras_weights
) -> None:
    def shift(weights) -> None:
        weights["head.bias"] = weights["head.bias"] + np.float32(1e-3)

    plant_keras_weights(shift)
    assert main(["port", str(run_checkpoint), str(tmp_path / "my-unet"), "--with-keras"]) == 1
    assert "verification failed, nothing written" in capsys.readouterr().out
    assert list(tmp_path.iterdir()) == []


def test_port_refuses_an_existing_folder_and_with_keras_elsewhere(
    tmp_path, capsys, run_checkpoint
) -> None:
    (tmp_path / "taken").mkdir()
    assert main(["port", str(run_checkpoint), str(tmp_path / "taken")]) == 2
    assert "already exists" in capsys.readouterr().err
    assert main(["port", str(run_checkpoint), str(tmp_path / "o.pt"), "--with-keras"]) == 2
    assert "not a hub folder" in capsys.readouterr().err


# -- bad folders --------------------------------------------------------------------------------
def _damage(folder: Path, tmp_path: Path, how: str) -> Path:
    import shutil

    from safetensors.numpy import save

    bad = tmp_path / f"bad-{how}"
    shutil.copytree(folder, bad)
    if how == "no-config":
        (bad / "config.json").unlink()
    elif how == "other-spec":
        config = json.loads((bad / "config.json").read_text())
        config["spec"]["base_filters"] = 8
        (bad / "config.json").write_text(json.dumps(config))
    elif how == "truncated":
        data = (bad / "model.safetensors").read_bytes()
        (bad / "model.safetensors").write_bytes(data[: len(data) // 2])
    elif how == "missing-tensor":
        stored, _ = hub_folder.load_hub_folder(folder)
        del stored["enc1.conv1.bias"]
        stored["extra.weight"] = np.zeros(3, np.float32)
        metadata = {"format": "unet-canonical", "format_version": "1", "spec": SPEC.to_json()}
        (bad / "model.safetensors").write_bytes(save(stored, metadata=metadata))
    return bad


BAD = {
    "no-config": "no config.json",
    "other-spec": "base_filters: weights 4 vs config.json 8",
    "truncated": "not a readable safetensors file",
    "missing-tensor": "missing enc1.conv1.bias; unexpected extra.weight",
}


@pytest.mark.parametrize("how", sorted(BAD))
def test_bad_folders_are_one_line_errors(folder, tmp_path, capsys, how) -> None:
    import unet_keras
    from unet_torch import UNet

    bad = _damage(folder, tmp_path, how)
    for load in (UNet.from_pretrained, unet_keras.from_pretrained):
        with pytest.raises((ValueError, FileNotFoundError)) as err:
            load(bad)
        message = str(err.value)
        assert BAD[how] in message and str(bad) in message and "\n" not in message
    assert main(["port", str(bad), str(tmp_path / "out.safetensors")]) == 2
    err_lines = capsys.readouterr().err.strip().splitlines()
    assert len(err_lines) == 1 and err_lines[0].startswith("unet port: error:")
    assert BAD[how] in err_lines[0]
    assert not (tmp_path / "out.safetensors").exists()


def test_a_missing_local_folder_is_named(tmp_path) -> None:
    import unet_keras
    from unet_torch import UNet

    for load in (UNet.from_pretrained, unet_keras.from_pretrained):
        with pytest.raises(FileNotFoundError, match="no such folder"):
            load(tmp_path / "nothing" / "here")


# -- hub ids and torch.hub, with the network off ------------------------------------------------------
def _cached_repo(cache: Path, folder: Path, repo_id: str) -> None:
    """``folder`` laid out as huggingface_hub's cache holds a downloaded repository
    (``models--OWNER--NAME/refs/main`` naming a snapshot folder of its files)."""
    import shutil

    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    shutil.copytree(folder, repo / "snapshots" / commit)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)


def test_hub_id_through_the_cache(folder, tmp_path, weights) -> None:
    import unet_keras
    from unet_torch import UNet, canonical_state

    _cached_repo(tmp_path, folder, "acme/unet-demo")
    model = UNet.from_pretrained("acme/unet-demo", cache_dir=tmp_path, local_files_only=True)
    _assert_same(canonical_state(model), weights)
    keras_model = unet_keras.from_pretrained(
        "acme/unet-demo", cache_dir=tmp_path, local_files_only=True
    )
    _assert_same(unet_keras.to_canonical(keras_model, SPEC), weights)
    for load in (UNet.from_pretrained, unet_keras.from_pretrained):
        with pytest.raises(FileNotFoundError, match="not in the hub cache") as err:
            load("acme/missing", cache_dir=tmp_path, local_files_only=True)
        assert "\n" not in str(err.value)


def test_torch_hub_local(folder, tmp_path, weights, monkeypatch) -> None:
    import torch

    from unet_torch import UNet, canonical_state

    model = torch.hub.load(str(ROOT), "unet", source="local", preset="seed-small")
    assert isinstance(model, UNet) and model.spec == get_preset("seed-small")
    assert not model.training
    named = torch.hub.load(str(ROOT), "milesial_bilinear", source="local")
    assert named.spec == get_preset("milesial-bilinear")
    from_folder = torch.hub.load(str(ROOT), "unet", source="local", weights=str(folder))
    _assert_same(canonical_state(from_folder), weights)
    single = tmp_path / "w.safetensors"
    save_any_weights(weights, SPEC, single)
    from_file = torch.hub.load(str(ROOT), "unet", source="local", weights=str(single))
    _assert_same(canonical_state(from_file), weights)
    # A URL is downloaded once into torch.hub's cache (a file:// URL keeps the test offline).
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    from_url = torch.hub.load(str(ROOT), "unet", source="local", weights=single.as_uri(),
                              progress=False)  # fmt: skip
    _assert_same(canonical_state(from_url), weights)
    assert (tmp_path / "torch" / "hub" / "checkpoints" / "w.safetensors").is_file()
    with pytest.raises(ValueError, match="base_filters"):
        torch.hub.load(str(ROOT), "seed_small", source="local", weights=str(folder))


OFFLINE = textwrap.dedent(
    """
    import sys
    import torch
    model = torch.hub.load(sys.argv[1], "unet", source="local", weights="acme/unet-demo")
    from unet_torch import UNet
    again = UNet.from_pretrained("acme/unet-demo")
    assert torch.equal(model.state_dict()["head.weight"], again.state_dict()["head.weight"])
    assert "tensorflow" not in sys.modules and "keras" not in sys.modules
    print("loaded", model.spec.base_filters)
    """
)


def test_offline_hub_id_and_torch_hub_import_no_tensorflow(folder, tmp_path) -> None:
    """With ``HF_HUB_OFFLINE=1`` a cached hub id loads through torch.hub and ``from_pretrained``
    (no request is made), and the torch.hub entry point never imports TensorFlow."""
    _cached_repo(tmp_path / "cache", folder, "acme/unet-demo")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(tmp_path / "cache"),
           "TORCH_HOME": str(tmp_path / "torch"), "PYTHONPATH": str(ROOT)}  # fmt: skip
    proc = subprocess.run([sys.executable, "-c", OFFLINE, str(ROOT)], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"loaded {SPEC.base_filters}" in proc.stdout


# -- a training run's folder is a hub folder --------------------------------------------------------
def test_a_training_run_folder_loads_everywhere(tmp_path, run_train) -> None:
    import torch

    import unet_keras
    from unet_torch import UNet, canonical_state

    # No Keras export in this run: the run's model.keras is tested in test_train_cli.py.
    tiny = [
        "--trainer.max_steps", "2", "--trainer.limit_val_batches", "1",
        "--data.init_args.num_train", "4", "--data.init_args.num_val", "2",
        "--data.init_args.image_size", "32", "--data.init_args.crop_size", "32",
        "--data.init_args.batch_size", "2", "--data.init_args.val_batch_size", "2",
        "--trainer.enable_progress_bar", "false", "--artifacts.keras_export", "false",
    ]  # fmt: skip
    proc = run_train(tmp_path, "fit", "--config", str(ROOT / "configs/demo.yaml"), *tiny)
    assert proc.returncode == 0, proc.stderr[-3000:]
    run = tmp_path / "runs" / "demo" / "version_0"
    assert hub_folder.is_hub_folder(run)
    spec = hub_folder.read_config(run)
    torch_model = UNet.from_pretrained(run)
    weights = canonical_state(torch_model)
    _assert_same(unet_keras.to_canonical(unet_keras.from_pretrained(run), spec), weights)
    hubbed = torch.hub.load(str(ROOT), "unet", source="local", weights=str(run))
    _assert_same(canonical_state(hubbed), weights)
    from huggingface_hub import ModelCard

    card = ModelCard.load(run / "README.md")
    assert card.data.pipeline_tag == "image-segmentation" and card.data.metrics
    assert card.data.datasets == ["synthetic"] and "## Training" in card.text
