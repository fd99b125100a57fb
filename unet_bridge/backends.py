"""Keras twins on another Keras backend, in a subprocess of their own.

Keras fixes its backend once per process (``KERAS_BACKEND``), and the parity tests already hold
TensorFlow-backed Keras, so :func:`keras_backend_taps` writes the cases to a temporary folder and
runs this module as ``python -m unet_bridge.backends keras-taps FOLDER`` under the other backend.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from unet_spec import UNetSpec


def keras_backend_taps(
    cases: Sequence[tuple[UNetSpec, Mapping[str, np.ndarray], np.ndarray]],
    backend: str = "torch",
    timeout: float = 300.0,
) -> tuple[list[dict[str, np.ndarray]], dict[str, Any]]:
    """Run Keras twins on Keras backend ``backend`` in one subprocess (the backend is fixed per
    process) and return each case's block outputs (NCHW) and that process's environment report.

    Args:
        cases: ``(spec, weights, x)`` triples; ``x`` is NCHW.
        backend: A Keras backend name (``torch``, ``tensorflow``, ``jax``).
        timeout: Seconds before the subprocess is stopped.
    """
    from unet_spec import save_weights

    with tempfile.TemporaryDirectory(prefix="unet-keras-") as tmp:
        folder = Path(tmp)
        for i, (spec, weights, x) in enumerate(cases):
            save_weights(weights, spec, folder / f"{i}.safetensors")
            np.save(folder / f"{i}.npy", x)
        (folder / "cases.json").write_text(json.dumps(len(cases)))
        env = {**os.environ, "KERAS_BACKEND": backend}
        proc = subprocess.run(
            [sys.executable, "-m", "unet_bridge.backends", "keras-taps", str(folder)],
            env=env, capture_output=True, text=True, timeout=timeout,
        )  # fmt: skip
        if proc.returncode != 0:
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
            raise RuntimeError(
                f"Keras on backend {backend!r} failed (exit {proc.returncode}): {tail[0]}"
            )
        taps = []
        for i in range(len(cases)):
            with np.load(folder / f"{i}.taps.npz") as data:
                taps.append({n: data[n] for n in data.files})
        info = json.loads((folder / "env.json").read_text())
    return taps, info


def _keras_taps_worker(folder: Path) -> None:
    from unet_bridge.frameworks import environment_guard
    from unet_bridge.parity import keras_model, keras_taps, tapped_blocks
    from unet_spec import load_weights

    info = environment_guard()
    for i in range(json.loads((folder / "cases.json").read_text())):
        weights, spec = load_weights(folder / f"{i}.safetensors")
        x = np.load(folder / f"{i}.npy")
        size = x.shape[-1] if x.shape[-1] == x.shape[-2] else tuple(x.shape[-2:])
        taps = keras_taps(keras_model(spec, weights, size), x, tapped_blocks(spec))
        np.savez(folder / f"{i}.taps.npz", **taps)
    (folder / "env.json").write_text(json.dumps(info))


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "keras-taps":
        _keras_taps_worker(Path(sys.argv[2]))
    else:
        sys.exit("usage: python -m unet_bridge.backends keras-taps FOLDER")
