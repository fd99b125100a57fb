"""Installs for torch-only and Keras-only users: with a framework missing, the commands that do not
need it work, and the ones that do exit 2 with one line naming the extra to install.

Each case runs the ``unet`` command in a subprocess whose ``sitecustomize`` swaps site-packages for
a view of it without the framework, as on an install that never had it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from unet_spec import get_preset, random_weights, save_weights

SPEC = get_preset("modern-small").replace(depth=2, base_filters=4)

# An install without a framework: site-packages is replaced on sys.path by a view of it (one
# symbolic link per entry) that lacks the framework's packages, so imports and find_spec calls see
# exactly what they would see had it never been installed.
SITECUSTOMIZE = textwrap.dedent(
    """
    import os, sys

    site, view = os.environ["UNET_TEST_SITE"], os.environ["UNET_TEST_VIEW"]
    sys.path[:] = [view if p == site else p for p in sys.path]
    """
)


def _site_view(root, blocked: tuple[str, ...]):
    import sysconfig
    from pathlib import Path

    site = Path(sysconfig.get_paths()["purelib"])
    view = root / ("view-" + "-".join(blocked))
    view.mkdir()
    for entry in site.iterdir():
        top = entry.name.split("-")[0].split(".")[0]
        if top not in blocked:
            (view / entry.name).symlink_to(entry)
    return site, view


# Several commands in one interpreter (the frameworks' import time is paid once per case).
RUNNER = textwrap.dedent(
    """
    import contextlib, io, json, sys
    from unet_cli.main import main

    results = []
    for argv in json.loads(sys.argv[1]):
        err = io.StringIO()
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            try:
                code = main(argv)
            except SystemExit as exit:  # argparse
                code = exit.code
        results.append([code, err.getvalue()])
    print(json.dumps(results))
    """
)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    from PIL import Image

    path = tmp_path_factory.mktemp("extras")
    save_weights(random_weights(SPEC), SPEC, path / "w.safetensors")
    (path / "block").mkdir()
    (path / "block" / "sitecustomize.py").write_text(SITECUSTOMIZE)
    image = (np.random.default_rng(0).random((16, 16, 3)) * 255).astype(np.uint8)
    Image.fromarray(image).save(path / "img.png")
    (path / "any.onnx").write_bytes(b"")  # onnxruntime would be needed before the file is read
    return path


def _run(folder, blocked: str, commands: list[list[str]]) -> list[tuple[int, str]]:
    site, view = _site_view(folder, tuple(blocked.split(",")))
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(folder / "block"), os.getcwd()]),
        "UNET_TEST_SITE": str(site),
        "UNET_TEST_VIEW": str(view),
        "TF_CPP_MIN_LOG_LEVEL": "3",
    }
    proc = subprocess.run(
        [sys.executable, "-c", RUNNER, json.dumps(commands)],
        env=env, cwd=folder, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    return [tuple(r) for r in json.loads(proc.stdout.strip().splitlines()[-1])]


def _names_extra(result: tuple[int, str], extra: str) -> None:
    code, err = result
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1, err
    assert f"pip install 'unet-twins[{extra}]'" in lines[0] and "Traceback" not in err


def test_without_tensorflow(folder) -> None:
    summary, port_pt, port_keras, parity, export_onnx, export_tflite = _run(
        folder,
        "tensorflow,keras",
        [
            ["summary", "--preset", "seed-small", "--size", "252"],
            ["port", "w.safetensors", "w.pt", "--no-verify"],
            ["port", "w.safetensors", "w.keras", "--no-verify"],
            ["parity", "w.safetensors", "--size", "16"],
            ["export", "w.safetensors", "w.onnx", "--size", "16"],
            ["export", "w.safetensors", "w.tflite"],
        ],
    )
    assert summary[0] == 0 and port_pt[0] == 0 and export_onnx[0] == 0, (summary, port_pt)
    assert (folder / "w.pt").is_file() and (folder / "w.onnx").is_file()
    for result in (port_keras, parity, export_tflite):
        _names_extra(result, "keras")
    assert not (folder / "w.keras").exists() and not (folder / "w.tflite").exists()


def test_without_torch(folder) -> None:
    summary, port_keras, port_pt, export, predict_torch = _run(
        folder,
        "torch",
        [
            ["summary", "--preset", "modern-small"],
            ["port", "w.safetensors", "k.keras", "--no-verify"],
            ["port", "w.safetensors", "k.pt", "--no-verify"],
            ["export", "w.safetensors", "k.onnx"],
            ["predict", "img.png", "--weights", "w.safetensors", "--out", "masks"],
        ],
    )
    assert summary[0] == 0 and port_keras[0] == 0, (summary, port_keras)
    assert (folder / "k.keras").is_file()
    for result in (port_pt, export, predict_torch):
        _names_extra(result, "torch")
    assert not (folder / "k.pt").exists() and not (folder / "k.onnx").exists()


def test_without_onnxruntime(folder) -> None:
    (predict_onnx,) = _run(
        folder,
        "onnxruntime,onnx",
        [["predict", "img.png", "--weights", "any.onnx", "--backend", "onnx", "--out", "m"]],
    )
    _names_extra(predict_onnx, "onnx")
