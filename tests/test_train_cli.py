"""``train.py`` end to end, in subprocesses: artifacts, bad input, ``--print_config``, resuming in
the run's own folder, ``validate``/``test``/``predict`` on a checkpoint, and CPU DDP.

Subprocesses because Lightning's ``ddp`` strategy relaunches the command that started it (under
pytest that would be pytest itself), and because a CLI is judged by its exit status and output.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
TINY = [
    "--trainer.max_epochs", "1", "--trainer.log_every_n_steps", "1",
    "--data.init_args.num_train", "8", "--data.init_args.num_val", "2",
    "--data.init_args.image_size", "32", "--data.init_args.crop_size", "32",
    "--data.init_args.batch_size", "2", "--data.init_args.val_batch_size", "2",
    "--trainer.enable_progress_bar", "false",
]  # fmt: skip


def _train(
    cwd: Path, *args: str, timeout: int = 300, subcommand: str = "fit"
) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "3"}
    env.pop("PYTEST_XDIST_WORKER", None)
    cmd = [
        sys.executable,
        str(REPO / "train.py"),
        subcommand,
        "--config",
        str(REPO / "configs/demo.yaml"),
    ]
    return subprocess.run(
        [*cmd, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )


def test_run_writes_every_artifact(tmp_path):
    proc = _train(tmp_path, *TINY)
    assert proc.returncode == 0, proc.stderr[-3000:]
    run = tmp_path / "runs" / "demo" / "version_0"
    assert f"Results in {Path('runs/demo/version_0')}" in proc.stdout
    for name in (
        "model.safetensors",
        "model.keras",
        "overlays.png",
        "curves.png",
        "metrics.json",
        "config.yaml",
        "metrics.csv",
        "checkpoints/best.ckpt",
        "checkpoints/last.ckpt",
    ):
        assert (run / name).is_file(), name  # fmt: skip
    assert list(run.glob("events.out.tfevents.*")), "TensorBoard log missing"
    metrics = json.loads((run / "metrics.json").read_text())
    parity = metrics["keras_parity"]
    assert parity["passed"] and parity["rel"] <= parity["rel_limit"] and parity["noise_rel"] > 0
    assert {"cpu", "cpu_capability", "onednn_max_cpu_isa", "torch_threads"} <= set(
        metrics["machine"]
    )
    assert metrics["global_step"] == 4 and 0 <= metrics["best"]["val/dice"] <= 1
    assert 0 <= metrics["best"]["val/dice_fg"] <= 1 and "val/dice_fg" in metrics["last"]
    card = (run / "README.md").read_text()
    assert "Keras export (model.keras) vs PyTorch" in card and "passed" in card
    assert f"global_step: {metrics['global_step']}" in card or "val/dice" in card
    from unet_spec import load_weights

    weights, spec = load_weights(run / "model.safetensors")
    ckpt = torch.load(run / "checkpoints" / "best.ckpt", map_location="cpu", weights_only=True)
    hparams = ckpt["hyper_parameters"]
    assert spec.to_dict() == hparams["spec"]
    # The config's classes, injected by LightningCLI and recorded as config; the views the
    # demo's flips and quarter turns drew, the default of tta: true.
    assert hparams["optimizer"]["class_path"] == "torch.optim.AdamW"
    assert hparams["optimizer"]["init_args"]["lr"] == 0.002
    assert hparams["scheduler"]["class_path"] == "unet_train.schedules.WarmupCosine"
    assert hparams["symmetries"] == "d4"
    np.testing.assert_array_equal(
        weights["head.weight"], ckpt["state_dict"]["model.head.weight"].numpy()
    )


def test_runs_without_a_logger_get_their_own_folders(tmp_path):
    args = (*TINY, "--trainer.logger", "false", "--artifacts.keras_export", "false")
    for version in (0, 1):
        # The demo config's learning-rate monitor needs a logger: drop the callbacks.
        proc = _train(tmp_path, *args, "--trainer.callbacks", "[]")
        assert proc.returncode == 0, proc.stderr[-3000:]
        run = tmp_path / "runs" / f"version_{version}"
        assert (run / "checkpoints" / "last.ckpt").is_file() and (run / "metrics.json").is_file()
    assert not (tmp_path / "runs" / "checkpoints").exists()
    # Keeping it is a configuration error: one line, no traceback.
    proc = _train(tmp_path, *args)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert (
        proc.stderr.strip().splitlines()[-1].startswith("error: Cannot use `LearningRateMonitor`")
    )


def test_last_checkpoint_is_the_last_epoch_not_the_last_best(tmp_path):
    # Monitoring ``step`` in ``min`` mode makes the first validation the best one for good:
    # ``last.ckpt`` must still follow the run to its end (it is what a resumed run continues).
    small = (*TINY, "--trainer.max_epochs", "3", "--artifacts.keras_export", "false",
             "--model.spec", '{"depth": 2, "base_filters": 4}',
             "--checkpoint.monitor", "step", "--checkpoint.mode", "min")  # fmt: skip
    proc = _train(tmp_path, *small)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ckpts = tmp_path / "runs" / "demo" / "version_0" / "checkpoints"
    assert sorted(p.name for p in ckpts.iterdir()) == ["best.ckpt", "last.ckpt"]
    step = {
        name: torch.load(ckpts / f"{name}.ckpt", map_location="cpu", weights_only=True)[
            "global_step"
        ]
        for name in ("best", "last")
    }
    assert step == {"best": 4, "last": 12}


def test_print_config(tmp_path):
    proc = _train(tmp_path, "--print_config")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (
        "preset: modern-small" in proc.stdout
        and "class_path: unet_train.data.SyntheticDataModule" in proc.stdout
    )
    assert "monitor: val/dice" in proc.stdout and "num_classes" in proc.stdout


def _csv_rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def test_resume_validate_test_predict_share_the_run_folder(tmp_path):
    # A tiny model (and the Keras export off) keeps the five runs short.
    small = (*TINY, "--data.init_args.num_test", "3", "--artifacts.keras_export", "false",
             "--model.spec", '{"depth": 2, "base_filters": 4}')  # fmt: skip
    run = tmp_path / "runs" / "demo" / "version_0"
    proc = _train(tmp_path, *small, "--trainer.deterministic", "true")
    assert proc.returncode == 0, proc.stderr[-3000:]
    epochs = {r["epoch"] for r in _csv_rows(run / "metrics.csv") if r["epoch"]}
    assert {float(e) for e in epochs} == {0.0}

    # A row logged after the checkpoint (a crash before the next one): the resumed run drops it.
    rows = _csv_rows(run / "metrics.csv")
    with (run / "metrics.csv").open("a", newline="") as f:
        csv.DictWriter(f, fieldnames=list(rows[0])).writerow(
            {**dict.fromkeys(rows[0], ""), "epoch": "1", "step": "4", "train/loss_step": "99.0"}
        )
    # Resuming from the run's last checkpoint continues the same folder: no version_1.
    last = run / "checkpoints" / "last.ckpt"
    proc = _train(tmp_path, *small, "--trainer.max_epochs", "2", "--ckpt_path", str(last))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert sorted(p.name for p in (tmp_path / "runs" / "demo").iterdir()) == ["version_0"]
    assert f"Results in {Path('runs/demo/version_0')}" in proc.stdout
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["best.ckpt", "last.ckpt"]
    assert torch.load(last, map_location="cpu", weights_only=True)["global_step"] == 8
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["global_step"] == 8 and [r["epoch"] for r in metrics["history"]] == [0, 1]
    rows = _csv_rows(run / "metrics.csv")  # the first run's rows are kept, not duplicated
    assert {float(r["epoch"]) for r in rows if r["epoch"]} == {0.0, 1.0}
    assert sum(1 for r in rows if r["val/dice"]) == 2
    assert not [r for r in rows if r["train/loss_step"] == "99.0"]
    assert len([r for r in rows if r["train/loss_step"]]) == 8  # steps 0-7, once each
    assert len(list(run.glob("events.out.tfevents.*"))) == 2  # TensorBoard: one file per run
    config = (run / "config.yaml").read_text()
    assert "ckpt_path:" in config and "max_epochs: 2" in config

    # validate, test and predict on the best checkpoint work in that folder too.
    best = str(run / "checkpoints" / "best.ckpt")
    out = {}
    for subcommand in ("validate", "test", "predict"):
        proc = _train(tmp_path, *small, "--ckpt_path", best, subcommand=subcommand)
        assert proc.returncode == 0, f"{subcommand}: {proc.stderr[-3000:]}"
        assert (run / f"config-{subcommand}.yaml").is_file()
        out[subcommand] = proc.stdout
    assert "test/dice_fg" in out["test"] and "val/dice_fg" in out["validate"]
    assert (run / "config.yaml").read_text() == config  # the training config stays
    assert sorted(p.name for p in (tmp_path / "runs" / "demo").iterdir()) == ["version_0"]
    rows = _csv_rows(run / "metrics.csv")
    assert sum(1 for r in rows if r["val/dice"]) == 3  # two epochs, then `validate`
    (test_row,) = [r for r in rows if r.get("test/dice")]
    assert 0 <= float(test_row["test/dice_fg"]) <= 1 and 0 <= float(test_row["test/miou"]) <= 1
    masks = sorted(p.name for p in (run / "predictions").glob("*_mask.png"))
    assert masks == [f"synthetic#{i}_mask.png" for i in (10, 11, 12)]  # after 8 train + 2 val
    assert len(list((run / "predictions").glob("*_overlay.png"))) == 3
    assert "3 mask(s) written to" in out["predict"]


def test_loggers_share_the_highest_version_they_would_pick(tmp_path):
    from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger

    from unet_train.cli import checkpoint_run, shared_version

    (tmp_path / "csv" / "version_2").mkdir(parents=True)
    (tmp_path / "tb" / "version_5").mkdir(parents=True)
    (tmp_path / "tb" / "version_x").mkdir()
    before = set(tmp_path.rglob("*"))

    def loggers(*names: str) -> list:
        kinds = {"csv": CSVLogger, "tb": TensorBoardLogger, "absent": CSVLogger}
        return [kinds[n](save_dir=tmp_path, name=n) for n in names]

    assert shared_version(loggers("csv", "tb", "absent")) == 6
    assert shared_version(loggers("absent")) == 0
    ckpt = tmp_path / "csv" / "version_2" / "checkpoints" / "last.ckpt"
    ckpt.parent.mkdir()
    ckpt.write_bytes(b"")
    run = checkpoint_run(str(ckpt))
    assert run == (tmp_path / "csv" / "version_2").resolve()
    assert checkpoint_run("last") is None and checkpoint_run(None) is None
    # A checkpoint in the first logger's folder (where Lightning puts them) names the run's
    # folder, which every logger is given; one elsewhere starts a new run.
    assert shared_version(loggers("csv", "tb"), run) == "version_2"
    assert CSVLogger(save_dir=tmp_path, name="csv", version="version_2").log_dir == str(
        tmp_path / "csv" / "version_2"
    )
    assert shared_version(loggers("tb", "csv"), run) == 6
    # Asking a logger its version (or its folder) writes nothing.
    assert set(tmp_path.rglob("*")) == {*before, ckpt.parent, ckpt}


def _folder(root: Path) -> Path:
    for sub in ("images", "masks"):
        (root / sub).mkdir(parents=True)
    for i in range(3):
        Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(root / "images" / f"a{i}.png")
        Image.fromarray(np.zeros((32, 32), np.uint8)).save(root / "masks" / f"a{i}.png")
    return root


@pytest.mark.parametrize(
    "break_it, message",
    [
        (lambda r: (r / "masks" / "a1.png").unlink(), r"images/a1.png: no mask with the stem 'a1'"),
    ],
)
def test_bad_input_exits_2_with_one_line(tmp_path, break_it, message):
    root = _folder(tmp_path / "data")
    break_it(root)
    args = ["--data", "unet_train.data.FolderDataModule", "--data.root", str(root),
            "--data.num_classes", "2", "--data.crop_size", "32", "--data.val_fraction", "0.34",
            "--trainer.max_epochs", "1", "--artifacts.keras_export", "false"]  # fmt: skip
    proc = _train(tmp_path, *args)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and message in last


@pytest.mark.slow
def test_two_process_cpu_ddp(tmp_path):
    proc = _train(
        tmp_path, *TINY, "--trainer.devices", "2", "--trainer.strategy", "ddp", timeout=400
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    metrics = json.loads((tmp_path / "runs/demo/version_0/metrics.json").read_text())
    # 8 images, batch 2: each of the two processes takes half of them, so 2 steps instead of 4.
    assert metrics["global_step"] == 2
    assert metrics["keras_parity"]["passed"] and metrics["keras_parity"]["flips"] == 0
