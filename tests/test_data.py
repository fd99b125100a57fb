"""Data modules: every mask encoding, both folder layouts, splits, crops, and every bad input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from unet_data import IGNORE_INDEX, read_mask
from unet_data.images import read_image
from unet_spec import get_preset
from unet_train.data import FolderDataModule, SyntheticDataModule
from unet_train.datasets import Augmentation, TrainCrops

GREY = get_preset("modern-small").replace(in_channels=1, depth=2)
RGB = GREY.replace(in_channels=3)


def _save(path: Path, array: np.ndarray, mode: str | None = None, palette: list[int] | None = None):
    path.parent.mkdir(parents=True, exist_ok=True)
    img = (
        Image.fromarray(array.astype(np.uint8), mode=mode)
        if mode
        else Image.fromarray(array.astype(np.uint8))
    )
    if palette is not None:
        img.putpalette(palette)
    img.save(path)
    return path


def _folder(root: Path, n: int = 5, size: int = 32, channels: int = 1, values=(0, 255)) -> Path:
    rng = np.random.default_rng(0)
    for i in range(n):
        shape = (size, size) if channels == 1 else (size, size, channels)
        _save(root / "images" / f"s{i:02d}.png", rng.integers(0, 256, shape))
        _save(root / "masks" / f"s{i:02d}.png", rng.choice(values, (size, size)))
    return root


def _module(root: Path, spec=GREY, **kw) -> FolderDataModule:
    kw.setdefault("crop_size", 16)
    dm = FolderDataModule(str(root), **kw)
    dm.attach_spec(spec)
    dm.setup("fit")
    return dm


# -- mask encodings -------------------------------------------------------------------------------
def test_binary_0_255_masks(tmp_path):
    p = _save(tmp_path / "m.png", np.array([[0, 255], [255, 0]]))
    np.testing.assert_array_equal(read_mask(p, 2), [[0, 1], [1, 0]])
    np.testing.assert_array_equal(read_mask(p, 2, encoding="binary"), [[0, 1], [1, 0]])
    flipped = read_mask(p, 2, encoding="binary", value_map={0: 1, 255: 0})
    np.testing.assert_array_equal(flipped, [[1, 0], [0, 1]])


def test_index_masks_with_ignore_value(tmp_path):
    p = _save(tmp_path / "m.png", np.array([[0, 1, 2], [11, 2, 0]]))
    mask = read_mask(p, 3, encoding="index", ignore_value=11)
    np.testing.assert_array_equal(mask, [[0, 1, 2], [IGNORE_INDEX, 2, 0]])
    assert mask.dtype == np.int64


def test_value_map(tmp_path):
    p = _save(tmp_path / "m.png", np.array([[10, 20], [30, 10]]))
    mask = read_mask(p, 3, value_map={10: 0, 20: 1, 30: 2})
    np.testing.assert_array_equal(mask, [[0, 1], [2, 0]])


def test_palette_png_gives_its_indices(tmp_path):
    pal = [0, 0, 0, 255, 0, 0, 0, 255, 0] + [0] * (256 * 3 - 9)
    p = _save(tmp_path / "m.png", np.array([[0, 1], [2, 1]]), mode="P", palette=pal)
    np.testing.assert_array_equal(read_mask(p, 3), [[0, 1], [2, 1]])


def test_rgb_colour_masks_with_palette(tmp_path):
    colours = [[0, 0, 0], [128, 0, 0], [0, 128, 0]]
    arr = np.array([[[0, 0, 0], [128, 0, 0]], [[0, 128, 0], [0, 128, 0]]])
    p = _save(tmp_path / "m.png", arr)
    np.testing.assert_array_equal(read_mask(p, 3, palette=colours), [[0, 1], [2, 2]])
    with pytest.raises(
        ValueError, match=r"m\.png: colours \[\[0, 128, 0\]\] are not in data\.masks\.palette"
    ):
        read_mask(p, 2, palette=colours[:2])


def test_grey_and_rgb_images(tmp_path):
    g = _save(tmp_path / "g.png", np.full((4, 5), 255))
    c = _save(tmp_path / "c.png", np.zeros((4, 5, 3)))
    assert read_image(g, 1).shape == (1, 4, 5) and read_image(g, 1).max() == 1.0
    assert read_image(c, 3).shape == (3, 4, 5)


# -- layouts and splits ---------------------------------------------------------------------------
def test_images_masks_layout_seeded_split(tmp_path):
    root = _folder(tmp_path / "d", n=10)
    a = _module(root, val_fraction=0.3, seed=1)
    b = _module(root, val_fraction=0.3, seed=1)
    c = _module(root, val_fraction=0.3, seed=2)
    names = lambda dm: [s[0] for s in dm.val_samples]  # noqa: E731
    assert len(a.val_samples) == 3 and len(a.train_samples) == 7
    assert names(a) == names(b)
    assert names(a) != names(c)
    assert not set(names(a)) & {s[0] for s in a.train_samples}


def test_tail_split_keeps_the_last_images(tmp_path):
    dm = _module(_folder(tmp_path / "d", n=6), val_fraction=1 / 3, split="tail")
    assert [Path(s[0]).stem for s in dm.val_samples] == ["s04", "s05"]


def test_train_val_subfolders(tmp_path):
    _folder(tmp_path / "d" / "train", n=3, channels=3)
    _folder(tmp_path / "d" / "val", n=2, channels=3)
    dm = _module(tmp_path / "d", spec=RGB)
    assert len(dm.train_samples) == 3 and len(dm.val_samples) == 2
    images, masks = next(iter(dm.train_dataloader()))
    assert images.shape == (3, 3, 16, 16) and masks.shape == (3, 16, 16)
    assert masks.dtype == torch.int64 and set(masks.unique().tolist()) <= {0, 1}
    images, masks = next(iter(dm.val_dataloader()))
    assert images.shape == (1, 3, 32, 32)


def test_synthetic_module_follows_spec_channels():
    dm = SyntheticDataModule(num_train=4, num_val=2, image_size=32, crop_size=32, batch_size=2)
    dm.attach_spec(RGB.replace(num_classes=5))
    dm.setup("fit")
    images, masks = next(iter(dm.train_dataloader()))
    assert images.shape == (2, 3, 32, 32) and int(masks.max()) < 5


# -- valid padding crops --------------------------------------------------------------------------
def test_valid_padding_target_is_center_of_input():
    spec = get_preset("paper-small").replace(depth=2)
    layout = spec.plan().check_size(52)
    (ih, _), (oh, _) = layout.input_size, layout.output_size
    # The image's only channel equals its mask, so the input's center must equal the target.
    rng = np.random.default_rng(0)
    mask = rng.integers(0, 4, (30, 30))
    sample = ("x", mask[None].astype(np.float32), mask)
    augment = Augmentation(elastic=0.0, jitter=0.0).build(1)
    crops = TrainCrops([sample], layout.input_size, layout.output_size, 8, augment)
    top = (ih - oh) // 2
    for i in range(8):
        image, target = crops[i]
        assert image.shape == (1, ih, ih) and target.shape == (oh, oh)
        np.testing.assert_array_equal(image[0, top : top + oh, top : top + oh].long(), target)


def test_balanced_crops_oversample_a_rare_class():
    # One 4x4 patch of class 1 in a 64x64 image of class 0: uniform 16x16 crops rarely see it.
    mask = np.zeros((64, 64), np.int64)
    mask[40:44, 8:12] = 1
    mask[0, 0] = IGNORE_INDEX  # never drawn as a class
    sample = ("x", mask[None].astype(np.float32), mask)

    def share_with_class_1(balance: float) -> float:
        torch.manual_seed(0)
        crops = TrainCrops([sample], (16, 16), (16, 16), 200, None, balance_classes=balance)
        return float(np.mean([(crops[i][1] == 1).any().item() for i in range(len(crops))]))

    uniform, balanced = share_with_class_1(0.0), share_with_class_1(1.0)
    assert uniform < 0.2
    # Half the balanced draws pick class 1, and those crops always contain it.
    assert 0.4 < balanced and balanced > 2 * uniform


@pytest.mark.parametrize(("flips", "rows_flip", "cols_flip"), [
    ("horizontal", False, True), ("vertical", True, False), (True, True, True), (False, False, False),
])  # fmt: skip
def test_flip_directions(flips, rows_flip, cols_flip):
    from torchvision import tv_tensors

    torch.manual_seed(0)
    augment = Augmentation(flips=flips, rot90=False, jitter=0).build(1)
    image = torch.arange(16.0).reshape(1, 4, 4)
    seen_rows, seen_cols = set(), set()
    for _ in range(40):
        out = augment(tv_tensors.Image(image))[0]
        seen_rows.add(bool(out[0, 0] > out[-1, 0]))  # top row now below the bottom one
        seen_cols.add(bool(out[0, 0] > out[0, -1]))
    assert (True in seen_rows) == rows_flip and (True in seen_cols) == cols_flip


def test_balance_classes_out_of_range_is_named():
    with pytest.raises(ValueError, match="data.balance_classes"):
        SyntheticDataModule(balance_classes=1.5)


def test_unknown_flip_direction_is_named():
    with pytest.raises(ValueError, match="data.augment.flips must be"):
        Augmentation(flips="both")


def test_elastic_fills_with_ignore_index():
    torch.manual_seed(0)
    augment = Augmentation(
        flips=False, rot90=False, elastic=1.0, elastic_alpha=200.0, jitter=0
    ).build(1)
    mask = torch.zeros(1, 40, 40, dtype=torch.long)
    from torchvision import tv_tensors

    _, out = augment(tv_tensors.Image(torch.zeros(1, 40, 40)), tv_tensors.Mask(mask))
    assert set(out.unique().tolist()) <= {0, IGNORE_INDEX}


# -- bad inputs -----------------------------------------------------------------------------------
def test_truncated_image_is_named(tmp_path):
    root = _folder(tmp_path / "d")
    path = root / "images" / "s01.png"
    path.write_bytes(path.read_bytes()[:60])
    with pytest.raises(ValueError, match=r"s01\.png: cannot read image"):
        _module(root)


def test_image_without_mask_and_mask_without_image(tmp_path):
    root = _folder(tmp_path / "d")
    (root / "masks" / "s02.png").unlink()
    with pytest.raises(ValueError, match=r"images/s02\.png: no mask with the stem 's02'"):
        _module(root)
    root = _folder(tmp_path / "e")
    (root / "images" / "s03.png").unlink()
    with pytest.raises(ValueError, match=r"masks/s03\.png: no image with the stem 's03'"):
        _module(root)


def test_mask_size_differs(tmp_path):
    root = _folder(tmp_path / "d")
    _save(root / "masks" / "s00.png", np.zeros((31, 32)))
    with pytest.raises(
        ValueError, match=r"masks/s00\.png: mask is 31x32 but image .*s00\.png is 32x32"
    ):
        _module(root)


def test_mask_values_neither_class_nor_ignore(tmp_path):
    root = _folder(tmp_path / "d", values=(0, 1, 2))
    _save(root / "masks" / "s04.png", np.full((32, 32), 7))
    with pytest.raises(
        ValueError, match=r"s04\.png: mask values \[7\] are neither a class id \(0\.\.2\)"
    ):
        _module(root, num_classes=3, ignore_value=255)


def test_wrong_channel_count(tmp_path):
    root = _folder(tmp_path / "d", channels=3)
    # The folder's channels are measured and named against the model's (train.py links the two).
    with pytest.raises(ValueError, match=r"in_channels=1 but data\.in_channels is 3"):
        _module(root)


def test_empty_and_missing_folders(tmp_path):
    (tmp_path / "d" / "images").mkdir(parents=True)
    (tmp_path / "d" / "masks").mkdir()
    with pytest.raises(ValueError, match=r"/d: no images \(\.png, .* in it or its subfolders"):
        _module(tmp_path / "d")
    with pytest.raises(FileNotFoundError, match="no such data folder"):
        _module(tmp_path / "nowhere")
    _save(tmp_path / "f" / "a" / "x.png", np.zeros((4, 4)))
    _save(tmp_path / "f" / "b" / "y.png", np.zeros((4, 4)))
    with pytest.raises(ValueError, match=r"no image/mask pairs found .* a/ \(1\), b/ \(1\); "
                       r"expected images/ and masks/"):  # fmt: skip
        _module(tmp_path / "f")


def test_image_smaller_than_crop(tmp_path):
    root = _folder(tmp_path / "d", size=12)
    with pytest.raises(
        ValueError, match=r"data\.crop_size 16 > image .*s\d\d\.png \(12×12\); valid crop sizes"
    ):
        _module(root, crop_size=16)


def test_invalid_crop_size_lists_valid_ones(tmp_path):
    with pytest.raises(ValueError, match="Nearest valid sizes"):
        _module(_folder(tmp_path / "d"), crop_size=18)


def test_scale_zooms_image_and_mask_together_with_nearest_labels():
    from torchvision import tv_tensors

    torch.manual_seed(3)
    mask = torch.zeros(64, 64, dtype=torch.int64)
    mask[16:48, 16:48] = 2  # a square, and the image marks it too
    image = (mask == 2).float()[None].repeat(3, 1, 1)
    augment = Augmentation(flips=False, rot90=False, jitter=0, scale=0.5).build(3)
    zoomed = []
    for _ in range(8):
        img, out = augment(tv_tensors.Image(image), tv_tensors.Mask(mask))
        assert set(out.unique().tolist()) <= {0, 2, IGNORE_INDEX}  # no interpolated labels
        inside = out == 2
        # Same geometry: the zoomed square of the image lies on the zoomed square of the mask
        # (bilinear edges aside).
        assert (img[0][inside] > 0.5).float().mean() > 0.9
        assert (img[0][out == 0] < 0.5).float().mean() > 0.9
        zoomed.append(int(inside.sum()))
    assert len(set(zoomed)) > 1 and min(zoomed) != 32 * 32 != max(zoomed)
    with pytest.raises(ValueError, match="data.augment.scale must be >= 0"):
        Augmentation(scale=-0.1)


@pytest.mark.parametrize(
    "options",
    [{"gamma": 0.5}, {"blur": 1.0, "blur_sigma": 2.0}, {"noise": 0.1}],
    ids=["gamma", "blur", "noise"],
)
def test_photometric_augmentation_changes_images_and_leaves_masks_alone(options):
    from torchvision import tv_tensors

    torch.manual_seed(0)
    augment = Augmentation(flips=False, rot90=False, jitter=0, **options).build(1)
    # A ramp with a sharp edge: gamma bends the ramp, blur softens the edge, noise adds both.
    image = torch.linspace(0.05, 0.95, 32).repeat(32, 1)[None]
    image[:, :, 16:] = image[:, :, 16:].flip(-1)
    mask = torch.randint(0, 3, (32, 32))
    changed = []
    for _ in range(6):
        img, out, weights = augment(
            tv_tensors.Image(image), tv_tensors.Mask(mask), tv_tensors.Mask(mask.float())
        )
        # Labels and weight maps are never resampled or perturbed.
        assert torch.equal(out, mask) and torch.equal(weights, mask.float())
        assert img.shape == image.shape and 0.0 <= float(img.min()) and float(img.max()) <= 1.0
        changed.append(float((img - image).abs().max()))
    assert min(changed) > 1e-3  # every draw changes the image visibly
    assert len(set(changed)) > 1  # and the strength is random


def test_gamma_keeps_the_range_and_the_order_of_intensities():
    from unet_train.datasets import RandomGamma

    torch.manual_seed(1)
    ramp = torch.linspace(0.0, 1.0, 50)[None, None]
    gammas = RandomGamma(1.0)
    for _ in range(10):
        out = gammas(ramp)  # a plain tensor is the image to v2
        assert out[..., 0] == 0.0 and out[..., -1] == 1.0
        assert bool((out.diff(dim=-1) >= 0).all())


@pytest.mark.parametrize(
    ("options", "field"),
    [({"jitter": -0.1}, "jitter"), ({"gamma": -1}, "gamma"), ({"noise": -0.1}, "noise"),
     ({"blur": 1.5}, "blur"),
     ({"blur": 0.5, "blur_sigma": 0.0}, "blur_sigma")],
)  # fmt: skip
def test_bad_photometric_options_are_named(options, field):
    with pytest.raises(ValueError, match=f"data.augment.{field} must be"):
        Augmentation(**options)
