"""``unet port`` between every pair of formats, and every bad input refused with nothing written."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest

from unet_bridge import load_any_weights, save_any_weights
from unet_cli.main import main
from unet_spec import get_preset, random_weights

# A tiny spec (batch norm, transposed convs) keeps 20 ports quick; --spec exercises spec files.
SPEC = get_preset("modern-small").replace(depth=2, base_filters=4)
FORMATS = [".ckpt", ".pt", ".safetensors", ".keras", ".weights.h5"]


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    folder = tmp_path_factory.mktemp("port")
    weights = random_weights(SPEC, seed=9)
    for suffix in FORMATS:
        save_any_weights(weights, SPEC, folder / f"src{suffix}")
    (folder / "spec.json").write_text(json.dumps(SPEC.to_dict()))
    return folder, weights


@pytest.mark.parametrize(
    ("src", "dst"), [p for p in itertools.product(FORMATS, FORMATS) if p[0] != p[1]]
)
def test_every_pair_is_bit_exact(sources, tmp_path, src, dst) -> None:
    folder, weights = sources
    out = tmp_path / f"out{dst}"
    argv = ["port", str(folder / f"src{src}"), str(out), "--spec", str(folder / "spec.json")]
    assert main([*argv, "--no-verify"]) == 0
    ported, spec, *_ = load_any_weights(out)
    assert spec == SPEC
    for name, value in weights.items():
        np.testing.assert_array_equal(ported[name], value, err_msg=name)
    assert sorted(p.name for p in tmp_path.iterdir()) == [out.name]  # no temporary files left


@pytest.mark.parametrize(("src", "dst"), [(".ckpt", ".keras"), (".keras", ".pt")])
def test_port_verifies(sources, tmp_path, capsys, src, dst) -> None:
    folder, _ = sources
    out = tmp_path / f"out{dst}"
    assert main(["port", str(folder / f"src{src}"), str(out)]) == 0
    assert "verified: reload bit-exact; PyTorch vs Keras" in capsys.readouterr().out


@pytest.mark.kernel_free  # refused before anything is computed
def test_non_finite_weights_exit_2_and_write_nothing(tmp_path, capsys) -> None:
    weights = random_weights(SPEC, seed=9)
    weights["enc1.bn1.running_var"][0] = np.nan
    src = tmp_path / "nan.safetensors"
    save_any_weights(weights, SPEC, src)
    dst = tmp_path / "out.keras"
    assert main(["port", str(src), str(dst)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "enc1.bn1.running_var holds 1 non-finite value" in err[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == [src.name]


def test_a_port_out_of_tolerance_exits_1_and_writes_nothing(
    sources, tmp_path, capsys, plant_keras_weights
) -> None:
    """A Keras twin that computes something else (a shifted bias) fails the verification."""
    folder, _ = sources

    def shift(weights) -> None:
        weights["head.bias"] = weights["head.bias"] + np.float32(1e-3)

    plant_keras_weights(shift)
    dst = tmp_path / "out.keras"
    assert main(["port", str(folder / "src.safetensors"), str(dst)]) == 1
    assert "verification failed, nothing written" in capsys.readouterr().out
    assert list(tmp_path.iterdir()) == []


@pytest.mark.kernel_free  # weights read and compared bit for bit; nothing is computed
def test_checkpoint_loads_into_the_training_system(sources) -> None:
    from unet_train.system import SegmentationSystem

    folder, weights = sources
    system = SegmentationSystem.load_from_checkpoint(folder / "src.ckpt", map_location="cpu")
    assert system.spec == SPEC
    np.testing.assert_array_equal(
        system.model.state_dict()["enc1.conv1.weight"].numpy(), weights["enc1.conv1.weight"]
    )


def _refused(argv, capsys, folder, text: str) -> None:
    before = sorted(p.name for p in folder.iterdir())
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("unet port: error:") and text in err[-1], err[-1]
    assert sorted(p.name for p in folder.iterdir()) == before  # nothing written


@pytest.mark.kernel_free  # refused before anything is computed
@pytest.mark.parametrize("how", ["truncated", "garbage"])
@pytest.mark.parametrize("suffix", FORMATS)
def test_damaged_file(sources, tmp_path, capsys, suffix, how) -> None:
    folder, _ = sources
    bad = tmp_path / f"bad{suffix}"
    data = (folder / f"src{suffix}").read_bytes()
    bad.write_bytes(data[: len(data) // 2] if how == "truncated" else b"\x00garbage" * 64)
    argv = [
        "port",
        str(bad),
        str(tmp_path / "out.safetensors"),
        "--spec",
        str(folder / "spec.json"),
    ]
    _refused(argv, capsys, tmp_path, str(bad))


@pytest.mark.kernel_free  # refused before anything is computed
def test_unknown_extensions(sources, tmp_path, capsys) -> None:
    folder, _ = sources
    _refused(["port", str(folder / "src.pt"), str(tmp_path / "out.npz")], capsys, tmp_path,
             "unknown extension '.npz'")  # fmt: skip
    (tmp_path / "w.dat").write_bytes(b"x")
    _refused(["port", str(tmp_path / "w.dat"), str(tmp_path / "o.pt")], capsys, tmp_path,
             "unknown extension '.dat'")  # fmt: skip


def test_a_legacy_h5_model_lands_proven_through_its_head(sources, tmp_path, capsys) -> None:
    """A legacy .h5 holds the whole model with the head's activation folded in, as that era's
    Keras code saves it: it is judged through that activation, and computes the twin's output."""
    import keras

    folder, weights = sources
    dst = tmp_path / "out.h5"
    assert main(["port", str(folder / "src.pt"), str(dst)]) == 0, capsys.readouterr()
    assert "out.h5 vs PyTorch" in capsys.readouterr().out
    model = keras.saving.load_model(dst, compile=False)
    assert model.layers[-1].get_config()["activation"] in ("sigmoid", "softmax")


@pytest.mark.kernel_free  # refused before anything is computed
def test_spec_mismatch(sources, tmp_path, capsys) -> None:
    folder, _ = sources
    argv = ["port", str(folder / "src.ckpt"), str(tmp_path / "o.pt"), "--preset", "modern-small"]
    _refused(argv, capsys, tmp_path, "base_filters: file 4 vs given 16")


@pytest.mark.kernel_free  # refused before anything is computed
def test_wrong_shape_is_named(sources, tmp_path, capsys) -> None:
    import torch

    folder, weights = sources
    state = {k: torch.from_numpy(v) for k, v in weights.items()}
    state["dec1.up.weight"] = torch.zeros(3, 3, 2, 2)
    torch.save(state, tmp_path / "bad.pt")
    argv = ["port", str(tmp_path / "bad.pt"), str(tmp_path / "o.safetensors"), "--spec",
            str(folder / "spec.json")]  # fmt: skip
    _refused(argv, capsys, tmp_path, "dec1.up.weight: expected (8, 4, 2, 2), received (3, 3, 2, 2)")


@pytest.mark.kernel_free  # refused before anything is computed
def test_no_spec_anywhere(sources, tmp_path, capsys) -> None:
    import torch

    folder, weights = sources
    torch.save({k: torch.from_numpy(v) for k, v in weights.items()}, tmp_path / "plain.pt")
    argv = ["port", str(tmp_path / "plain.pt"), str(tmp_path / "o.safetensors")]
    _refused(argv, capsys, tmp_path, "carries no spec; give --preset NAME or --spec FILE")


@pytest.mark.kernel_free  # refused before anything is computed
def test_bad_destinations(sources, tmp_path, capsys) -> None:
    folder, _ = sources
    src = str(folder / "src.pt")
    _refused(["port", src, str(tmp_path / "missing" / "o.keras")], capsys, tmp_path,
             "does not exist")  # fmt: skip
    _refused(["port", src, src], capsys, folder, "the destination is the source file")
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        _refused(["port", src, str(locked / "o.safetensors")], capsys, locked, "not writable")
    finally:
        locked.chmod(0o755)


@pytest.mark.parametrize("prefix", ["", "model.", "module."])
def test_a_bare_safetensors_state_dict_is_read_with_a_spec(sources, tmp_path, prefix) -> None:
    """Safetensors saved by other code (no canonical metadata, maybe a prefix) port like any file."""
    import torch
    from safetensors.torch import save_file

    folder, weights = sources
    bare = tmp_path / "bare.safetensors"
    save_file({prefix + k: torch.from_numpy(v.copy()) for k, v in weights.items()}, bare)
    with pytest.raises(ValueError, match="no spec"):
        load_any_weights(bare)
    read, spec, *_ = load_any_weights(bare, SPEC)
    assert spec == SPEC and all(np.array_equal(read[k], v) for k, v in weights.items())
    out = tmp_path / "out.safetensors"
    assert main(["port", str(bare), str(out), "--spec", str(folder / "spec.json")]) == 0
    assert load_any_weights(out)[1] == SPEC  # the port writes the canonical metadata


@pytest.mark.kernel_free  # refused before anything is computed
def test_a_deployment_artefact_is_refused_before_any_work(sources, tmp_path, capsys) -> None:
    folder, _ = sources
    dst = tmp_path / "model.onnx"
    assert main(["port", str(folder / "src.safetensors"), str(dst)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "deployment artefact" in err[0] and "unet export" in err[0]
    assert list(tmp_path.iterdir()) == []
