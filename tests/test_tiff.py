"""TIFF through tifffile: 16-bit, multi-page volumes read slice by slice, OME-TIFF channels, and
grouped splits that keep a volume's slices together."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image

from unet_data import read_mask
from unet_data.images import image_info, read_image
from unet_spec import get_preset
from unet_train.data import FolderDataModule

GREY = get_preset("modern-small").replace(in_channels=1, depth=2)


def test_sixteen_bit_single_page(tmp_path):
    data = np.array([[0, 100], [30000, 65535]], np.uint16)
    tifffile.imwrite(tmp_path / "a.tif", data)
    np.testing.assert_allclose(read_image(tmp_path / "a.tif", 1)[0], data / 65535.0, rtol=1e-6)
    assert image_info(tmp_path / "a.tif")[:4] == (2, 2, 1, 1)


def test_volume_slices_are_read_one_at_a_time(tmp_path):
    vol = np.arange(5 * 8 * 6, dtype=np.uint16).reshape(5, 8, 6) * 50
    tifffile.imwrite(tmp_path / "v.tif", vol)
    assert image_info(tmp_path / "v.tif")[:4] == (8, 6, 1, 5)
    for k in (0, 3, 4):
        np.testing.assert_allclose(read_image(tmp_path / "v.tif", 1, index=k)[0], vol[k] / 65535)
    with pytest.raises(ValueError, match=r"v\.tif: a volume of 5 slices"):
        read_image(tmp_path / "v.tif", 1)
    with pytest.raises(ValueError, match=r"v\.tif: no slice 5"):
        read_image(tmp_path / "v.tif", 1, index=5)


def test_ome_tiff_channels_across_pages(tmp_path):
    data = np.random.default_rng(0).integers(0, 4000, (3, 2, 8, 8)).astype(np.uint16)  # ZCYX
    tifffile.imwrite(tmp_path / "c.ome.tif", data, ome=True, metadata={"axes": "ZCYX"})
    assert image_info(tmp_path / "c.ome.tif")[:4] == (8, 8, 2, 3)
    np.testing.assert_allclose(read_image(tmp_path / "c.ome.tif", 2, index=1), data[1] / 65535)


def test_rgb_pages_and_mask_volumes(tmp_path):
    rgb = np.random.default_rng(0).integers(0, 256, (2, 8, 8, 3)).astype(np.uint8)
    tifffile.imwrite(tmp_path / "rgb.tif", rgb, photometric="rgb")
    np.testing.assert_allclose(
        read_image(tmp_path / "rgb.tif", 3, index=1), np.moveaxis(rgb[1], -1, 0) / 255
    )
    masks = np.zeros((2, 8, 8), np.uint8)
    masks[1, 2:4] = 255
    tifffile.imwrite(tmp_path / "m.tif", masks)
    np.testing.assert_array_equal(read_mask(tmp_path / "m.tif", 2, index=1), masks[1] // 255)


def test_compressed_single_page_falls_back_to_pillow(tmp_path):
    Image.fromarray(np.full((4, 4), 51, np.uint8)).save(tmp_path / "l.tif", compression="tiff_lzw")
    np.testing.assert_allclose(
        read_image(tmp_path / "l.tif", 1), np.full((1, 4, 4), 0.2), rtol=1e-6
    )


def _volumes(root: Path, names=("volA", "volB", "volC"), slices=3) -> Path:
    rng = np.random.default_rng(0)
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for name in names:
        tifffile.imwrite(root / "images" / f"{name}.tif",
                         rng.integers(0, 65535, (slices, 20, 20)).astype(np.uint16), photometric="minisblack")  # fmt: skip
        tifffile.imwrite(root / "masks" / f"{name}.tif",
                         rng.integers(0, 2, (slices, 20, 20)).astype(np.uint8), photometric="minisblack")  # fmt: skip
    return root


def _module(root: Path, **kw) -> FolderDataModule:
    dm = FolderDataModule(str(root), num_classes=2, crop_size=16, mask_encoding="index",
                          scan_cache=str(root.parent / "cache"), **kw)  # fmt: skip
    dm.attach_spec(GREY)
    dm.setup("fit")
    return dm


def test_volumes_become_named_slices_and_split_by_volume(tmp_path):
    dm = _module(_volumes(tmp_path / "d"), split="group", val_groups=["volB"])
    val = dm.val_samples.names
    assert [Path(n).name for n in val] == ["volB.tif#0", "volB.tif#1", "volB.tif#2"]
    assert len(dm.train_samples) == 6 and not {Path(n).name.split("#")[0] for n in
                                               dm.train_samples.names} & {"volB.tif"}  # fmt: skip
    name, image, mask = dm.val_samples[2]
    assert name.endswith("volB.tif#2") and image.shape == (1, 20, 20) and mask.shape == (20, 20)
    batch = next(iter(dm.train_dataloader()))
    assert batch[0].shape[1:] == (1, 16, 16)


def test_mask_volume_of_another_slice_count_is_named(tmp_path):
    root = _volumes(tmp_path / "d")
    tifffile.imwrite(
        root / "masks" / "volC.tif", np.zeros((2, 20, 20), np.uint8), photometric="minisblack"
    )
    with pytest.raises(ValueError, match=r"masks/volC\.tif: mask has 2 slice\(s\) but image"):
        _module(root)
