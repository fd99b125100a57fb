"""Multi-node training on one machine: two "nodes" of one process each (gloo over localhost, the
``MASTER_ADDR``/``MASTER_PORT``/``NODE_RANK``/``WORLD_SIZE`` environment that SLURM or torchrun
give) train to the same final weights as one node with two processes (docs/multinode.md). The
one-node run is ``train.py``'s CPU DDP: each process takes half the images, and the run's Keras
export passes its parity check."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
# No batch norm: its running statistics are each rank's own (DDP without SyncBatchNorm), so they
# depend on which rank drew which crops; the parameters are averaged over ranks and must agree.
ARGS = [
    "--seed_everything", "0", "--trainer.max_epochs", "1", "--trainer.accelerator", "cpu",
    "--trainer.strategy", "ddp", "--trainer.enable_progress_bar",
    "false", "--trainer.num_sanity_val_steps", "0",
    "--trainer.deterministic", "true", "--model.preset", "modern-small", "--model.spec",
    '{"depth": 2, "base_filters": 4, "norm": "none"}', "--data.init_args.num_train", "8",
    "--data.init_args.num_val", "2", "--data.init_args.image_size", "32",
    "--data.init_args.crop_size", "32", "--data.init_args.batch_size", "2",
    "--artifacts.overlays", "0",
]  # fmt: skip


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _csv_only_config(folder: Path) -> Path:
    """configs/demo.yaml with its CSV logger only. Naming the TensorBoard logger in a config costs
    each process a TensorFlow import (LightningCLI resolves the logger's arguments through
    torch.utils.tensorboard, which imports TensorFlow where it is installed), three processes of
    the four here; the test judges weights and metrics.json, which the TensorBoard log holds no
    part of. The loggers sharing a run folder is tests/test_train_cli.py's."""
    import yaml

    config = yaml.safe_load((REPO / "configs/demo.yaml").read_text())
    loggers = config["trainer"]["logger"]
    config["trainer"]["logger"] = [x for x in loggers if x["class_path"].endswith(".CSVLogger")]
    assert len(config["trainer"]["logger"]) == 1
    path = folder / "demo-csv.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def _cmd(config: Path, *extra: str) -> list[str]:
    return [sys.executable, str(REPO / "train.py"), "fit", "--config", str(config), *ARGS, *extra]


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("SLURM_", "PYTEST_XDIST")) and k not in ("LOCAL_RANK", "NODE_RANK")}  # fmt: skip
    return {**env, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "3", **extra}


def _weights(root: Path) -> dict[str, np.ndarray]:
    from unet_spec import load_weights

    (path,) = root.rglob("model.safetensors")
    return load_weights(path)[0]


@pytest.mark.slow
def test_two_nodes_equal_one_node_with_two_processes(tmp_path):
    for run in ("one", "node0", "node1"):  # each run in its own folder (runs/demo/...)
        (tmp_path / run).mkdir()
    config = _csv_only_config(tmp_path)
    one = subprocess.run(_cmd(config, "--trainer.devices", "2"), cwd=tmp_path / "one",
                         env=_env(), capture_output=True, text=True, timeout=300)  # fmt: skip
    assert one.returncode == 0, one.stderr[-3000:]
    (metrics,) = (tmp_path / "one").rglob("metrics.json")
    metrics = json.loads(metrics.read_text())
    # 8 images, batch 2: each of the two processes takes half of them, so 2 steps instead of 4.
    assert metrics["global_step"] == 2
    assert metrics["keras_parity"]["passed"] and metrics["keras_parity"]["flips"] == 0

    port = str(_free_port())
    node = ["--trainer.devices", "1", "--trainer.num_nodes", "2",
            "--artifacts.keras_export", "false"]  # fmt: skip
    nodes = [
        subprocess.Popen(
            _cmd(config, *node),
            cwd=tmp_path / f"node{rank}",
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=_env(
                MASTER_ADDR="127.0.0.1",
                MASTER_PORT=port,
                NODE_RANK=str(rank),
                WORLD_SIZE="2",
                LOCAL_RANK="0",
            ),
        )  # fmt: skip
        for rank in (0, 1)
    ]
    logs = [p.communicate(timeout=300)[0] for p in nodes]
    assert [p.returncode for p in nodes] == [0, 0], logs[0][-2000:] + logs[1][-2000:]
    assert "GLOBAL_RANK: 1, MEMBER: 2/2" in logs[1]  # the second node is rank 1 of 2

    a, b = _weights(tmp_path / "one"), _weights(tmp_path / "node0")
    assert a.keys() == b.keys()
    # Equal up to fp32 rounding: gloo may sum the two gradients in another order per topology.
    for name in a:
        np.testing.assert_allclose(a[name], b[name], rtol=1e-5, atol=1e-7, err_msg=name)
    start = _weights_at_start()
    assert any(not np.allclose(a[n], start[n], rtol=1e-3) for n in a)  # training moved them


def _weights_at_start() -> dict[str, np.ndarray]:
    import torch

    from unet_torch import UNet
    from unet_train.system import SegmentationSystem

    torch.manual_seed(0)
    system = SegmentationSystem(
        preset="modern-small", spec={"depth": 2, "base_filters": 4, "norm": "none"}
    )
    return {k: v.detach().numpy() for k, v in system.model.state_dict().items()
            if isinstance(system.model, UNet)}  # fmt: skip
