"""A new user's first hour: a folder trains with the one documented command, nothing is skipped in
silence, the terminal shows the project's own lines, and paths lead somewhere."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from unet_data.survey import survey_masks
from unet_runtime.cache import CACHE_ENV_VAR, cache_dir
from unet_spec import make_spec
from unet_train.sizing import fitting_crops, training_layout

REPO = Path(__file__).resolve().parents[1]


# -- folders a user brings -------------------------------------------------------------------------
def rgb_folder(root: Path, n: int = 6, h: int = 40, w: int = 56) -> Path:
    """RGB .jpg images with 0/255 .png masks (a bright disc on a dark background)."""
    rng = np.random.default_rng(0)
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    yy, xx = np.mgrid[:h, :w]
    for i in range(n):
        disc = (yy - rng.integers(10, h - 10)) ** 2 + (xx - rng.integers(10, w - 10)) ** 2 < 60
        image = rng.integers(0, 60, (h, w, 3)).astype(np.uint8)
        image[disc] += np.array([150, 100, 50], np.uint8)
        Image.fromarray(image).save(root / "images" / f"0016E5_{i:03d}.jpg")
        Image.fromarray((disc * 255).astype(np.uint8)).save(root / "masks" / f"0016E5_{i:03d}.png")
    return root


def grey_tiff_folder(root: Path, n: int = 6, h: int = 36, w: int = 44) -> Path:
    """Grey 16-bit .tif images with class-id .tif masks (three classes)."""
    import tifffile

    rng = np.random.default_rng(1)
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for i in range(n):
        mask = np.zeros((h, w), np.uint8)
        mask[4 : 16 + i, 5:20] = 1
        mask[20:32, 24 : 38 - i] = 2
        image = rng.random((h, w)) * 0.3 + mask * 0.3
        tifffile.imwrite(root / "images" / f"s{i}.tif", (image * 65535).astype(np.uint16))
        tifffile.imwrite(root / "masks" / f"s{i}.tif", mask)
    return root


def snapshot(folder: Path) -> dict[str, str]:
    """Every path under ``folder`` (folders too) with its content's hash."""
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        if p.is_file()
        else "/"
        for p in sorted(folder.rglob("*"))
    }


def train(args: list[str], cwd: Path, env_extra: dict | None = None) -> subprocess.CompletedProcess:
    import os

    env = {**os.environ, CACHE_ENV_VAR: str(cwd / "cache"), **(env_extra or {})}
    cmd = [sys.executable, str(REPO / "train.py"), "fit", *args]
    return subprocess.run(cmd, capture_output=True, text=True, cwd=cwd, env=env, timeout=600)


#: Few steps, a tiny network: the command is the documented one, the run is short.
SHORT = ["--trainer.max_epochs", "1", "--data.samples_per_epoch", "4", "--data.batch_size", "2",
         "--model.spec", "{depth: 2, base_filters: 4}", "--trainer.enable_progress_bar", "false",
         "--artifacts.overlays", "2"]  # fmt: skip

RUN_FILES = ("config.yaml", "metrics.json", "model.safetensors", "config.json", "model.keras",
             "overlays.png", "curves.png", "README.md", "checkpoints/best.ckpt",
             "checkpoints/last.ckpt")  # fmt: skip


# -- measuring ---------------------------------------------------------------------------------------
def test_masks_are_measured_binary_index_and_palette(tmp_path):
    rgb = rgb_folder(tmp_path / "rgb", n=2)
    grey = grey_tiff_folder(tmp_path / "grey", n=2)
    assert survey_masks(sorted((rgb / "masks").iterdir()))[:3] == ("binary", 2, None)
    assert survey_masks(sorted((grey / "masks").iterdir()))[:3] == ("index", 3, None)
    colour = tmp_path / "c.png"
    pixels = np.zeros((4, 4, 3), np.uint8)
    pixels[:2] = (128, 64, 0)
    pixels[3, 3] = (0, 0, 255)
    Image.fromarray(pixels).save(colour)
    found = survey_masks([colour])
    assert found.encoding == "palette" and found.num_classes == 3
    assert found.palette == [[0, 0, 0], [0, 0, 255], [128, 64, 0]]
    noisy = tmp_path / "n.png"
    Image.fromarray(np.arange(256, dtype=np.uint8).reshape(16, 16)).save(noisy)
    with pytest.raises(ValueError, match=r"n\.png: mask values 0, 1, .* data\.masks\.ignore_value"):
        survey_masks([noisy])


def test_crop_sizes_come_from_the_spec_and_the_images():
    spec = make_spec("modern-small", None, 3, 2)
    layout = training_layout(spec, None, [(180, 240), (300, 300)], ["a.png", "b.png"])
    assert layout.input_size == (176, 176) and spec.plan().is_valid_size(176)
    with pytest.raises(ValueError) as err:
        training_layout(spec, 192, [(180, 240)], ["a.png"])
    line = str(err.value)
    assert line.startswith("data.crop_size 192 > image 180×240;") and "\n" not in line
    assert "valid crop sizes for this spec up to 180: 176, 160, 144" in line
    # Valid padding: the target (the output) must fit; the input may be larger than the image.
    paper = make_spec("paper-small", None, 1, 2)
    fits = fitting_crops(paper, 180)
    assert fits and all(max(paper.plan().layout(s).output_size) <= 180 for s in fits)
    assert max(
        paper.plan().layout(fits[0] + 16).output_size
    ) > 180 or not paper.plan().is_valid_size(fits[0] + 16)
    with pytest.raises(ValueError, match=r"data\.crop_size 380 > .*its training target is 196×196"):
        training_layout(paper, 380, [(180, 240)], ["a.png"])


def test_cache_dir_is_the_users_unless_named(monkeypatch, tmp_path):
    monkeypatch.delenv(CACHE_ENV_VAR, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    if sys.platform.startswith("linux"):
        assert cache_dir() == tmp_path / "xdg" / "unet"
    monkeypatch.setenv(CACHE_ENV_VAR, str(tmp_path / "mine"))
    assert cache_dir() == tmp_path / "mine"


# -- the two folders of the promise ----------------------------------------------------------------
@pytest.mark.parametrize(
    "make", [rgb_folder, grey_tiff_folder], ids=["rgb-jpg-0-255", "grey-tif-ids"]
)
def test_a_folder_trains_with_the_documented_command(tmp_path, make, run_train, monkeypatch):
    data = make(tmp_path / "mydata")
    before = snapshot(data)
    args = ["--config", str(REPO / "configs" / "folder.yaml"), "--data.root", str(data), *SHORT]
    in_its_own_process = make is rgb_folder  # the terminal a user sees is checked on this one
    if in_its_own_process:
        run = train(args, tmp_path)
    else:  # the same command in this process (conftest.py's run_train)
        monkeypatch.setenv(CACHE_ENV_VAR, str(tmp_path / "cache"))
        run = run_train(tmp_path, "fit", *args)
    assert run.returncode == 0, run.stderr[-3000:]
    out = tmp_path / "runs" / "mydata" / "version_0"
    missing = [f for f in RUN_FILES if not (out / f).is_file()]
    assert not missing, (missing, run.stdout[-2000:])
    assert snapshot(data) == before  # nothing written into the data folder (no cache either)
    assert list((tmp_path / "cache" / "scans").iterdir())  # the scan's cache went here
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["best"] and "val/dice" in metrics["best"]
    measured = "3-channel images, binary masks with 2 classes" if make is rgb_folder else (
        "1-channel images, index masks with 3 classes")  # fmt: skip
    assert measured in run.stdout + run.stderr
    assert "data.crop_size:" in run.stdout + run.stderr
    # The terminal: nothing from the frameworks on stderr but real warnings.
    for noise in ("cudart_stub", "cuInit", "absl::InitializeLog", "litlogger", "LeafSpec",
                  "CUDA initialization", "sync_dist"):  # fmt: skip
        assert not in_its_own_process or noise not in run.stderr + run.stdout, noise


# -- failed runs, saved configs ----------------------------------------------------------------------
def test_a_failed_data_check_leaves_no_run_folder_and_names_the_key(
    tmp_path, run_train, monkeypatch
):
    data = rgb_folder(tmp_path / "mydata", n=3)
    monkeypatch.setenv(CACHE_ENV_VAR, str(tmp_path / "cache"))
    run = run_train(tmp_path, "fit", "--config", str(REPO / "configs" / "folder.yaml"),
                    "--data.root", str(data), "--data.crop_size", "96", *SHORT)  # fmt: skip
    assert run.returncode == 2
    line = run.stderr.strip().splitlines()[-1]
    assert line.startswith("error: data.crop_size 96 > ") and "valid crop sizes" in line
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").rglob("version_*"))


def test_saved_config_loads_again_with_a_group_name_yaml_reads_as_a_number(
    tmp_path, run_train, monkeypatch
):
    data = rgb_folder(tmp_path / "mydata", n=4)
    for i in range(2):  # a second group, to train on
        src = data / "images" / f"0016E5_{i:03d}.jpg"
        src.rename(data / "images" / f"0001TP_{i:03d}.jpg")
        (data / "masks" / f"0016E5_{i:03d}.png").rename(data / "masks" / f"0001TP_{i:03d}.png")
    args = ["--config", str(REPO / "configs" / "folder.yaml"), "--data.root", str(data),
            "--data.split", "group", "--data.val_groups", "['0016E5']", *SHORT,
            "--artifacts.keras_export", "false"]  # fmt: skip
    monkeypatch.setenv(CACHE_ENV_VAR, str(tmp_path / "cache"))
    run = run_train(tmp_path, "fit", *args)
    assert run.returncode == 0, run.stderr[-3000:]
    saved = tmp_path / "runs" / "mydata" / "version_0" / "config.yaml"
    assert "'0016E5'" in saved.read_text() or '"0016E5"' in saved.read_text()

    # The saved config is a config: it loads, and the group is still a name.
    again = run_train(tmp_path, "fit", "--config", str(saved), "--print_config")
    assert again.returncode == 0, again.stderr[-2000:]
    assert "- '0016E5'" in again.stdout and "1600000" not in again.stdout


# -- streaming ---------------------------------------------------------------------------------------
STREAMING = ["--config", str(REPO / "configs" / "folder.yaml"),
             "--data", "unet_train.streaming.StreamingDataModule", "--data.batch_size", "2",
             "--trainer.max_epochs", "1", "--model.spec", "{depth: 2, base_filters: 4}",
             "--trainer.enable_progress_bar", "false"]  # fmt: skip


def test_a_streaming_run_of_the_packed_folder_leaves_the_same_artefacts(
    tmp_path, run_train, monkeypatch
):
    data = rgb_folder(tmp_path / "mydata")
    shards = tmp_path / "shards"
    from unet_cli.main import main as unet

    assert unet(["data", "pack", str(data), str(shards)]) == 0
    assert (shards / "val").is_dir() and (shards / "train").is_dir()
    monkeypatch.setenv(CACHE_ENV_VAR, str(tmp_path / "cache"))
    run = run_train(tmp_path, "fit", *STREAMING, "--data.root", str(shards),
                    "--trainer.max_steps", "2", "--artifacts.overlays", "2")  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    out = tmp_path / "runs" / "shards" / "version_0"
    missing = [f for f in RUN_FILES if not (out / f).is_file()]
    assert not missing, (missing, run.stdout[-2000:])


def test_streaming_without_validation_says_so_in_one_line(tmp_path, run_train, monkeypatch):
    data = rgb_folder(tmp_path / "mydata", n=4)
    shards = tmp_path / "shards"
    from unet_train.streaming import pack

    pack(data, shards, val_fraction=0.0)
    monkeypatch.setenv(CACHE_ENV_VAR, str(tmp_path / "cache"))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        run = run_train(tmp_path, "fit", *STREAMING, "--data.root", str(shards),
                        "--trainer.max_steps", "1", "--artifacts.keras_export", "false")  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    # What reaches the terminal: the printed lines and the warnings (one line of text each).
    said = [line for line in (run.stdout + run.stderr).splitlines() if "without validation" in line]
    said += [str(w.message) for w in caught if "without validation" in str(w.message)]
    assert len(said) == 1 and "no model.keras" in said[0] and "\n" not in said[0], said


# -- the unet command's terminal -----------------------------------------------------------------------
def test_unet_commands_print_only_their_own_lines_on_stderr(tmp_path):
    pytest.importorskip("keras")
    from unet_spec import save_weights
    from unet_torch.model import UNet, canonical_state

    spec = make_spec("modern-small", {"depth": 2, "base_filters": 4}, 3, 2)
    weights = save_weights(canonical_state(UNet(spec)), spec, tmp_path / "w.safetensors")
    images = rgb_folder(tmp_path / "d", n=1) / "images"
    unet = [sys.executable, "-m", "unet_cli"]
    commands = {
        "port": [*unet, "port", str(weights), str(tmp_path / "m.keras")],
        "parity": [*unet, "parity", str(weights), "--size", "32"],
        "predict": [
            *unet,
            "predict",
            str(images),
            "--weights",
            str(tmp_path / "m.keras"),
            "--backend",
            "keras",
            "--out",
            str(tmp_path / "pred"),
        ],  # fmt: skip
    }
    for name, cmd in commands.items():
        run = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=300)
        assert run.returncode == 0, (name, run.stderr[-2000:])
        foreign = [line for line in run.stderr.splitlines()
                   if line.strip() and not line.startswith(("unet ", "1 of 1 image"))]  # fmt: skip
        assert not foreign, (name, foreign)
