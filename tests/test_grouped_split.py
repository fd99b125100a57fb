"""Grouped splits: whole sequences or volumes go to one side, never both."""

from __future__ import annotations

from pathlib import Path

import pytest

from unet_data import group_of, split_by_group


def _pairs(counts: dict[str, int]) -> list[tuple[Path, Path]]:
    return [
        (Path(f"images/{group}_{i:05d}.png"), Path(f"masks/{group}_{i:05d}.png"))
        for group, n in counts.items()
        for i in range(n)
    ]


CAMVID_LIKE = {"0001TP": 62, "0006R0": 101, "0016E5": 305}


def test_group_of_reads_the_prefix_and_custom_patterns() -> None:
    assert group_of(Path("0016E5_07959.png")) == "0016E5"
    assert group_of(Path("volA-slice_012.tif"), r"^(vol\w)-") == "volA"
    with pytest.raises(
        ValueError, match=r"nodash\.png: the name does not match data.group_pattern"
    ):
        group_of(Path("nodash.png"))


def test_named_groups_are_held_out_whole() -> None:
    pairs = _pairs(CAMVID_LIKE)
    train, val, held = split_by_group(pairs, val_groups=["0006R0"])
    assert held == ["0006R0"]
    assert len(val) == 101 and len(train) == 62 + 305
    assert {group_of(p) for p, _ in val} == {"0006R0"}
    assert "0006R0" not in {group_of(p) for p, _ in train}


@pytest.mark.parametrize("seed", range(5))
def test_drawn_groups_reach_the_fraction_and_never_straddle(seed: int) -> None:
    pairs = _pairs({f"seq{k}": 10 + 3 * k for k in range(6)})
    train, val, held = split_by_group(pairs, val_fraction=0.25, seed=seed)
    assert len(val) >= 0.25 * len(pairs) and train
    assert {group_of(p) for p, _ in val} == set(held)
    assert not {group_of(p) for p, _ in train} & set(held)
    assert sorted(train + val) == sorted(pairs)


def test_the_draw_depends_on_the_seed_only() -> None:
    pairs = _pairs({f"seq{k}": 10 for k in range(8)})
    assert split_by_group(pairs, seed=3) == split_by_group(list(pairs), seed=3)
    assert len({tuple(split_by_group(pairs, seed=s)[2]) for s in range(10)}) > 1


def test_bad_splits_are_named() -> None:
    with pytest.raises(ValueError, match="one group 'vol'.*split: tail"):
        split_by_group(_pairs({"vol": 30}))
    with pytest.raises(ValueError, match=r"val_groups \['0009XX'\] are not among the groups"):
        split_by_group(_pairs(CAMVID_LIKE), val_groups=["0009XX"])
    with pytest.raises(ValueError, match="none is left to train on"):
        split_by_group(_pairs(CAMVID_LIKE), val_groups=list(CAMVID_LIKE))


def _write_folder(folder: Path, names: list[str]) -> None:
    import numpy as np
    from PIL import Image

    for sub in ("images", "masks"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    for k, name in enumerate(names):
        Image.fromarray(np.full((40, 40, 3), k, np.uint8)).save(folder / "images" / f"{name}.png")
        Image.fromarray(np.full((40, 40), k % 3, np.uint8)).save(folder / "masks" / f"{name}.png")


def test_the_folder_module_pools_train_and_val_and_holds_out_whole_drives(tmp_path: Path) -> None:
    from unet_spec import get_preset
    from unet_train.data import FolderDataModule

    _write_folder(tmp_path / "train", [f"A_{i}" for i in range(4)] + [f"B_{i}" for i in range(3)])
    _write_folder(tmp_path / "val", [f"A_{i}" for i in range(4, 6)])  # interleaved with train's A
    spec = get_preset("modern-small").replace(depth=2, base_filters=4)

    def names(split: str, **kwargs) -> tuple[set[str], set[str]]:
        data = FolderDataModule(str(tmp_path), num_classes=3, split=split, crop_size=32, **kwargs)
        data.attach_spec(spec)
        data.setup("fit")
        stems = lambda samples: {Path(name).stem for name, _, _ in samples}  # noqa: E731
        return stems(data.train_samples), stems(data.val_samples)

    train, val = names("random")  # the folders as given: drive A on both sides
    assert val == {"A_4", "A_5"} and {"A_0", "B_0"} <= train
    train, val = names("group", val_groups=["A"])
    assert val == {f"A_{i}" for i in range(6)} and train == {f"B_{i}" for i in range(3)}
    with pytest.raises(ValueError, match="val_groups needs data.split: group"):
        FolderDataModule(str(tmp_path), val_groups=["A"])
