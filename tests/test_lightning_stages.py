"""Lightning's other stages: ``test`` scores like validation, ``predict`` writes the masks of
``unet predict``, the test and predict sources of the data modules, and deterministic training."""

from __future__ import annotations

from functools import partial
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
from PIL import Image

from unet_data.synthetic import make_sample
from unet_infer.masks import decode_mask
from unet_train.callbacks import AtomicCheckpointIO, MaskWriter
from unet_train.data import FolderDataModule, SyntheticDataModule
from unet_train.mask_fields import MaskFields
from unet_train.system import SegmentationSystem

ADAMW = partial(torch.optim.AdamW, lr=1e-2, weight_decay=1e-4)

SPEC = {"depth": 2, "base_filters": 4}


def _trainer(root: Path, **kw) -> L.Trainer:
    args = {
        "default_root_dir": root, "accelerator": "cpu", "devices": 1, "logger": False,
        "enable_checkpointing": False, "enable_progress_bar": False,
        "enable_model_summary": False, "num_sanity_val_steps": 0,
        "plugins": [AtomicCheckpointIO()], **kw,
    }  # fmt: skip
    return L.Trainer(**args)


def _synthetic(**kw) -> SyntheticDataModule:
    args = {"num_train": 4, "num_val": 2, "num_test": 3, "image_size": 32, "num_classes": 3,
            "crop_size": 32, "batch_size": 2, "val_batch_size": 2, **kw}  # fmt: skip
    return SyntheticDataModule(**args)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A model trained for a few steps, so its labels are not one constant class."""
    root = tmp_path_factory.mktemp("stages")
    L.seed_everything(0, verbose=False)
    system = SegmentationSystem(
        preset="modern-small", spec={**SPEC, "base_filters": 8}, num_classes=3,
        optimizer=ADAMW, scheduler=None,
    )  # fmt: skip
    _trainer(root, max_steps=12, limit_val_batches=0).fit(system, datamodule=_synthetic())
    return system.eval()


def test_test_stage_logs_the_validation_figures_under_test(tmp_path, trained):
    data = _synthetic()
    (val,) = _trainer(tmp_path).validate(trained, datamodule=data, verbose=False)
    (test,) = _trainer(tmp_path).test(trained, datamodule=data, verbose=False)
    assert {k.replace("val/", "test/", 1) for k in val} == set(test)
    assert {"test/dice", "test/dice_fg", "test/miou", "test/pixel_error", "test/loss"} <= set(test)
    assert test["test/dice_fg"] == pytest.approx((test["test/dice_1"] + test["test/dice_2"]) / 2)
    logged_apart = ("test/loss", "test/dice_mean")  # the loss, and the progress bar's copy
    assert trained.last_test == pytest.approx(
        {k: v for k, v in test.items() if k not in logged_apart}
    )
    # The test split is its own images (indices after validation), not the validation ones.
    assert [n for n, _, _ in data.test_samples] == ["synthetic#6", "synthetic#7", "synthetic#8"]
    assert test["test/pixel_error"] != val["val/pixel_error"]


def test_binary_foreground_dice_is_the_dice_of_class_1():
    system = SegmentationSystem(preset="modern-small", spec=SPEC, num_classes=2)
    labels = torch.tensor([[[0, 1, 1, 0]]])
    masks = torch.tensor([[[0, 1, 0, 0]]])
    system.val_metrics.update(labels, masks)
    summary = system.summarize(system.val_metrics.compute(), "val")
    assert float(summary["val/dice_1"]) == pytest.approx(2 / 3)  # 2·1 / (2 + 1)
    assert float(summary["val/dice_fg"]) == float(summary["val/dice_1"])
    assert float(summary["val/dice"]) == pytest.approx((0.8 + 2 / 3) / 2)  # class 0: 2·2 / (2+3)


def test_predict_writes_the_labels_of_predict_labels(tmp_path, trained):
    out = tmp_path / "masks"
    writer = MaskWriter(str(out))
    data = _synthetic()
    trainer = _trainer(tmp_path, callbacks=[writer])
    assert trainer.predict(trained, datamodule=data, return_predictions=False) is None
    # Without predict_images, the synthetic module predicts its test images.
    names = [n for n, _ in data.predict_samples]
    assert names == ["synthetic#6", "synthetic#7", "synthetic#8"]
    assert sorted(p.name for p in out.iterdir()) == sorted(
        f"{n}_{kind}.png" for n in names for kind in ("mask", "overlay")
    )
    classes = set()
    for name, image in data.predict_samples:
        expected = trained.predict_labels(torch.from_numpy(image)[None])[0].numpy()
        written = decode_mask(np.asarray(Image.open(out / f"{name}_mask.png")), 3)
        np.testing.assert_array_equal(written, expected)
        overlay = np.asarray(Image.open(out / f"{name}_overlay.png"))
        assert overlay.shape == (32, 32, 3) and overlay.dtype == np.uint8
        classes |= set(np.unique(expected).tolist())
    assert len(classes) >= 2, "the model predicts one class only: nothing was compared"


def _write_folder(root: Path, split: str, count: int, size: int = 32) -> None:
    for sub in ("images", "masks"):
        (root / split / sub).mkdir(parents=True)
    for i in range(count):
        image, mask = make_sample(i, size, 3, 3, seed=1)
        pixels = np.moveaxis((image * 255).round().astype(np.uint8), 0, -1)
        Image.fromarray(pixels).save(root / split / "images" / f"{split}{i}.png")
        Image.fromarray(mask.astype(np.uint8)).save(root / split / "masks" / f"{split}{i}.png")


def _folder_module(root: Path, **kw) -> FolderDataModule:
    data = FolderDataModule(str(root), num_classes=3, masks=MaskFields("index"), crop_size=32, **kw)
    data.attach_spec(SegmentationSystem(preset="modern-small", spec=SPEC, num_classes=3).spec)
    return data


def test_folder_test_split_and_predict_images(tmp_path):
    root = tmp_path / "data"
    _write_folder(root, "train", 2)
    _write_folder(root, "val", 1)
    data = _folder_module(root)
    with pytest.raises(FileNotFoundError, match=r"data/test: no test split .*test/images/"):
        data.setup("test")
    with pytest.raises(ValueError, match="data.predict_images is not set"):
        data.setup("predict")
    _write_folder(root, "test", 2)
    data.setup("test")
    assert [Path(n).name for n, _, _ in data.test_samples] == ["test0.png", "test1.png"]
    assert next(iter(data.test_dataloader()))[1].shape == (1, 32, 32)
    # A folder and a file: the folder's images, then the file; no masks needed.
    data = _folder_module(
        root, predict_images=[str(root / "val" / "images"), str(root / "test/images/test1.png")]
    )
    data.setup("predict")
    assert [Path(n).name for n, _ in data.predict_samples] == ["val0.png", "test1.png"]
    images, names = next(iter(data.predict_dataloader()))
    assert images.shape == (1, 3, 32, 32) and Path(names[0]).name == "val0.png"


@pytest.mark.parametrize(
    "paths, error, message",
    [
        (["missing.png"], FileNotFoundError, r"missing.png: no such image"),
        (["val/images/val0.png", "test/images/val0.png"], ValueError, r"same file stem as"),
        (["empty"], ValueError, r"data.predict_images: no image files found"),
    ],
)
def test_bad_predict_images_are_named(tmp_path, paths, error, message):
    root = tmp_path / "data"
    _write_folder(root, "val", 1)
    _write_folder(root, "test", 1)
    (root / "test/images/val0.png").write_bytes((root / "val/images/val0.png").read_bytes())
    (root / "empty").mkdir()
    data = _folder_module(root, predict_images=[str(root / p) for p in paths])
    with pytest.raises(error, match=message):
        data.setup("predict")


def _deterministic_run(root: Path) -> dict[str, torch.Tensor]:
    L.seed_everything(3, workers=True, verbose=False)
    system = SegmentationSystem(preset="modern-small", spec=SPEC, num_classes=3, optimizer=ADAMW)
    trainer = _trainer(root, max_epochs=2, deterministic=True)
    trainer.fit(system, datamodule=_synthetic())
    assert torch.are_deterministic_algorithms_enabled()
    return {k: v.detach().clone() for k, v in system.state_dict().items()}


@pytest.fixture
def restores_determinism():
    """``deterministic=True`` switches PyTorch's flag for the whole process: switch it back."""
    before = torch.are_deterministic_algorithms_enabled()
    yield
    torch.use_deterministic_algorithms(before)


def test_deterministic_runs_give_bit_identical_weights(tmp_path, restores_determinism):
    first = _deterministic_run(tmp_path / "a")
    second = _deterministic_run(tmp_path / "b")
    assert first.keys() == second.keys()
    for name, value in first.items():
        assert torch.equal(value, second[name]), name
    # The runs trained: the weights left their initial values.
    L.seed_everything(3, workers=True, verbose=False)
    initial = SegmentationSystem(preset="modern-small", spec=SPEC, num_classes=3).state_dict()
    assert not torch.equal(initial["model.head.weight"], first["model.head.weight"])
