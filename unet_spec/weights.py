"""Canonical weights: one safetensors file that both frameworks read and write.

Tensor names are plan names (``enc1.conv1.weight``) in PyTorch layouts: conv ``(out, in, kh, kw)``,
transposed conv ``(in, out, kh, kw)``, batch norm ``weight``/``bias``/``running_mean``/
``running_var``. The metadata holds the spec as JSON and the format version. Only the Keras adapter
converts layouts; everything else reads and writes this form.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from unet_runtime.files import atomic_write_bytes
from unet_spec.plan import build_plan
from unet_spec.spec import UNetSpec

FORMAT_NAME = "unet-canonical"
FORMAT_VERSION = "1"


def canonical_shapes(spec: UNetSpec) -> dict[str, tuple[int, ...]]:
    """Every canonical tensor name of ``spec`` with its shape, in plan order."""
    return dict(build_plan(spec).weight_shapes)


def check_weights(
    weights: Mapping[str, np.ndarray], spec: UNetSpec, source: str = "weights"
) -> None:
    """Raise ``ValueError`` naming every missing, unexpected or mis-shaped tensor."""
    expected = canonical_shapes(spec)
    missing = [n for n in expected if n not in weights]
    extra = [n for n in weights if n not in expected]
    wrong = [
        f"{n}: expected {expected[n]}, received {tuple(np.shape(weights[n]))}"
        for n in expected
        if n in weights and tuple(np.shape(weights[n])) != expected[n]
    ]
    problems = []
    if missing:
        problems.append(f"missing {_short(missing)}")
    if extra:
        problems.append(f"unexpected {_short(extra)}")
    if wrong:
        problems.append(f"wrong shape {_short(wrong)}")
    if problems:
        raise ValueError(f"{source} do not fit the spec: " + "; ".join(problems))


def random_weights(spec: UNetSpec, seed: int = 0) -> dict[str, np.ndarray]:
    """He-initialised float32 weights (non-trivial batch-norm statistics) for tests and demos."""
    rng = np.random.default_rng(seed)
    out: dict[str, np.ndarray] = {}
    for name, shape in canonical_shapes(spec).items():
        if name.endswith(".weight") and len(shape) == 4:
            fan_in = shape[1] * shape[2] * shape[3] if not _is_upconv(spec, name) else shape[0]
            value = rng.normal(0.0, np.sqrt(2.0 / fan_in), shape)
        elif name.endswith("running_var"):
            value = rng.uniform(0.5, 1.5, shape)
        elif name.endswith(".weight"):  # batch-norm scale
            value = rng.uniform(0.8, 1.2, shape)
        else:  # biases, batch-norm shift and running mean
            value = rng.normal(0.0, 0.05, shape)
        out[name] = value.astype(np.float32)
    return out


def _is_upconv(spec: UNetSpec, tensor: str) -> bool:
    return build_plan(spec)[tensor.rsplit(".", 1)[0]].kind == "upconv"


def save_weights(
    weights: Mapping[str, np.ndarray], spec: UNetSpec, path: str | os.PathLike[str]
) -> Path:
    """Write ``weights`` (checked against ``spec``) to a safetensors file, atomically."""
    from safetensors.numpy import save

    check_weights(weights, spec)
    order = canonical_shapes(spec)
    tensors = {n: np.ascontiguousarray(weights[n], dtype=np.float32) for n in order}
    metadata = {"format": FORMAT_NAME, "format_version": FORMAT_VERSION, "spec": spec.to_json()}
    data = save(tensors, metadata=metadata)
    return atomic_write_bytes(path, data)


def is_canonical_file(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is a safetensors file carrying the canonical metadata (an unreadable or
    missing file says no; the reader then reports why)."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(Path(path), framework="np") as f:
            return (f.metadata() or {}).get("format") == FORMAT_NAME
    except (SafetensorError, OSError, ValueError):
        return False


def read_weights(path: str | os.PathLike[str]) -> tuple[dict[str, np.ndarray], UNetSpec]:
    """Read a canonical file without checking it against anything but its own spec."""
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such weight file")
    try:
        with safe_open(path, framework="np") as f:
            metadata = f.metadata() or {}
            tensors = {name: f.get_tensor(name) for name in f.keys()}
    except (SafetensorError, OSError, ValueError) as err:
        raise ValueError(f"{path}: not a readable safetensors file ({err})") from None
    if metadata.get("format") != FORMAT_NAME or "spec" not in metadata:
        raise ValueError(f"{path}: safetensors file without unet canonical metadata")
    if metadata.get("format_version") != FORMAT_VERSION:
        raise ValueError(
            f"{path}: canonical format version {metadata.get('format_version')!r} is not supported "
            f"(this library reads version {FORMAT_VERSION})"
        )
    try:
        spec = UNetSpec.from_json(metadata["spec"])
    except ValueError as err:
        raise ValueError(f"{path}: the stored spec is invalid: {err}") from None
    check_weights(tensors, spec, source=str(path))
    return tensors, spec


def load_weights(
    path: str | os.PathLike[str], spec: UNetSpec | None = None
) -> tuple[dict[str, np.ndarray], UNetSpec]:
    """Read a canonical file and, when ``spec`` is given, check that the file was made for it.

    Returns:
        The tensors (name → float32 array) and the spec stored in the file.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: Not a safetensors file, truncated, no canonical metadata, a spec that differs
            from ``spec`` (the fields are named), or tensors missing, unexpected or mis-shaped.
    """
    tensors, stored = read_weights(path)
    return tensors, resolve_spec(stored, spec, path)


def resolve_spec(
    stored: UNetSpec | None, given: UNetSpec | None, source: str | os.PathLike[str]
) -> UNetSpec:
    """The spec to use for a file: the one it stores, the one the caller gives, and they must agree.

    Raises:
        ValueError: Neither exists, or they differ (every differing field is named).
    """
    if stored is not None and given is not None and stored != given:
        fields = ", ".join(
            f"{k}: file {a!r} vs given {b!r}" for k, (a, b) in stored.diff(given).items()
        )
        raise ValueError(f"{source}: the file's spec does not match the given one ({fields})")
    spec = stored or given
    if spec is None:
        raise ValueError(f"{source}: the file carries no spec; give --preset NAME or --spec FILE")
    return spec


def _short(items: list[str], n: int = 6) -> str:
    head = ", ".join(items[:n])
    return head + (f" (+{len(items) - n} more)" if len(items) > n else "")
