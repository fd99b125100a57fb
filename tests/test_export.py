"""``unet export``: every deployment format runs in its own runtime and is proven before it lands;
bad input is refused with one line, exit 2 and nothing written; a planted defect exits 1."""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json

import numpy as np
import pytest

from unet_bridge import (
    backend_for,
    export,
    export_model,
    find_metrics,
    load_any_weights,
    load_predictor,
    run_artefact,
    torch_model,
    write_model_card,
)
from unet_bridge.artefacts import onnx
from unet_bridge.parity import torch_taps
from unet_cli.main import main
from unet_spec import NoiseTolerance, get_preset, random_weights, save_weights

# Tiny specs: one that takes any multiple of 2**depth (dynamic H and W), one that resizes its
# skips (one size per model).
SPEC = get_preset("modern-small").replace(depth=2, base_filters=4)
FIXED = get_preset("seed-small").replace(depth=2, base_filters=4)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    from PIL import Image

    folder = tmp_path_factory.mktemp("export")
    save_weights(random_weights(SPEC, seed=3), SPEC, folder / "any.safetensors")
    save_weights(random_weights(FIXED, seed=4), FIXED, folder / "fixed.safetensors")
    image = (np.random.default_rng(2).random((40, 28, 3)) * 255).astype(np.uint8)
    Image.fromarray(image).save(folder / "img.png")
    return folder


@pytest.fixture(scope="module")
def onnx_file(files, tmp_path_factory):
    """One ONNX export through the CLI (checked on random input and an image), shared."""
    dst = tmp_path_factory.mktemp("onnx") / "model.onnx"
    argv = ["export", str(files / "any.safetensors"), str(dst), "--image", str(files / "img.png")]
    assert main([*argv, "--opset", "18", "--json", str(dst.with_suffix(".json"))]) == 0
    return dst


@pytest.fixture(scope="module")
def exported(files, tmp_path_factory):
    """``exported(suffix)``: the dynamic spec exported once per format through the CLI (with its
    card), and what the CLI printed. An export costs seconds (the LiteRT converter above all); the
    tests that run the same artefact share it (the ONNX one is ``onnx_file``)."""
    done = {}

    def get(suffix):
        if suffix not in done:
            dst = tmp_path_factory.mktemp("artefact") / f"model{suffix}"
            printed = io.StringIO()
            with contextlib.redirect_stdout(printed):
                assert main(["export", str(files / "any.safetensors"), str(dst)]) == 0
            done[suffix] = dst, printed.getvalue()
        return done[suffix]

    return get


@pytest.fixture(scope="module")
def fp16_onnx(files, tmp_path_factory):
    """The dynamic spec exported at fp16 (``export_model``), and its report."""
    weights, spec, *_ = load_any_weights(files / "any.safetensors")
    dst = tmp_path_factory.mktemp("fp16") / "h.onnx"
    return dst, export_model(weights, spec, dst, precision="fp16", card=False)


def _torch_logits(spec, weights, x):
    out = spec.plan().output.name
    return torch_taps(torch_model(spec, weights), x, [out])[out]


def _only(folder, *names):
    assert sorted(p.name for p in folder.iterdir()) == sorted(names)  # no temporary files left


@pytest.mark.parametrize("suffix", [".onnx", ".pt2", ".tflite", ".savedmodel"])
def test_dynamic_export_runs_at_other_sizes(files, onnx_file, exported, suffix) -> None:
    if suffix == ".onnx":
        dst = onnx_file
        report = json.loads(dst.with_suffix(".json").read_text())
        assert report["passed"] and [c["input"] for c in report["checks"]] == ["random", "img.png"]
    else:
        dst, out = exported(suffix)
        assert "verified" in out and "random 2x" in out
    card = dst / "README.md" if suffix == ".savedmodel" else dst.with_name(dst.name + ".README.md")
    assert "## Parity" in card.read_text() and '"skip_merge": "none"' in card.read_text()
    # Batch, H and W all dynamic: a batch of 3 at a non-square size the export never saw.
    weights, _ = load_any_weights(files / "any.safetensors")[:2]
    x = np.random.default_rng(0).random((3, 3, 20, 12), dtype=np.float32)
    got, want = run_artefact(dst, x), _torch_logits(SPEC, weights, x)
    assert got.shape == want.shape == (3, 2, 20, 12)
    np.testing.assert_allclose(got, want, atol=1e-4 * np.abs(want).max())


def test_onnx_metadata_holds_spec_and_size_rule(onnx_file) -> None:
    dst = onnx_file
    meta = onnx.read_metadata(dst)
    assert json.loads(meta["unet_spec"]) == SPEC.to_dict()
    assert "multiples of 4" in meta["unet_valid_sizes"]
    shape = onnx.session(dst).get_inputs()[0].shape
    assert isinstance(shape[0], str) and isinstance(shape[2], str)  # symbolic batch, H, W
    assert export.artefact_spec(dst) == SPEC


def test_fixed_size_spec_exports_one_size_with_dynamic_batch(files, tmp_path) -> None:
    dst = tmp_path / "seed.onnx"
    argv = ["export", str(files / "fixed.safetensors"), str(dst), "--size", "60", "--no-card"]
    assert main(argv) == 0
    _only(tmp_path, "seed.onnx")  # --no-card: the artefact alone
    shape = onnx.session(dst).get_inputs()[0].shape
    assert shape[1:] == [3, 60, 60] and isinstance(shape[0], str)
    assert "H = W = 60 only" in onnx.read_metadata(dst)["unet_valid_sizes"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["any.safetensors", "out.xyz"], "unknown extension '.xyz'"),
        (["any.safetensors", "out.keras"], "not a deployment format"),
        (["any.safetensors", "out.onnx", "--size", "30"], "does not fit"),
        (["fixed.safetensors", "out.onnx", "--dynamic"], "cannot be dynamic"),
        (["any.safetensors", "out.pt2", "--precision", "fp16"], "not available"),
        (["any.safetensors", "out.onnx", "--opset", "9"], "--opset must be"),
        (["missing.safetensors", "out.onnx"], "no such file"),
    ],
)
def test_bad_input_exits_2_and_writes_nothing(files, tmp_path, capsys, args, message) -> None:
    argv = [str(files / args[0]), str(tmp_path / args[1]), *args[2:]]
    assert main(["export", *argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err
    _only(tmp_path)


def test_existing_folder_exits_2(files, tmp_path, capsys) -> None:
    (tmp_path / "m.savedmodel").mkdir()
    assert main(["export", str(files / "any.safetensors"), str(tmp_path / "m.savedmodel")]) == 2
    assert "already exists" in capsys.readouterr().err
    _only(tmp_path, "m.savedmodel")
    assert not any((tmp_path / "m.savedmodel").iterdir())


def test_unloadable_artefact_exits_2(files, tmp_path, capsys, monkeypatch) -> None:
    def garbage(weights, spec, path, input_size=None, **options):
        path.write_bytes(b"not an onnx model")

    entry = export.EXPORTS[".onnx"]
    planted = dataclasses.replace(entry, fmt=dataclasses.replace(entry.fmt, write=garbage))
    monkeypatch.setitem(export.EXPORTS, ".onnx", planted)
    assert main(["export", str(files / "any.safetensors"), str(tmp_path / "m.onnx")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "onnxruntime cannot load it" in err[0]
    _only(tmp_path)


@pytest.mark.parametrize(("suffix", "precision"), [(".pt2", "fp32"), (".onnx", "fp16")])
def test_planted_defect_exits_1_and_writes_nothing(
    files, tmp_path, capsys, monkeypatch, request, suffix, precision
) -> None:
    # The writer exports one kernel transposed: far above fp32 noise, and above fp16 rounding.
    entry = export.EXPORTS[suffix]

    def transposed_kernel(weights, spec, path, *args, **options):
        weights = dict(weights)
        weights["enc2.conv1.weight"] = np.swapaxes(weights["enc2.conv1.weight"], 2, 3).copy()
        return entry.fmt.write(weights, spec, path, *args, **options)

    def transposed_in_the_file(weights, spec, path, *args, **options):
        # The same artefact for one export less: the fp16 export of the same weights with that
        # kernel transposed in the file. A square kernel's transpose is exact in fp16, and the
        # exporter writes each canonical tensor as the initializer of its name, so the file is
        # the one the exporter writes from the transposed weights.
        import onnx
        from onnx import numpy_helper

        assert options["precision"] == "fp16"
        model = onnx.load(good)
        (kernel,) = [t for t in model.graph.initializer if t.name == "enc2.conv1.weight"]
        swapped = np.swapaxes(numpy_helper.to_array(kernel), 2, 3).copy()
        kernel.CopyFrom(numpy_helper.from_array(swapped, kernel.name))
        onnx.save(model, path)
        return path

    if precision == "fp16":
        good, plant = request.getfixturevalue("fp16_onnx")[0], transposed_in_the_file
    else:
        plant = transposed_kernel
    planted = dataclasses.replace(entry, fmt=dataclasses.replace(entry.fmt, write=plant))
    monkeypatch.setitem(export.EXPORTS, suffix, planted)
    dst = tmp_path / f"m{suffix}"
    argv = ["export", str(files / "any.safetensors"), str(dst), "--precision", precision]
    assert main(argv) == 1
    assert "verification failed, nothing written" in capsys.readouterr().out
    _only(tmp_path)


def test_fp16_needs_and_states_its_looser_tolerance(files, fp16_onnx) -> None:
    weights, spec, *_ = load_any_weights(files / "any.safetensors")
    path, result = fp16_onnx
    assert result.ok and result.tolerance.margin == 16 * 8192
    xs = {"random": np.random.default_rng(1).random((1, 3, 16, 16), dtype=np.float32)}
    # Judged by the fp32 tolerance, fp16 rounding is out of it: the looser limit is needed, and
    # the report says how far the artefact is (argmax agreement included).
    strict = export.verify_artefact(weights, spec, path, xs, NoiseTolerance())
    assert not strict[0].passed
    assert 0.99 <= result.checks[0].argmax_agreement <= 1.0


def test_onnx_predict_backend_matches_torch(files, onnx_file, tmp_path) -> None:
    for backend, weights in (("onnx", onnx_file), ("torch", files / "any.safetensors")):
        argv = ["predict", str(files / "img.png"), "--weights", str(weights), "--backend"]
        assert main([*argv, backend, "--out", str(tmp_path / backend), "--save-probs"]) == 0
    got, want = (np.load(tmp_path / b / "img_probs.npy") for b in ("onnx", "torch"))
    assert got.shape == (2, 40, 28)
    np.testing.assert_allclose(got, want, atol=1e-4)


def test_artefact_backends_refuse_a_weight_file_and_twins_refuse_an_artefact(files, onnx_file):
    with pytest.raises(ValueError, match=r"the onnx backend runs an exported \.onnx artefact"):
        load_predictor(files / "any.safetensors", "onnx")
    with pytest.raises(ValueError, match="use --backend onnx"):
        load_predictor(onnx_file, "keras")


@pytest.mark.parametrize("suffix", [".pt2", ".tflite"])
def test_any_artefact_predicts_through_the_tiling_engine_by_its_suffix(
    files, exported, tmp_path, suffix
) -> None:
    """No --backend: the artefact's suffix picks its runtime, and its tiled prediction is the
    PyTorch twin's (the image is larger than one tile, so tiles are stitched)."""
    dst, _ = exported(suffix)
    assert backend_for(dst) == suffix[1:]
    for name, weights in (("artefact", dst), ("torch", files / "any.safetensors")):
        argv = ["predict", str(files / "img.png"), "--weights", str(weights), "--tile", "16"]
        assert main([*argv, "--out", str(tmp_path / name), "--save-probs"]) == 0
    got, want = (np.load(tmp_path / n / "img_probs.npy") for n in ("artefact", "torch"))
    assert got.shape == (2, 40, 28)
    np.testing.assert_allclose(got, want, atol=1e-4)


def test_model_card_with_training_metrics(tmp_path) -> None:
    # The shape of a training run's metrics.json (unet_train.callbacks.RunArtifacts).
    metrics = {
        "monitor": "val/miou", "epochs": 12, "global_step": 960,
        "data": {"module": "SyntheticDataModule", "num_train": 256, "image_size": 64},
        "best": {"epoch": 9, "val/miou": 0.8123, "val/dice": 0.9001, "val/dice_3": 0.5},
        "last": {"epoch": 11, "val/miou": 0.8011, "val/dice": 0.8950},
    }  # fmt: skip
    path = write_model_card(tmp_path, SPEC, parity={"PyTorch vs Keras": "rel 1e-7"},
                               metrics=metrics)  # fmt: skip
    text = path.read_text()
    assert path == tmp_path / "README.md"
    assert "## Training" in text and "SyntheticDataModule" in text and "steps: 960" in text
    assert "| best: 9 | 0.9001 | 0.8123 |" in text and "| last: 11 | 0.8950 | 0.8011 |" in text
    assert "val/dice_3" not in text  # per-class figures stay in metrics.json
    (tmp_path / "metrics.json").write_text(json.dumps(metrics))
    assert find_metrics(tmp_path / "model.safetensors") == metrics
