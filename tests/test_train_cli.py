"""``train.py`` end to end: artifacts, ``--print_config``, resuming in the run's own folder,
``validate``/``test``/``predict`` on a checkpoint, runs without a logger, runs started together.

A command runs as ``train.py`` runs it, :func:`unet_train.cli.main` with its arguments, in this
process (the ``run_train`` fixture, conftest.py): a CLI is judged by its exit status and output,
and a fresh interpreter per command would cost more than the command. Runs started together are
two ``train.py`` processes. Lightning's ``ddp`` strategy relaunches the command that started it,
so CPU DDP is tested in subprocesses too (tests/test_multinode.py); the terminal a user sees, in
tests/test_first_hour.py.
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


def _command(subcommand: str, *args: str) -> list[str]:
    return [subcommand, "--config", str(REPO / "configs/demo.yaml"), *args]


@pytest.fixture
def cli(run_train):
    """``cli(cwd, *args, subcommand="fit")``: ``train.py SUBCOMMAND --config configs/demo.yaml
    ARGS`` in this process (conftest.py's ``run_train``)."""

    def run(cwd: Path, *args: str, subcommand: str = "fit") -> subprocess.CompletedProcess:
        return run_train(cwd, *_command(subcommand, *args))

    return run


def _train_processes(cwd: Path, *args: str, count: int) -> list[subprocess.CompletedProcess]:
    """``count`` ``train.py fit`` processes started together in ``cwd``."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "3"}
    env.pop("PYTEST_XDIST_WORKER", None)
    cmd = [sys.executable, str(REPO / "train.py"), *_command("fit", *args)]
    pipes = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE, "text": True}
    procs = [subprocess.Popen(cmd, cwd=cwd, env=env, **pipes) for _ in range(count)]
    outputs = [p.communicate(timeout=300) for p in procs]
    return [
        subprocess.CompletedProcess(cmd, p.returncode, *out)
        for p, out in zip(procs, outputs, strict=True)
    ]


def test_run_writes_every_artifact(tmp_path, cli):
    proc = cli(tmp_path, *TINY)
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


def test_runs_without_a_logger_get_their_own_folders(tmp_path, cli):
    args = (*TINY, "--trainer.logger", "false", "--artifacts.keras_export", "false")
    for version in (0, 1):
        # The demo config's learning-rate monitor needs a logger: drop the callbacks.
        proc = cli(tmp_path, *args, "--trainer.callbacks", "[]")
        assert proc.returncode == 0, proc.stderr[-3000:]
        run = tmp_path / "runs" / f"version_{version}"
        assert (run / "checkpoints" / "last.ckpt").is_file() and (run / "metrics.json").is_file()
    assert not (tmp_path / "runs" / "checkpoints").exists()
    # Keeping it is a configuration error: one line, no traceback.
    proc = cli(tmp_path, *args)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert (
        proc.stderr.strip().splitlines()[-1].startswith("error: Cannot use `LearningRateMonitor`")
    )


def test_runs_started_together_get_one_folder_each(tmp_path):
    """Two ``train.py fit`` processes in one folder at once, as a parallel sweep starts them:
    each claims its own ``version_<n>`` and writes a complete run there."""
    args = (*TINY, "--artifacts.keras_export", "false", "--artifacts.overlays", "0",
            "--data.init_args.num_train", "4", "--model.spec", '{"depth": 2, "base_filters": 4}')  # fmt: skip
    procs = _train_processes(tmp_path, *args, count=2)
    for proc in procs:
        assert proc.returncode == 0, proc.stderr[-3000:]
    said = sorted(line.split()[2] for p in procs for line in p.stdout.splitlines()
                  if line.startswith("Results in "))  # fmt: skip
    assert said == [f"{Path('runs/demo/version_0')}/", f"{Path('runs/demo/version_1')}/"]
    assert sorted(p.name for p in (tmp_path / "runs" / "demo").iterdir()) == [
        "version_0", "version_1"
    ]  # fmt: skip
    for version in (0, 1):
        run = tmp_path / "runs" / "demo" / f"version_{version}"
        # One run's rows in each metrics.csv: its 2 steps and its one validation.
        rows = _csv_rows(run / "metrics.csv")
        assert [r["step"] for r in rows if r["train/loss_step"]] == ["0", "1"]
        assert sum(1 for r in rows if r["val/dice"]) == 1
        assert len(list(run.glob("events.out.tfevents.*"))) == 1
        assert json.loads((run / "metrics.json").read_text())["global_step"] == 2
        assert (run / "checkpoints" / "last.ckpt").is_file()


def test_print_config(tmp_path, cli):
    proc = cli(tmp_path, "--print_config")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (
        "preset: modern-small" in proc.stdout
        and "class_path: unet_train.synthetic.SyntheticDataModule" in proc.stdout
    )
    assert "monitor: val/dice" in proc.stdout and "num_classes" in proc.stdout


def _csv_rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def test_resume_validate_test_predict_share_the_run_folder(tmp_path, cli):
    # A tiny model (and the Keras export off) keeps the five runs short. Monitoring ``step`` in
    # ``min`` mode makes the first validation the best one for good: ``last.ckpt`` must still
    # follow the run to its end (it is what a resumed run continues).
    small = (*TINY, "--data.init_args.num_test", "3", "--artifacts.keras_export", "false",
             "--model.spec", '{"depth": 2, "base_filters": 4}',
             "--checkpoint.monitor", "step", "--checkpoint.mode", "min")  # fmt: skip
    run = tmp_path / "runs" / "demo" / "version_0"
    proc = cli(tmp_path, *small, "--trainer.deterministic", "true")
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
    proc = cli(tmp_path, *small, "--trainer.max_epochs", "2", "--ckpt_path", str(last))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert sorted(p.name for p in (tmp_path / "runs" / "demo").iterdir()) == ["version_0"]
    assert f"Results in {Path('runs/demo/version_0')}" in proc.stdout
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["best.ckpt", "last.ckpt"]
    step = {
        name: torch.load(run / "checkpoints" / f"{name}.ckpt", map_location="cpu",
                         weights_only=True)["global_step"]
        for name in ("best", "last")
    }  # fmt: skip
    assert step == {"best": 4, "last": 8}
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
        proc = cli(tmp_path, *small, "--ckpt_path", best, subcommand=subcommand)
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
def test_bad_input_exits_2_with_one_line(tmp_path, break_it, message, cli):
    root = _folder(tmp_path / "data")
    break_it(root)
    args = ["--data", "unet_train.data.FolderDataModule", "--data.root", str(root),
            "--data.num_classes", "2", "--data.crop_size", "32", "--data.val_fraction", "0.34",
            "--trainer.max_epochs", "1", "--artifacts.keras_export", "false"]  # fmt: skip
    proc = cli(tmp_path, *args)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and message in last
