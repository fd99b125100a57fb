"""``unet predict`` writes the labels that validation scores: one tiling policy, head and label rule.

A small model is trained for a few steps on synthetic shapes (so its labels are not one constant
class), then its validation images, of sizes that are no multiple of the pooling cell and larger
than the tile, are labelled three ways: by the validation step (``trainer.validate``), by
``unet predict --backend torch`` and by ``unet predict --backend keras``.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from unet_cli.main import main
from unet_data.images import read_image
from unet_infer.masks import decode_mask

torch = pytest.importorskip("torch")  # the torch stack before TensorFlow (see unet_keras._imports)
L = pytest.importorskip("lightning")

from unet_data.synthetic import make_sample  # noqa: E402
from unet_train.data import FolderDataModule  # noqa: E402
from unet_train.datasets import Augmentation  # noqa: E402
from unet_train.system import SegmentationSystem  # noqa: E402

NUM_CLASSES = 3
VAL_SIZES = ((50, 67), (37, 81))  # not multiples of 4, 8 or 16, several tiles each
# (preset, overrides, training crop, --tile). Depth 2-3 and width 8 keep a CPU run to seconds; the
# tiles are smaller than the images so the engine has to tile (and, for same padding, blend).
CASES = {
    "same": ("modern-small", {"depth": 3, "base_filters": 8}, 32, 32),
    "valid": (
        "paper-small",
        {"depth": 2, "base_filters": 8, "norm": "batch", "dropout": 0.0},
        60,
        60,
    ),
}


def _write_pairs(folder: Path, sizes, channels: int, start: int) -> None:
    (folder / "images").mkdir(parents=True)
    (folder / "masks").mkdir(parents=True)
    for i, size in enumerate(sizes):
        image, mask = make_sample(start + i, size, channels, NUM_CLASSES, seed=7)
        pixels = (image * 255).round().astype(np.uint8)
        pixels = pixels[0] if channels == 1 else np.moveaxis(pixels, 0, -1)
        Image.fromarray(pixels).save(folder / "images" / f"s{i:02d}.png")
        Image.fromarray(mask.astype(np.uint8)).save(folder / "masks" / f"s{i:02d}.png")


@pytest.fixture(scope="module", params=sorted(CASES))
def trained(request, tmp_path_factory):
    """A briefly trained model, its checkpoint, its data and the validation step's labels."""
    preset, overrides, crop, tile = CASES[request.param]
    root = tmp_path_factory.mktemp(f"agree-{request.param}")
    system = SegmentationSystem(
        preset=preset, spec=overrides, num_classes=NUM_CLASSES, tile=tile,
        optimizer=partial(torch.optim.AdamW, lr=1e-2, weight_decay=1e-4), scheduler=None,
    )  # fmt: skip
    channels = system.spec.in_channels
    _write_pairs(root / "data" / "train", [(80, 80)] * 4, channels, start=0)
    _write_pairs(root / "data" / "val", VAL_SIZES, channels, start=100)
    data = FolderDataModule(
        str(root / "data"), num_classes=NUM_CLASSES, mask_encoding="index", crop_size=crop,
        batch_size=4, val_batch_size=1, augment=Augmentation(jitter=0.0),
    )  # fmt: skip
    L.seed_everything(0, verbose=False)
    trainer = L.Trainer(
        accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, max_steps=25,
        limit_val_batches=0, num_sanity_val_steps=0, default_root_dir=root,
    )  # fmt: skip
    trainer.fit(system, datamodule=data)
    ckpt = root / "model.ckpt"
    trainer.save_checkpoint(ckpt)

    # What the validation step hands its metrics: record it on the way through.
    seen: list[np.ndarray] = []
    update = system.val_metrics.update

    def record(labels, masks):
        seen.extend(labels.cpu().numpy())
        return update(labels, masks)

    system.val_metrics.update = record
    validator = L.Trainer(
        accelerator="cpu", devices=1, logger=False, enable_progress_bar=False,
        enable_model_summary=False, default_root_dir=root,
    )  # fmt: skip
    validator.validate(system, datamodule=data, verbose=False)
    del system.val_metrics.update
    val_images = sorted((root / "data" / "val" / "images").iterdir())
    return {"system": system.eval(), "ckpt": ckpt, "tile": tile, "root": root,
            "images": val_images, "labels": seen, "miou": system.last_val["val/miou"]}  # fmt: skip


def _label_margin(probs: np.ndarray) -> np.ndarray:
    """Gap between the two highest probabilities (distance from 1/2 for one channel)."""
    if probs.shape[0] == 1:
        return np.abs(probs[0] - 0.5) * 2
    top = np.sort(probs, axis=0)
    return top[-1] - top[-2]


@pytest.mark.parametrize("backend", ["torch", "keras"])
def test_unet_predict_writes_the_validation_labels(trained, backend):
    out = trained["root"] / f"masks-{backend}"
    argv = ["predict", *map(str, trained["images"]), "--weights", str(trained["ckpt"]),
            "--out", str(out), "--backend", backend, "--tile", str(trained["tile"]),
            "--save-probs"]  # fmt: skip
    assert main(argv) == 0
    system = trained["system"]
    assert len(trained["labels"]) == len(trained["images"]) == len(VAL_SIZES)
    classes_seen = set()
    for path, val_labels, size in zip(trained["images"], trained["labels"], VAL_SIZES, strict=True):
        mask = decode_mask(np.asarray(Image.open(out / f"{path.stem}_mask.png")), NUM_CLASSES)
        assert mask.shape == val_labels.shape == size
        probs = np.load(out / f"{path.stem}_probs.npy")
        image = torch.from_numpy(read_image(path, system.spec.in_channels))
        val_probs = system.predict_probs(image[None])[0].numpy()
        # The same policy gives the same probabilities up to float noise: the backends' kernels
        # sum in different orders (~1e-6 relative); a different tiling or padding would move
        # probabilities by whole percent, so 1e-3 separates the two by orders of magnitude.
        noise = float(np.abs(probs - val_probs).max())
        assert noise < 1e-3, f"{path.name}: probabilities differ by {noise}"
        # Labels are identical except where that noise can reorder the top two classes.
        differ = mask != val_labels
        assert (_label_margin(val_probs)[differ] <= 2 * noise).all()
        np.testing.assert_array_equal(system.predict_labels(image[None])[0].numpy(), val_labels)
        classes_seen |= set(np.unique(val_labels).tolist())
    assert len(classes_seen) >= 2, "the model predicts one class only: nothing was compared"


def test_tta_of_unet_predict_is_the_systems_tta(trained):
    out = trained["root"] / "masks-tta"
    argv = ["predict", *map(str, trained["images"]), "--weights", str(trained["ckpt"]),
            "--out", str(out), "--tile", str(trained["tile"]), "--tta", "--tta-mode", "hflip",
            "--save-probs"]  # fmt: skip
    assert main(argv) == 0
    system = trained["system"]
    for path in trained["images"]:
        image = torch.from_numpy(read_image(path, system.spec.in_channels))[None]
        val_probs = system.predict_probs(image, tta="hflip")[0].numpy()
        noise = float(np.abs(np.load(out / f"{path.stem}_probs.npy") - val_probs).max())
        assert noise < 1e-3, f"{path.name}: probabilities differ by {noise}"  # as above
        mask = decode_mask(np.asarray(Image.open(out / f"{path.stem}_mask.png")), NUM_CLASSES)
        differ = mask != system.predict_labels(image, tta="hflip")[0].numpy()
        assert (_label_margin(val_probs)[differ] <= 2 * noise).all()
