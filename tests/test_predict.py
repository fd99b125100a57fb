"""``unet predict`` and the backend predictors: outputs, both backends, bad input."""

from __future__ import annotations

import os
import sys

import numpy as np
import pytest
from PIL import Image

from unet_cli.main import main
from unet_spec import get_preset, random_weights, save_weights

torch = pytest.importorskip("torch")  # the torch stack before TensorFlow (see unet_keras._imports)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("predict")
    spec = get_preset("modern-small")
    save_weights(random_weights(spec, seed=1), spec, root / "modern.safetensors")
    paper = get_preset("paper-small")
    save_weights(random_weights(paper, seed=1), paper, root / "paper.safetensors")
    rng = np.random.default_rng(0)
    Image.fromarray((rng.random((70, 90, 3)) * 255).astype(np.uint8)).save(root / "rgb.png")
    Image.fromarray((rng.random((20, 13)) * 255).astype(np.uint8)).save(root / "grey.png")
    (root / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    return root


def _predict(files, *extra, images=("rgb.png",), weights="modern.safetensors", out="out"):
    argv = ["predict", *(str(files / i) for i in images), "--weights", str(files / weights)]
    return main([*argv, "--out", str(files / out), *extra])


@pytest.mark.parametrize("backend", ["torch", "keras"])
def test_writes_mask_overlay_and_probabilities(files, backend):
    out = f"out-{backend}"
    assert _predict(files, "--backend", backend, "--save-probs", "--tile", "64", out=out) == 0
    mask = np.asarray(Image.open(files / out / "rgb_mask.png"))
    overlay = Image.open(files / out / "rgb_overlay.png")
    probs = np.load(files / out / "rgb_probs.npy")
    assert mask.shape == (70, 90) and set(np.unique(mask)) <= {0, 255}
    assert overlay.size == (90, 70) and overlay.mode == "RGB"
    assert probs.shape == (2, 70, 90)
    np.testing.assert_allclose(probs.sum(0), 1.0, atol=1e-5)  # softmax head applied
    np.testing.assert_array_equal(mask, (probs.argmax(0) * 255).astype(np.uint8))


def test_backends_agree(files):
    from unet_keras.predict import KerasPredictor
    from unet_torch.predict import TorchPredictor

    spec = get_preset("paper-small")
    weights = random_weights(spec, seed=2)
    image = np.random.default_rng(3).random((1, 45, 61)).astype(np.float32)
    a = TorchPredictor(spec, weights).predict(image, tile=220, batch_size=2)
    b = KerasPredictor(spec, weights).predict(image, tile=220, batch_size=2)
    c = KerasPredictor(spec, weights, use_predict=True).predict(image, tile=220)
    assert a.shape == (2, 45, 61)
    assert np.abs(a - b).max() < 1e-4 and np.abs(b - c).max() < 1e-5


def test_tta_and_grey_conversion(files):
    assert _predict(files, "--tta", "--convert", "--tile", "32", images=("grey.png",)) == 0
    assert np.asarray(Image.open(files / "out" / "grey_mask.png")).shape == (20, 13)


def test_mirror_only_tta(files):
    argv = ("--tta", "--tta-mode", "hflip", "--convert", "--tile", "32")
    assert _predict(files, *argv, images=("grey.png",)) == 0
    assert np.asarray(Image.open(files / "out" / "grey_mask.png")).shape == (20, 13)
    assert _predict(files, "--tta", "--tta-mode", "rot", images=("grey.png",)) == 2


def test_image_smaller_than_the_tile(files):
    # A 20×13 grey image with the paper model's 572 tile: mirrored into one tile.
    assert _predict(files, "--tile", "252", images=("grey.png",), weights="paper.safetensors") == 0
    assert np.asarray(Image.open(files / "out" / "grey_mask.png")).shape == (20, 13)


def test_bad_images_are_named_and_the_rest_still_run(files, capsys):
    images = ("missing.png", "broken.png", "grey.png", "rgb.png")
    code = _predict(files, images=images, out="mixed")
    err = capsys.readouterr().err
    assert code == 2
    assert "missing.png: no such image" in err
    assert "broken.png: cannot read image" in err
    assert "grey.png: image has 1 channel(s)" in err and "--convert" in err
    assert "Traceback" not in err
    assert (files / "mixed" / "rgb_mask.png").is_file()
    assert not (files / "mixed" / "grey_mask.png").exists()


def test_weights_that_do_not_match_the_spec(files, capsys):
    code = main(
        ["predict", str(files / "rgb.png"), "--weights", str(files / "modern.safetensors"),
         "--preset", "seed-small", "--out", str(files / "x")]
    )  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2 and "modern.safetensors" in err and "does not match the given one" in err


def test_missing_weights_and_invalid_tile(files, capsys):
    assert _predict(files, weights="nope.safetensors") == 2
    assert "nope.safetensors" in capsys.readouterr().err
    assert _predict(files, "--tile", "60") == 2
    assert "48, 64" in capsys.readouterr().err
    assert _predict(files, "--overlap", "1") == 2
    assert (
        "argument --overlap: must be a number in [0, 1). Received: '1'" in capsys.readouterr().err
    )


@pytest.mark.parametrize("num_classes", [1, 2, 3, 300])
def test_written_masks_decode_to_the_class_ids(num_classes):
    from unet_infer.masks import decode_mask, encode_mask

    ids = np.random.default_rng(0).integers(0, max(num_classes, 2), size=(5, 7))
    np.testing.assert_array_equal(decode_mask(encode_mask(ids, num_classes), num_classes), ids)


def test_masks_that_encode_mask_never_writes_are_refused():
    from unet_infer.masks import decode_mask

    with pytest.raises(ValueError, match="class ids below"):
        decode_mask(np.full((2, 2), 3, np.uint8), 3)
    with pytest.raises(ValueError, match="only 0 and 255"):
        decode_mask(np.full((2, 2), 1, np.uint8), 2)


def test_unwritable_output_folder(files, capsys):
    # A folder below a file cannot be made, whoever runs the test (root ignores permissions).
    assert _predict(files, out="rgb.png/masks") == 2
    err = capsys.readouterr().err
    assert "rgb.png/masks: output folder cannot be written" in err and "Traceback" not in err


def test_cli_subprocess_exit_code(files):
    import subprocess

    proc = subprocess.run(
        [sys.executable, "-m", "unet_cli", "predict", str(files / "nothing.png"),
         "--weights", str(files / "modern.safetensors"), "--out", str(files / "sub")],
        capture_output=True, text=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )  # fmt: skip
    assert proc.returncode == 2
    assert "nothing.png: no such image" in proc.stderr and "Traceback" not in proc.stderr


def test_device_names_are_read_alike_and_nonsense_is_one_line(files, capsys):
    """``--device`` means the same in every subcommand (unet_torch.predict.resolve_device):
    ``auto`` picks the GPU only when there is one; anything else is one line and exit 2."""
    import torch

    assert _predict(files, "--device", "auto", "--tile", "64", out="auto") == 0
    assert _predict(files, "--device", "tpu", out="tpu") == 2
    assert "device must be auto, cpu, cuda or cuda:N" in capsys.readouterr().err
    if not torch.cuda.is_available():
        assert _predict(files, "--device", "cuda:0", out="gpu") == 2
        assert "sees no CUDA GPU" in capsys.readouterr().err
