"""Grouped splits: whole sequences or volumes go to one side, never both."""

from __future__ import annotations

from pathlib import Path

import pytest

from unet_spec.data import group_of, split_by_group


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
