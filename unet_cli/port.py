"""``unet port SRC DST``: move weights between every format both frameworks use, and prove the move.

Formats come from the extensions: Lightning ``.ckpt``, state-dict ``.pt``, canonical
``.safetensors``, Keras ``.keras`` and ``.weights.h5``. A Keras model this project did not build
(auto-named layers) is matched against the plan by order, kind and shape. The spec comes from the
source file, or from ``--preset``/``--spec`` where the source carries none (both must agree when
both exist).

The result is written to a temporary file next to DST, reloaded, checked tensor by tensor
(bit-exact) and run against the other framework on random input; only then is it renamed to DST.
On any failure nothing is left at DST.
"""

from __future__ import annotations

import argparse
import os
import stat
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from unet_cli.common import add_spec_arguments, spec_from_args
from unet_spec import NoiseCheck, UNetSpec, check_against_noise, label_rule

HELP = "port weights between .ckpt, .pt, .safetensors, .keras and .weights.h5 (verified)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("src", type=Path, help="source weights")
    parser.add_argument("dst", type=Path, help="destination; its extension picks the format")
    add_spec_arguments(parser)
    parser.add_argument(
        "--size", type=int, help="input size of a written .keras model (default: the preset's)"
    )
    parser.add_argument("--no-verify", action="store_true", help="skip the reload and parity check")
    parser.add_argument("--seed", type=int, default=0, help="seed of the check's random input")


def check_destination(src: Path, dst: Path) -> None:
    """Refuse a DST that is SRC, or in a missing or read-only folder, before any work is done."""
    if dst.exists() and src.exists() and dst.resolve() == src.resolve():
        raise ValueError(f"{dst}: the destination is the source file; choose another path")
    if dst.exists() and dst.is_dir():
        raise ValueError(f"{dst}: the destination is a folder; give a file name")
    folder = dst.parent
    if not folder.is_dir():
        raise FileNotFoundError(f"{dst}: folder {folder} does not exist")
    # Permission bits count even for root, whom os.access always lets write.
    if not os.access(folder, os.W_OK) or not stat.S_IMODE(folder.stat().st_mode) & 0o222:
        raise PermissionError(f"{dst}: folder {folder} is not writable")


def _temporary_path(dst: Path, suffix: str) -> Path:
    # Keras insists on its suffixes, so the temporary name ends like DST.
    fd, name = tempfile.mkstemp(dir=dst.parent, prefix=f".{dst.name}.", suffix=suffix)
    os.close(fd)
    return Path(name)


def run(args: argparse.Namespace) -> int:
    import unet_bridge as cf

    src: Path = args.src
    dst: Path = args.dst
    src_suffix, dst_suffix = cf.suffix_of(src), cf.suffix_of(dst)
    if not src.is_file():
        raise FileNotFoundError(f"{src}: no such file")
    check_destination(src, dst)
    given = spec_from_args(args)
    size: int | None = args.size

    weights, spec, source_model = cf.load_any_weights(src, given)
    cf.check_finite(weights, what=str(src))
    if size is not None:
        cf.check_size(spec, size)
    if dst_suffix == ".keras" and size is None:
        size = _fixed_size(source_model) or cf.model_size(spec)

    tmp = _temporary_path(dst, dst_suffix)
    try:
        cf.save_any_weights(weights, spec, tmp, size)
        summary = "not verified (--no-verify)"
        if not args.no_verify:
            ok, summary = verify(weights, spec, tmp, source_model, args.seed, shown=dst)
            if not ok:
                print(f"unet port: verification failed, nothing written: {summary}")
                return 1
        mask = os.umask(0)
        os.umask(mask)
        os.chmod(tmp, 0o666 & ~mask)  # a temporary file is private; the result is not
        os.replace(tmp, dst)
    finally:
        tmp.unlink(missing_ok=True)
    name = cf.preset_name(spec)
    what = f"preset {name!r}" if name else "a custom spec"
    print(f"{src} ({src_suffix}) -> {dst} ({dst_suffix}): {len(weights)} tensors, {what}")
    print(f"verified: {summary}" if not args.no_verify else summary)
    return 0


def _fixed_size(model: Any) -> int | None:
    """The square input size a Keras model was built for, if any."""
    if model is None:
        return None
    shape = model.input_shape
    h, w = shape[1], shape[2]
    return h if h is not None and h == w else None


def verify(
    weights: Mapping[str, np.ndarray],
    spec: UNetSpec,
    written: Path,
    source_model: Any,
    seed: int = 0,
    shown: Path | None = None,
) -> tuple[bool, str]:
    """Reload ``written``, demand bit-exact tensors, then compare the frameworks on random input.

    When the source was a Keras model (possibly foreign), that model itself is also run against
    the PyTorch twin, so the port is proven against the function the user brought.

    Returns:
        Whether everything held, and a one-line summary.
    """
    import unet_bridge as cf

    shown = shown or written
    reloaded, _, _ = cf.load_any_weights(written, spec)  # also checks the stored spec
    for name, value in weights.items():
        if not np.array_equal(value, reloaded[name]):
            delta = float(np.abs(np.asarray(value) - reloaded[name]).max())
            return False, f"{shown}: tensor {name} changed on reload (max |Δ| {delta:.3g})"
    size = cf.small_size(spec)
    x = cf.random_input(spec, size, 1, seed)
    report = cf.run_parity(spec, reloaded, x, per_layer=False)
    parts = [f"reload bit-exact; PyTorch vs Keras at {size}²: {report.logits}"]
    ok = report.passed
    if source_model is not None:
        check, what = compare_with_model(source_model, spec, reloaded, seed)
        parts.append(f"source model vs PyTorch ({what}): {check}")
        ok = ok and check.passed
    return ok, "; ".join(parts)


def compare_with_model(
    model: Any, spec: UNetSpec, weights: Mapping[str, np.ndarray], seed: int = 0
) -> tuple[NoiseCheck, str]:
    """Run a Keras ``model`` and the PyTorch twin with ``weights`` on the same random input.

    The model's last layer decides what is compared: logits when it has no activation, else the
    twin's logits through that activation (the starting model ends in a sigmoid).

    The check is noise-aware like ``unet parity``: the twin also runs in float64 to measure its
    fp32 noise.

    Returns:
        The :class:`~unet_spec.NoiseCheck` and what was compared (``"logits"`` or an activation).
    """
    import unet_bridge as cf
    from unet_keras import to_nchw, to_nhwc

    size = _fixed_size(model) or cf.small_size(spec)
    x = cf.random_input(spec, size, 1, seed)
    head_name = spec.plan().output.name
    logits = cf.torch_taps(cf.torch_model(spec, weights), x, [head_name])[head_name]
    logits64 = cf.reference_taps(spec, weights, x, [head_name])[head_name]
    last = model.layers[-1].get_config()
    activation = last.get("activation", "linear")
    activation = activation if isinstance(activation, str) else "linear"
    if activation not in ("linear", "sigmoid", "softmax"):
        raise ValueError(
            f"the source model ends in activation {activation!r}; ports are verified for "
            "linear, sigmoid and softmax heads (use --no-verify)"
        )
    out = to_nchw(np.asarray(model(to_nhwc(x), training=False), dtype=np.float32))
    probabilities = activation != "linear"
    act = activation if probabilities else "none"
    check = check_against_noise(
        out, cf.head(logits, act), cf.head(logits64, act),
        labels=label_rule(spec, probabilities),
    )  # fmt: skip
    return check, activation if probabilities else "logits"
