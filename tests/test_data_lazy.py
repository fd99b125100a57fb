"""Folder datasets read when used: bounded memory, the streaming scan and its cache file, lazy
errors that still name the file, and crops equal to the in-memory path."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from unet_data import (
    ByteCache,
    FileSamples,
    class_frequencies,
    median_frequency_weights,
    parse_bytes,
)
from unet_spec import get_preset
from unet_train.data import FolderDataModule
from unet_train.datasets import DataFileError, TrainCrops

GREY = get_preset("modern-small").replace(in_channels=1, depth=2)
VALID = get_preset("paper").replace(depth=1, base_filters=4)


def _folder(root: Path, n: int = 6, size: int = 24, classes: int = 3) -> Path:
    rng = np.random.default_rng(1)
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for i in range(n):
        Image.fromarray(rng.integers(0, 256, (size, size), dtype=np.uint8)).save(
            root / "images" / f"s{i:02d}.png"
        )
        mask = rng.integers(0, classes - 1, (size, size)).astype(np.uint8)
        if i == 2:
            mask[3:6, 4:9] = classes - 1  # the rare class lives in one image only
        Image.fromarray(mask).save(root / "masks" / f"s{i:02d}.png")
    return root


def _module(root: Path, spec=GREY, **kw) -> FolderDataModule:
    kw.setdefault("crop_size", 16)
    kw.setdefault("num_classes", 3)
    kw.setdefault("scan_cache", str(root.parent / "cache"))
    dm = FolderDataModule(str(root), **kw)
    dm.attach_spec(spec)
    dm.setup("fit")
    return dm


def test_samples_are_read_when_used_and_hold_no_pixels(tmp_path):
    dm = _module(_folder(tmp_path / "d"))
    assert isinstance(dm.train_samples, FileSamples) and isinstance(dm.val_samples, FileSamples)
    assert len(dm.train_samples.cache) == 0  # nothing decoded is kept after setup
    name, image, mask = dm.train_samples[0]
    assert image.shape == (1, 24, 24) and mask.shape == (24, 24) and name.endswith(".png")
    assert len(dm.train_samples.cache) == 0  # cache_bytes=0 keeps nothing


@pytest.mark.parametrize("balance", [0.0, 0.7])
def test_crops_from_files_equal_crops_from_memory(tmp_path, balance):
    # Valid padding: 32x32 inputs reach 8 pixels into the mirror padding around 16x16 targets.
    dm = _module(_folder(tmp_path / "d"), spec=VALID, crop_size=32, balance_classes=balance)
    in_memory = [dm.train_samples[i] for i in range(len(dm.train_samples))]
    layout = dm.layout
    crops = [TrainCrops(s, layout.input_size, layout.output_size, 10, None, balance)
             for s in (dm.train_samples, in_memory)]  # fmt: skip
    assert crops[0]._holders.keys() == crops[1]._holders.keys()
    for a_holders, b_holders in zip(
        crops[0]._holders.values(), crops[1]._holders.values(), strict=True
    ):
        np.testing.assert_array_equal(a_holders, b_holders)
    for i in range(10):
        torch.manual_seed(i)
        a = crops[0][i]
        torch.manual_seed(i)
        b = crops[1][i]
        assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))


def test_class_statistics_stream_and_match_memory(tmp_path):
    dm = _module(_folder(tmp_path / "d"), val_fraction=0.2)
    files = dm.train_samples
    memory = [files[i] for i in range(len(files))]
    np.testing.assert_allclose(class_frequencies(files, 3), class_frequencies(memory, 3))
    assert median_frequency_weights(files, 3) == median_frequency_weights(memory, 3)
    assert files.presence().shape == (len(files), 3)


def test_cache_is_bounded_in_bytes():
    cache = ByteCache(100)
    for k in range(5):
        cache.put(k, k, 40)
    assert len(cache) == 2 and cache.used == 80 and cache.get(0) is None and cache.get(4) == 4
    cache.put("big", 1, 101)
    assert cache.get("big") is None
    assert parse_bytes("2KB", "f") == 2000 and parse_bytes("1GiB", "f") == 2**30
    with pytest.raises(ValueError, match="data.cache_bytes must be a size"):
        parse_bytes("lots", "data.cache_bytes")


def test_cache_keeps_samples_within_its_limit(tmp_path):
    one = 24 * 24 * (4 + 8)
    dm = _module(_folder(tmp_path / "d"), cache_bytes=2 * one)
    for i in range(len(dm.train_samples)):
        dm.train_samples[i]
    assert len(dm.train_samples.cache) == 2 and dm.train_samples.cache.used <= 2 * one


def test_cache_smaller_than_one_sample_is_named(tmp_path):
    with pytest.raises(ValueError, match=r"data.cache_bytes=1000 is smaller than one sample"):
        _module(_folder(tmp_path / "d"), cache_bytes="1KB")


def test_scan_counts_are_cached_and_redone_when_a_file_changes(tmp_path, monkeypatch):
    root = _folder(tmp_path / "d")
    first = _module(root).train_samples.counts
    assert list((tmp_path / "cache").glob("scan-*.npz"))

    def no_decoding(self, i):
        raise AssertionError("decoded again")

    with monkeypatch.context() as m:
        m.setattr(FileSamples, "scan_one", no_decoding)
        np.testing.assert_array_equal(_module(root).train_samples.counts, first)
    Image.fromarray(np.full((24, 24), 7, np.uint8)).save(root / "masks" / "s03.png")
    with pytest.raises(ValueError, match=r"s03\.png: mask values \[7\]"):
        _module(root)


def test_scan_in_workers_names_the_bad_file(tmp_path):
    root = _folder(tmp_path / "d")
    path = root / "images" / "s04.png"
    path.write_bytes(path.read_bytes()[:70])
    with pytest.raises(ValueError, match=r"s04\.png: cannot read image") as err:
        _module(root, num_workers=2)
    assert "\n" not in str(err.value)


def test_a_file_that_goes_bad_after_setup_is_named_from_the_worker(tmp_path):
    root = _folder(tmp_path / "d")
    dm = _module(root, num_workers=1, samples_per_epoch=12, batch_size=12, val_fraction=0.2)
    for name in dm.train_samples.names:
        Path(name).write_bytes(b"not an image")
    with pytest.raises(DataFileError, match=r"s\d\d\.png: cannot read image") as err:
        next(iter(dm.train_dataloader()))
    assert "\n" not in str(err.value) and "Traceback" not in str(err.value)


def test_header_scan_finds_bad_pixels_when_used(tmp_path):
    root = _folder(tmp_path / "d")
    path = root / "images" / "s01.png"
    path.write_bytes(path.read_bytes()[:70])
    dm = _module(root, scan="headers", split="tail", val_fraction=0.2)
    k = dm.train_samples.names.index(str(path))
    with pytest.raises(ValueError, match=r"s01\.png: cannot read image"):
        dm.train_samples[k]


def test_preload_is_the_in_memory_path(tmp_path):
    dm = _module(_folder(tmp_path / "d"), preload=True)
    assert len(dm.train_samples.cache) == len(dm.train_samples)
    assert dm.train_samples.counts is not None


def test_images_of_different_channel_counts_exit_2_naming_the_file(tmp_path, run_train):
    root = _folder(tmp_path / "d")
    Image.new("RGB", (24, 24)).save(root / "images" / "s03.png")
    run = run_train(tmp_path, "fit", "--model.preset", "modern-small",
                    "--data", "unet_train.data.FolderDataModule", "--data.in_channels", "1",
                    "--data.root", str(root), "--data.num_classes", "3", "--data.crop_size", "16",
                    "--trainer.max_steps", "1", "--trainer.logger", "false",
                    "--trainer.default_root_dir", str(tmp_path / "runs"))  # fmt: skip
    assert run.returncode == 2, run.stderr[-2000:]
    line = run.stderr.strip().splitlines()[-1]
    assert "s03.png: image has 3 channel(s) but" in line and "one channel count" in line
