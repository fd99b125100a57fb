"""Reading and writing PyTorch-side weight files: Lightning ``.ckpt``, state-dict ``.pt`` and canonical
``.safetensors``.

Every reader returns canonical weights (plan names, float32 numpy arrays in PyTorch layouts) and the
spec the file carries (``None`` when it carries none). Loading is safe: ``torch.load`` runs with
``weights_only=True``, so a file cannot execute code. Writers are atomic.

File contents:

- ``.ckpt``: a Lightning checkpoint of the training system, which holds the network at
  ``self.model``: state-dict keys read ``model.<canonical name>`` and the hyper-parameter ``spec``
  holds ``UNetSpec.to_dict()``.
- ``.pt``: either a bare state dict, or ``{"state_dict": ..., "spec": <spec JSON>, "format": ...}``
  as written by :func:`save_pt`. Keys may carry a ``model.`` or ``module.`` prefix.
- ``.safetensors``: the canonical file of :mod:`unet_spec.weights`; a bare safetensors state dict
  (no metadata) is accepted too when a spec is given.
"""

from __future__ import annotations

import os
import pickle
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from unet_runtime import atomic_path
from unet_spec import UNetSpec, build_plan, check_weights, resolve_spec
from unet_spec.weights import FORMAT_NAME, FORMAT_VERSION, load_weights

# Prefixes under which other code stores the network: the Lightning system's ``self.model`` and
# ``nn.DataParallel``/DDP's ``module``.
_PREFIXES = ("model.", "module.", "model.module.")


def load_ckpt(
    path: str | os.PathLike[str], spec: UNetSpec | None = None
) -> tuple[dict[str, np.ndarray], UNetSpec]:
    """Canonical weights and spec from a Lightning checkpoint (the network at ``model.``).

    Args:
        path: The ``.ckpt`` file.
        spec: The expected spec. Required when the file carries none; when both exist they must
            agree.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: A damaged file, no spec anywhere, a stored spec that differs from ``spec``
            (fields named), or tensors missing, unexpected or mis-shaped (named).
    """
    path = Path(path)
    obj = torch_load(path)
    if not isinstance(obj, dict) or not isinstance(obj.get("state_dict"), Mapping):
        raise ValueError(f"{path}: not a Lightning checkpoint (no 'state_dict' entry)")
    hparams = obj.get("hyper_parameters") or {}
    stored = _spec_from(hparams.get("spec") if isinstance(hparams, Mapping) else None, path)
    spec = resolve_spec(stored, spec, path)
    return _canonical_from_state(obj["state_dict"], spec, path), spec


def load_pt(
    path: str | os.PathLike[str], spec: UNetSpec | None = None
) -> tuple[dict[str, np.ndarray], UNetSpec]:
    """Canonical weights and spec from a ``.pt`` file: a bare state dict (keys may carry a
    ``model.`` or ``module.`` prefix) or what :func:`save_pt` writes. Raises as :func:`load_ckpt`."""
    path = Path(path)
    obj = torch_load(path)
    if isinstance(obj, Mapping) and isinstance(obj.get("state_dict"), Mapping):
        stored, state = _spec_from(obj.get("spec"), path), obj["state_dict"]
    elif isinstance(obj, Mapping):
        stored, state = None, obj
    else:
        raise ValueError(f"{path}: expected a state dict, found {type(obj).__name__}")
    spec = resolve_spec(stored, spec, path)
    return _canonical_from_state(state, spec, path), spec


def torch_load(path: str | os.PathLike[str]) -> Any:
    """``torch.load`` with ``weights_only=True`` (a file cannot run code), on the CPU; a file that
    is not a PyTorch file, or holds objects beyond tensors and plain values, is one line."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        # weights_only refuses arbitrary objects; say so rather than print torch's long advice.
        first = str(err).strip().splitlines()[0] if str(err).strip() else "unpickling failed"
        raise ValueError(f"{path}: not loadable safely (weights_only=True): {first}") from None
    except (RuntimeError, EOFError, OSError, ValueError, zipfile.BadZipFile, KeyError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ValueError(f"{path}: damaged or not a PyTorch file ({first})") from None


def _spec_from(value: Any, path: Path) -> UNetSpec | None:
    if value is None:
        return None
    try:
        if isinstance(value, str):
            return UNetSpec.from_json(value)
        if isinstance(value, Mapping):
            return UNetSpec.from_dict(dict(value))
    except (ValueError, TypeError) as err:
        raise ValueError(f"{path}: the stored spec is invalid: {err}") from None
    raise ValueError(f"{path}: the stored spec is a {type(value).__name__}, expected a mapping")


def _canonical_from_state(
    state: Mapping[str, Any], spec: UNetSpec, path: Path
) -> dict[str, np.ndarray]:
    expected = build_plan(spec).weight_shapes
    prefix = ""
    if not any(name in state for name in expected):
        for candidate in _PREFIXES:
            if any(candidate + name in state for name in expected):
                prefix = candidate
                break
    out: dict[str, np.ndarray] = {}
    for key, value in state.items():
        if not key.startswith(prefix):
            continue  # the rest of a training system (loss weights, metrics) is not the network
        name = key[len(prefix) :]
        if name.endswith("num_batches_tracked"):
            continue  # bookkeeping with no Keras counterpart
        if not isinstance(value, torch.Tensor):
            raise ValueError(f"{path}: entry {key!r} is a {type(value).__name__}, not a tensor")
        out[name] = value.detach().to("cpu", torch.float32).contiguous().numpy().copy()
    check_weights(out, spec, source=str(path))
    return {name: out[name] for name in expected}


def load_safetensors(
    path: str | os.PathLike[str], spec: UNetSpec | None = None
) -> tuple[dict[str, np.ndarray], UNetSpec]:
    """Canonical weights from a ``.safetensors`` file: the project's canonical file, or a bare
    state dict saved by other code (names may carry a prefix; ``spec`` is then required)."""
    path = Path(path)
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(path, framework="np") as f:
            metadata = f.metadata() or {}
    except (SafetensorError, OSError, ValueError) as err:
        raise ValueError(f"{path}: not a readable safetensors file ({err})") from None
    if metadata.get("format") == FORMAT_NAME:
        weights, stored = load_weights(path)
        return weights, resolve_spec(stored, spec, path)
    # A bare safetensors state dict (saved by other code): names may carry a prefix.
    spec = resolve_spec(None, spec, path)
    from safetensors.torch import load_file

    try:
        state = load_file(path)
    except (SafetensorError, OSError, ValueError) as err:
        raise ValueError(f"{path}: not a readable safetensors file ({err})") from None
    return _canonical_from_state(state, spec, path), spec


def _state_dict(weights: Mapping[str, np.ndarray], spec: UNetSpec, prefix: str = "") -> dict:
    """Tensors in plan order, with ``num_batches_tracked`` so ``load_state_dict(strict=True)`` works."""
    check_weights(weights, spec)
    state: dict[str, torch.Tensor] = {}
    for block in build_plan(spec).blocks:
        for name in block.weight_shapes:
            array = np.ascontiguousarray(weights[name], dtype=np.float32)
            state[prefix + name] = torch.from_numpy(array.copy())
        if block.kind == "batchnorm":
            state[f"{prefix}{block.name}.num_batches_tracked"] = torch.tensor(0, dtype=torch.long)
    return state


def _atomic_torch_save(obj: Any, path: Path) -> Path:
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)
    return path


def save_pt(
    weights: Mapping[str, np.ndarray], spec: UNetSpec, path: str | os.PathLike[str]
) -> Path:
    """Write ``{"state_dict", "spec", "format", "format_version"}`` to a ``.pt`` file, atomically.

    ``torch.load(path, weights_only=True)["state_dict"]`` loads into ``UNet(spec)`` with
    ``strict=True``.
    """
    obj = {
        "state_dict": _state_dict(weights, spec),
        "spec": spec.to_json(),
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
    }
    return _atomic_torch_save(obj, Path(path))


def save_ckpt(
    weights: Mapping[str, np.ndarray], spec: UNetSpec, path: str | os.PathLike[str]
) -> Path:
    """Write a minimal Lightning checkpoint (network at ``model.``, hyper-parameter ``spec``).

    It holds weights only (no optimizer or loop state): enough for
    ``LightningModule.load_from_checkpoint`` of a system that stores the network at ``self.model``
    and takes ``spec`` as a mapping, and for resuming nothing.
    """
    try:
        import lightning

        version = lightning.__version__
    except ImportError:  # the file format does not depend on Lightning being installed
        version = "2.0.0"
    obj = {
        "epoch": 0,
        "global_step": 0,
        "pytorch-lightning_version": version,
        "state_dict": _state_dict(weights, spec, prefix="model."),
        "hyper_parameters": {"preset": None, "spec": spec.to_dict()},
        "loops": {},
        "callbacks": {},
        "optimizer_states": [],
        "lr_schedulers": [],
    }
    return _atomic_torch_save(obj, Path(path))
