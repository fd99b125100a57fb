"""Fine-tuning: a run starts from anything ``unet port`` reads, proven against its source, fitted to
the task (head, input channels), with the encoder frozen and unfrozen through Lightning, and its
run folder names its origin.

Each source is built once per module, on a small spec (depth 2, base 4). The end-to-end test is the
documented command: ``train.py fit --config configs/finetune.yaml --model.init_from carvana.pth
--data.root DIR`` on a milesial-layout stand-in file and a folder a user brings.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
from PIL import Image

from tests.peers.milesial_layout import UNet as MilesialUNet
from tests.peers.milesial_layout import randomise
from unet_bridge.card import find_metrics
from unet_bridge.formats import save_any_weights
from unet_spec import UNetSpec, get_preset, load_weights, random_weights, save_weights
from unet_train.cli import start_from_checkpoint
from unet_train.data import SyntheticDataModule
from unet_train.finetune import FreezeEncoder, encoder_levels
from unet_train.init_from import adapt_input_conv, start_from
from unet_train.system import SegmentationSystem

REPO = Path(__file__).resolve().parents[1]
SPEC = get_preset("modern-small").replace(depth=2, base_filters=4)
STANDIN = "tests.peers.milesial_layout:UNet"
STANDIN_ARGS = {"n_channels": 3, "n_classes": 2, "base": 4, "depth": 2}


class ShiftedMilesial(MilesialUNet):
    """The stand-in with its logits moved a little: a source the twin does not compute."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x) + 1e-3


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("finetune")


@pytest.fixture(scope="module")
def canonical(folder) -> Path:
    return save_weights(random_weights(SPEC, seed=3), SPEC, folder / "base.safetensors")


@pytest.fixture(scope="module")
def milesial_file(folder) -> Path:
    torch.manual_seed(0)
    model = randomise(MilesialUNet(3, 2, False, base=4, depth=2))
    path = folder / "carvana.pth"
    torch.save(model.state_dict(), path)
    return path


# -- each kind of source ---------------------------------------------------------------------------
def test_canonical_file_loads_every_tensor(canonical) -> None:
    system = SegmentationSystem(preset=None, init_from=str(canonical))
    weights, spec = load_weights(canonical)
    assert system.spec == spec
    state = system.model.state_dict()
    for name, value in weights.items():
        np.testing.assert_array_equal(state[name].numpy(), value, err_msg=name)
    base = system.base_model
    assert base["sha256"] == _sha256(canonical) and base["file"] == str(canonical)
    assert base["changes"] == [] and "own weights" in base["proven"]


def test_hub_folder_is_hashed_by_its_weights(folder, canonical) -> None:
    weights, spec = load_weights(canonical)
    hub = save_any_weights(weights, spec, folder / "my-unet")
    start = start_from(str(hub))
    assert start.spec == spec and start.base.kind.startswith("hub folder")
    assert start.base.sha256 == _sha256(hub / "model.safetensors")
    for name, value in weights.items():
        np.testing.assert_array_equal(start.weights[name], value, err_msg=name)


def test_layout_from_elsewhere_is_proven_against_its_class(milesial_file) -> None:
    start = start_from(str(milesial_file), source_model=STANDIN, source_args=STANDIN_ARGS)
    assert start.base.kind == "milesial layout"
    assert start.base.proven.startswith("proven: ") and " vs PyTorch (" in start.base.proven
    assert start.spec.base_filters == 4 and start.spec.depth == 2 and start.changes == []
    unproven = start_from(str(milesial_file))
    assert "not proven against milesial's own code" in unproven.base.proven
    assert "model.init_source_model" in unproven.line()


def test_a_source_the_twin_does_not_compute_is_refused(milesial_file) -> None:
    with pytest.raises(ValueError, match="does not compute what the source computes"):
        start_from(str(milesial_file), source_model="tests.test_finetune:ShiftedMilesial",
                   source_args=STANDIN_ARGS)  # fmt: skip


def test_keras_file_is_proven_against_the_model_it_holds(folder, canonical) -> None:
    pytest.importorskip("keras")
    weights, spec = load_weights(canonical)
    path = save_any_weights(weights, spec, folder / "base.keras", input_size=32)
    start = start_from(str(path))
    assert start.spec == spec and start.base.kind == "Keras model"
    assert start.base.proven.startswith("proven: ") and " vs PyTorch (" in start.base.proven
    for name, value in weights.items():
        np.testing.assert_array_equal(start.weights[name], value, err_msg=name)


# -- another task from the same network ------------------------------------------------------------
def test_other_classes_and_channels_change_the_head_and_first_conv(canonical) -> None:
    weights, _ = load_weights(canonical)
    grey = start_from(str(canonical), num_classes=5, in_channels=1)
    assert (grey.spec.num_classes, grey.spec.in_channels) == (5, 1)
    assert "head.weight" not in grey.weights and "head.bias" not in grey.weights
    first = "enc1.conv1.weight"
    np.testing.assert_array_equal(grey.weights[first], weights[first].sum(1, keepdims=True))
    untouched = set(weights) - {first, "head.weight", "head.bias"}
    for name in untouched:
        np.testing.assert_array_equal(grey.weights[name], weights[name], err_msg=name)
    assert [c.split(" ")[0] for c in grey.changes] == ["head", "first"]
    assert "5 classes (the base model has 2)" in grey.changes[0] and "summed" in grey.changes[1]
    # More channels than the base model: its kernels repeated, scaled so alike channels add up
    # to the same response.
    four = start_from(str(canonical), in_channels=4).weights[first]
    np.testing.assert_allclose(four[:, :3], weights[first] * 0.75, rtol=1e-6)
    np.testing.assert_allclose(four[:, 3], weights[first][:, 0] * 0.75, rtol=1e-6)
    # A one-class sigmoid model given more classes gets a softmax head.
    sigmoid = SPEC.replace(num_classes=1, head="sigmoid")
    path = save_weights(random_weights(sigmoid), sigmoid, canonical.with_name("s.safetensors"))
    assert start_from(str(path), num_classes=2).changes == []  # binary data: the same task
    assert start_from(str(path), num_classes=4).spec.head == "softmax"


def test_adapt_input_conv_keeps_the_response_to_alike_channels() -> None:
    weight = np.random.default_rng(1).normal(size=(4, 3, 3, 3)).astype(np.float32)
    patch = np.random.default_rng(2).random((3, 3)).astype(np.float32)
    response = np.einsum("oihw,hw->o", weight, patch)  # every channel of the image alike
    for channels in (1, 6, 9):
        adapted = adapt_input_conv(weight, channels)
        assert adapted.shape == (4, channels, 3, 3)
        np.testing.assert_allclose(np.einsum("oihw,hw->o", adapted, patch), response, rtol=1e-5)
    assert adapt_input_conv(weight, 2).shape == (4, 2, 3, 3)


def test_contradicting_spec_is_refused_and_agreeing_one_accepted(canonical) -> None:
    with pytest.raises(ValueError, match=r"depth \(base model 2, given 4\), base_filters"):
        start_from(str(canonical), preset="modern-small")
    with pytest.raises(ValueError, match=r"model.spec contradicts .*dropout \(base model 0.0"):
        start_from(str(canonical), overrides={"dropout": 0.3})
    with pytest.raises(ValueError, match="unknown field"):
        start_from(str(canonical), overrides={"depht": 2})
    agreed = start_from(str(canonical), "modern-small", {"depth": 2, "base_filters": 4},
                        num_classes=3)  # fmt: skip
    assert agreed.spec == SPEC.replace(num_classes=3)
    assert start_from(str(canonical), overrides={"padding": "same", "num_classes": 3}).spec == (
        SPEC.replace(num_classes=3)
    )
    with pytest.raises(ValueError, match="need model.init_from"):
        SegmentationSystem(init_source_model=STANDIN)
    with pytest.raises(ValueError, match="needs model.preset, model.spec or model.init_from"):
        SegmentationSystem(preset=None)  # configs/finetune.yaml without --model.init_from


# -- freezing and unfreezing through Lightning ----------------------------------------------------
class Recorder(L.Callback):
    def __init__(self) -> None:
        self.states: list[dict[str, torch.Tensor]] = []
        self.rates: list[tuple[float, ...]] = []

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self.states.append({k: v.clone() for k, v in pl_module.model.state_dict().items()})

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.rates.append(tuple(g["lr"] for g in trainer.optimizers[0].param_groups))


def test_encoder_frozen_then_unfrozen_on_the_schedule(tmp_path, canonical) -> None:
    L.seed_everything(0)
    system = SegmentationSystem(preset=None, init_from=str(canonical), num_classes=3)
    start = {k: v.clone() for k, v in system.model.state_dict().items()}
    data = SyntheticDataModule(num_train=8, num_val=2, image_size=32, num_classes=3,
                               crop_size=32, batch_size=4)  # fmt: skip
    recorder = Recorder()
    trainer = L.Trainer(
        max_epochs=2, limit_val_batches=0, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False,
        callbacks=[FreezeEncoder(unfreeze_at_epoch=1, lr_factor=0.1), recorder],
    )  # fmt: skip
    trainer.fit(system, data)
    frozen, after = recorder.states
    encoder = tuple(f"{level}." for level in encoder_levels(system.model))
    assert encoder == ("enc1.", "enc2.", "mid.")
    names = [k for k in start if not k.endswith("num_batches_tracked")]
    for name in names:  # weights, batch-norm scale, shift and running statistics
        if name.startswith(encoder):
            assert torch.equal(frozen[name], start[name]), f"{name} changed while frozen"
            assert not torch.equal(after[name], frozen[name]), f"{name} unchanged after unfreezing"
        else:
            assert not torch.equal(frozen[name], start[name]), f"{name} did not train"
    # The unfrozen encoder's group follows the schedule at a tenth of the rate.
    steps = len(recorder.rates) // 2
    assert all(len(r) == 1 for r in recorder.rates[:steps])
    later = recorder.rates[steps:]
    assert all(len(r) == 2 for r in later) and len({r[0] for r in later}) == len(later)
    for lr, lr_encoder in later:
        assert lr_encoder == pytest.approx(0.1 * lr, rel=1e-12)
    # The checkpoint rebuilds the fine-tuned model without the base model's file.
    ckpt = tmp_path / "run.ckpt"
    trainer.save_checkpoint(ckpt)
    moved = canonical.rename(canonical.with_name("moved.safetensors"))
    try:
        back = SegmentationSystem.load_from_checkpoint(ckpt)
    finally:
        moved.rename(canonical)
    assert back.spec == system.spec and back.base_model == system.base_model
    for name, value in system.model.state_dict().items():
        assert torch.equal(back.model.state_dict()[name], value), name
    # train.py given the checkpoint (resume, validate, test, predict) builds from it likewise.
    config = {"model": {"init_from": "moved.safetensors", "preset": None, "spec": None},
              "ckpt_path": str(ckpt)}  # fmt: skip
    start_from_checkpoint(config)
    assert config["model"]["init_from"] is None
    assert UNetSpec.from_dict(config["model"]["spec"]) == system.spec


# -- the documented command ------------------------------------------------------------------------
def _user_folder(root: Path, n: int = 6, size: int = 40) -> Path:
    """Grey .png images with class-id masks of three classes: a task the base model (RGB, two
    classes) was not trained for."""
    rng = np.random.default_rng(0)
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for i in range(n):
        mask = np.zeros((size, size), np.uint8)
        mask[4 : 16 + i, 5:20] = 1
        mask[22:34, 20 : 36 - i] = 2
        image = (rng.random((size, size)) * 60 + mask * 80).astype(np.uint8)
        Image.fromarray(image).save(root / "images" / f"img{i}.png")
        Image.fromarray(mask).save(root / "masks" / f"img{i}.png")
    return root


def test_train_py_fine_tunes_a_ported_model_on_a_users_folder(
    tmp_path, milesial_file, run_train
) -> None:
    data = _user_folder(tmp_path / "cells")
    base = tmp_path / "carvana.pth"
    base.write_bytes(milesial_file.read_bytes())
    # train.py's command in this process (conftest.py's run_train): nothing here needs a process
    # of its own, and a fresh interpreter would cost more than the run.
    proc = run_train(
        tmp_path, "fit", "--config", str(REPO / "configs/finetune.yaml"),
        "--model.init_from", "carvana.pth", "--data.root", str(data),
        "--model.init_source_model", STANDIN, "--model.init_source_args", json.dumps(STANDIN_ARGS),
        "--trainer.max_epochs", "3", "--data.init_args.samples_per_epoch", "4",
        "--data.init_args.batch_size", "2", "--trainer.enable_progress_bar", "false",
        "--artifacts.keras_export", "false",
    )  # fmt: skip
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    line = next(x for x in out.splitlines() if x.startswith("model.init_from carvana.pth"))
    assert "milesial layout" in line and "proven: tests.peers.milesial_layout:UNet" in line
    assert "head re-initialised for 3 classes" in line and "1 input channel" in line
    assert "encoder unfrozen at epoch 2" in out
    run = tmp_path / "runs" / "cells" / "version_0"
    metrics = json.loads((run / "metrics.json").read_text())
    base_model = metrics["base_model"]
    assert base_model["name"] == "carvana.pth" and base_model["sha256"] == _sha256(base)
    assert metrics["global_step"] == 6
    card = (run / "README.md").read_text()
    header = card.split("---")[1]
    assert "base_model: carvana.pth" in header and base_model["sha256"] in card
    # A hub folder made from the run carries them.
    weights, spec = load_weights(run / "model.safetensors")
    assert (spec.in_channels, spec.num_classes, spec.base_filters) == (1, 3, 4)
    hub = save_any_weights(weights, spec, tmp_path / "hub", options={
        "metrics": find_metrics(run / "model.safetensors"), "name": "hub"})  # fmt: skip
    hub_card = (hub / "README.md").read_text()
    assert (
        "base_model: carvana.pth" in hub_card.split("---")[1] and base_model["sha256"] in hub_card
    )
