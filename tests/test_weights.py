"""Canonical safetensors files: round trip, metadata, and every kind of bad file."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save_file

from unet_spec import canonical_shapes, get_preset, load_weights, random_weights, save_weights

SPEC = get_preset("modern-small")


@pytest.fixture
def saved(tmp_path: Path) -> Path:
    return save_weights(random_weights(SPEC, seed=1), SPEC, tmp_path / "w.safetensors")


def test_round_trip_is_exact(saved: Path) -> None:
    weights, spec = load_weights(saved, SPEC)
    assert spec == SPEC
    original = random_weights(SPEC, seed=1)
    assert set(weights) == set(original)
    for name, value in original.items():
        assert weights[name].dtype == np.float32
        np.testing.assert_array_equal(weights[name], value)


def test_saved_file_has_the_usual_permissions(saved: Path) -> None:
    mask = os.umask(0)
    os.umask(mask)
    assert saved.stat().st_mode & 0o777 == 0o666 & ~mask


def test_names_follow_the_plan() -> None:
    shapes = canonical_shapes(SPEC)
    assert shapes["enc1.conv1.weight"] == (16, 3, 3, 3)
    assert shapes["dec4.up.weight"] == (256, 128, 2, 2)  # transposed conv: (in, out, kh, kw)
    assert shapes["enc1.bn1.running_var"] == (16,)
    assert "enc1.bn1.num_batches_tracked" not in shapes


def test_random_weights_are_reproducible_and_not_trivial() -> None:
    a, b = random_weights(SPEC, seed=3), random_weights(SPEC, seed=3)
    assert all(np.array_equal(a[n], b[n]) for n in a)
    assert not np.array_equal(a["enc1.conv1.weight"], random_weights(SPEC, 4)["enc1.conv1.weight"])
    assert a["enc1.bn1.running_var"].min() > 0


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="nope.safetensors"):
        load_weights(tmp_path / "nope.safetensors")


def test_spec_mismatch_names_fields(saved: Path) -> None:
    with pytest.raises(
        ValueError, match=r"spec does not match the given one \(base_filters: file 16 vs given 64"
    ):
        load_weights(saved, get_preset("modern"))


def test_truncated_file(saved: Path, tmp_path: Path) -> None:
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(saved.read_bytes()[:-100])
    with pytest.raises(ValueError, match="cut.safetensors: not a readable safetensors file"):
        load_weights(cut)


def test_not_safetensors(tmp_path: Path) -> None:
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"PK\x03\x04 this is a zip, not safetensors")
    with pytest.raises(ValueError, match="junk.safetensors: not a readable"):
        load_weights(junk)


def test_safetensors_without_metadata(tmp_path: Path) -> None:
    path = tmp_path / "plain.safetensors"
    save_file({"x": np.zeros(3, np.float32)}, str(path))
    with pytest.raises(ValueError, match="without unet canonical metadata"):
        load_weights(path)


def _write_raw(path: Path, tensors: dict[str, np.ndarray]) -> Path:
    meta = {"format": "unet-canonical", "format_version": "1", "spec": SPEC.to_json()}
    save_file(tensors, str(path), metadata=meta)
    return path


def test_missing_and_extra_tensors(tmp_path: Path) -> None:
    weights = random_weights(SPEC)
    del weights["dec1.conv2.bias"]
    weights["dec1.conv3.weight"] = np.zeros((1,), np.float32)
    path = _write_raw(tmp_path / "bad.safetensors", weights)
    with pytest.raises(
        ValueError, match=r"missing dec1\.conv2\.bias; unexpected dec1\.conv3\.weight"
    ):
        load_weights(path)


def test_wrong_shape_names_tensor(tmp_path: Path) -> None:
    weights = random_weights(SPEC)
    weights["enc2.conv1.weight"] = np.zeros((32, 16, 3, 2), np.float32)
    path = _write_raw(tmp_path / "shape.safetensors", weights)
    with pytest.raises(
        ValueError,
        match=r"enc2\.conv1\.weight: expected \(32, 16, 3, 3\), received \(32, 16, 3, 2\)",
    ):
        load_weights(path)


def test_save_refuses_bad_weights_and_writes_nothing(tmp_path: Path) -> None:
    weights = random_weights(SPEC)
    weights.pop("head.bias")
    target = tmp_path / "w.safetensors"
    with pytest.raises(ValueError, match="missing head.bias"):
        save_weights(weights, SPEC, target)
    assert list(tmp_path.iterdir()) == []


def test_save_into_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        save_weights(random_weights(SPEC), SPEC, tmp_path / "no" / "w.safetensors")
