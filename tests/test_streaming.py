"""Streaming shards (LitData): ``unet data pack``, training from shards, resuming mid-epoch without
repeating or skipping samples, and bad shards or URLs as one line with exit status 2."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("litdata")

from litdata import StreamingDataLoader

from unet_cli.main import main as unet
from unet_spec import get_preset
from unet_train.streaming import ShardSamples, StreamingDataModule, open_shards

GREY = get_preset("modern-small").replace(in_channels=1, depth=2)


@pytest.fixture(scope="module")
def packed(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("stream")
    data = root / "data"
    for part, n in (("train", 12), ("val", 2)):
        for sub in ("images", "masks"):
            (data / part / sub).mkdir(parents=True)
        for i in range(n):
            rng = np.random.default_rng(i + 100 * (part == "val"))
            Image.fromarray(rng.integers(0, 256, (24, 24), dtype=np.uint8)).save(
                data / part / "images" / f"{part}{i:02d}.png"
            )
            mask = (rng.integers(0, 2, (24, 24)) * 255).astype(np.uint8)
            Image.fromarray(mask).save(data / part / "masks" / f"{part}{i:02d}.png")
    assert unet(["data", "pack", str(data), str(root / "shards"), "--shard-size", "3KB"]) == 0
    return data, root / "shards"


def test_pack_keeps_images_encoded(packed, tmp_path):
    data, shards = packed
    assert len(list((shards / "train").glob("*.bin"))) > 1  # 3KB shards: several
    assert unet(["data", "pack", str(data), str(tmp_path / "one")]) == 0
    # The files' own bytes, plus LitData's few bytes of framing per item (names are relative).
    files = sum(f.stat().st_size for f in data.rglob("*.png"))
    bins = sum(f.stat().st_size for f in (tmp_path / "one").rglob("*.bin"))
    assert files <= bins <= files + 100 * 14
    names = sorted(ShardSamples(str(shards / "val"), in_channels=1)[i][0] for i in range(2))
    assert names == ["val/images/val00.png", "val/images/val01.png"]
    _, image, mask = ShardSamples(str(shards / "val"), in_channels=1)[0]
    src = np.asarray(Image.open(data / "val" / "images" / Path(names[0]).name)) / 255.0
    np.testing.assert_allclose(image[0], src, rtol=1e-6)
    assert set(np.unique(mask).tolist()) <= {0, 1}


def test_resuming_mid_epoch_neither_repeats_nor_skips(packed):
    _, shards = packed

    def loader():
        ds = ShardSamples(str(shards / "train"), in_channels=1, shuffle=True, seed=3)
        return StreamingDataLoader(
            ds, batch_size=2, num_workers=2, collate_fn=lambda b: [s[0] for s in b]
        )

    first, seen = loader(), []
    for i, names in enumerate(first):
        seen += names
        if i == 2:
            state = first.state_dict()
            break
    resumed = loader()
    resumed.load_state_dict(state)
    rest = [n for names in resumed for n in names]
    assert len(seen) == 6 and len(rest) == 6
    every = ShardSamples(str(shards / "train"), in_channels=1)
    assert sorted(seen + rest) == sorted(every[i][0] for i in range(len(every)))


def test_training_from_shards(packed, tmp_path):
    import lightning as L

    from unet_train.system import SegmentationSystem

    _, shards = packed
    data = StreamingDataModule(str(shards), num_classes=2, crop_size=16, batch_size=4)
    system = SegmentationSystem(preset="modern-small", spec={"depth": 2}, in_channels=1,
                                num_classes=2)  # fmt: skip
    trainer = L.Trainer(default_root_dir=tmp_path, accelerator="cpu", max_epochs=1, logger=False,
                        enable_progress_bar=False, enable_model_summary=False,
                        enable_checkpointing=False, limit_val_batches=1)  # fmt: skip
    trainer.fit(system, datamodule=data)
    assert trainer.global_step == 3 and "val/dice" in trainer.callback_metrics  # 12 crops / 4


@pytest.mark.parametrize(
    ("crop", "line"),
    [
        (18, r"data\.crop_size 18 is not a valid input size for this spec \(.*Nearest valid sizes: "
             r"[\d, ]*16, 20"),
        (32, r"data\.crop_size 32 > image 24×24; valid crop sizes for this spec up to 24: 24, "),
    ],
)  # fmt: skip
def test_crop_size_is_checked_as_for_a_folder(packed, crop, line):
    # The base recipe's check: a size the spec does not take is refused before any shard is read,
    # and the training target must fit the samples (the packed images are 24×24).
    _, shards = packed
    data = StreamingDataModule(str(shards), num_classes=2, crop_size=crop, in_channels=1)
    data.attach_spec(GREY)
    with pytest.raises(ValueError, match=rf"^{line}") as err:
        data.setup("fit")
    assert "\n" not in str(err.value) and "(or leave data.crop_size unset" in str(err.value)


def test_missing_or_corrupt_shard_is_named(packed, tmp_path):
    import shutil

    _, shards = packed
    copy = tmp_path / "copy"
    shutil.copytree(shards / "train", copy)
    chunk = sorted(copy.glob("*.bin"))[1]
    chunk.write_bytes(chunk.read_bytes()[:10])
    with pytest.raises(ValueError, match=rf"{chunk.name}: shard is 10 bytes"):
        open_shards(str(copy))
    chunk.unlink()
    with pytest.raises(FileNotFoundError, match=rf"{chunk.name}: missing shard"):
        open_shards(str(copy))
    (copy / "index.json").write_text("{not json")
    with pytest.raises(ValueError, match=r"index\.json: not a LitData index"):
        open_shards(str(copy))
    with pytest.raises(FileNotFoundError, match=r"no such shard folder"):
        open_shards(str(tmp_path / "nowhere"))


def test_unreachable_url_is_one_line(monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "x")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "x")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    with pytest.raises(
        ValueError, match=r"s3://unet-twins-test/shards/train: cannot be reached"
    ) as err:
        open_shards("s3://unet-twins-test/shards/train")
    assert "\n" not in str(err.value)


def test_pack_bad_input_exits_2(tmp_path, capsys):
    assert unet(["data", "pack", str(tmp_path / "nowhere"), str(tmp_path / "out")]) == 2
    assert "nowhere: no such data folder" in capsys.readouterr().err
