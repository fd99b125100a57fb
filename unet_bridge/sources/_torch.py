"""What the PyTorch-side converters share: reading a foreign state dict, matching it against the
layout a spec implies (every mismatch, named by feature), and running a torch module as the
reference a port is proven against.

The converters state the layout as a name map, canonical plan name → source module path, which
:func:`unet_torch.graph.tensor_mapping` turns into the tensor mapping the graph source uses too; the
tensors keep PyTorch layouts on both sides, so mapping is renaming.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import json
import os
import sys
import zipfile
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from unet_spec import UNetSpec, build_plan

# Wrappers other code stores a network under (DDP, torch.compile, Lightning's self.model).
_PREFIXES = ("module.", "_orig_mod.", "model.")
# Keys training scripts save the state dict under in a checkpoint dict, beside the optimiser's
# state and the epoch (Lightning's "state_dict", the "model"/"net"/"model_state_dict" of
# hand-written loops).
_WRAPPERS = ("state_dict", "model_state_dict", "model", "net", "network", "state")


def state_of(obj: Any) -> tuple[dict[str, Any], list[str]]:
    """The tensors of a loaded state dict, with wrapper prefixes stripped, and the names of the
    non-tensor entries set aside (milesial's newer files carry ``mask_values``).

    A checkpoint dict that holds the state dict under one of the keys training scripts use
    (``state_dict``, ``model_state_dict``, ``model``, ``net``, ...) beside other entries (the
    optimiser, the epoch) gives that state dict; the other entries are not weights."""
    import torch

    while isinstance(obj, Mapping) and not any(isinstance(v, torch.Tensor) for v in obj.values()):
        inner = next((obj[k] for k in _WRAPPERS if isinstance(obj.get(k), Mapping)), None)
        if inner is None:
            break
        obj = inner
    if not isinstance(obj, Mapping):
        return {}, []

    tensors = {k: v for k, v in obj.items() if isinstance(k, str) and isinstance(v, torch.Tensor)}
    other = sorted(str(k) for k in obj if k not in tensors)
    for prefix in _PREFIXES:
        if tensors and all(k.startswith(prefix) for k in tensors):
            tensors = {k[len(prefix) :]: v for k, v in tensors.items()}
    return tensors, other


def is_torchscript(path: str | os.PathLike[str]) -> bool:
    """A ``torch.jit.save`` archive (a zip with ``constants.pkl`` and ``code/``), not a state dict."""
    try:
        with zipfile.ZipFile(path) as zf:
            names = zf.namelist()
    except (OSError, zipfile.BadZipFile):
        return False
    return any(n.endswith("/constants.pkl") for n in names) and any("/code/" in n for n in names)


def carries_spec(path: str | os.PathLike[str]) -> bool:
    """Whether a ``torch.save`` file is this project's own (a state dict with its spec, as
    ``unet_torch.io.save_pt`` writes), told without reading its tensors (memory-mapped)."""
    import torch

    if is_torchscript(path):  # torch.load would hand it to torch.jit.load, with a warning
        return False
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception:  # not a zip-format torch file, or not loadable safely: not ours
        return False
    return isinstance(obj, Mapping) and "spec" in obj and isinstance(obj.get("state_dict"), Mapping)


def load_state(path: str | os.PathLike[str]) -> tuple[dict[str, Any], list[str]]:
    """:func:`state_of` a ``torch.save`` file, loaded safely (``weights_only``)."""
    from unet_torch.io import torch_load  # checks the TensorFlow/triton import order first

    return state_of(torch_load(Path(path)))


def shapes_of(state: Mapping[str, Any]) -> dict[str, tuple[int, ...]]:
    return {k: tuple(int(n) for n in v.shape) for k, v in state.items()}


def feature_of(spec: UNetSpec, name: str) -> str:
    """The architectural feature a canonical tensor stands for, for mismatch messages."""
    block = build_plan(spec)[name.rsplit(".", 1)[0]]
    if block.kind == "upconv" or name.split(".")[1] == "up":
        return "upsampling kind"
    if block.kind in ("batchnorm", "instancenorm"):
        return "norm"
    if name.endswith(".bias") and block.kind == "conv" and block.name != "head":
        return "conv bias"
    if block.name == "head":
        return "num_classes"
    return "widths"


def match_layout(
    state_shapes: Mapping[str, tuple[int, ...]],
    mapping: Mapping[str, str],
    spec: UNetSpec,
    ignore: Callable[[str], bool] = lambda key: key.endswith("num_batches_tracked"),
) -> list[str]:
    """Every difference between a file's tensors and the layout ``mapping`` gives ``spec``.

    Args:
        state_shapes: The file's tensor names and shapes.
        mapping: Canonical tensor → source key (:func:`unet_torch.graph.tensor_mapping` of the
            layout's module map).
        spec: The spec the layout was inferred as.
        ignore: Source keys that are bookkeeping, not weights.

    Returns:
        One line per mismatch (missing, unexpected, mis-shaped tensors), each naming the source
        layer and the feature (conv bias, norm, upsampling kind, widths); empty when all fit.
    """
    problems: list[str] = []
    for name, shape in build_plan(spec).weight_shapes.items():
        key = mapping[name]
        if key not in state_shapes:
            feature = feature_of(spec, name)
            if feature == "conv bias":
                feature = "conv bias: the other 3x3 convs have one"
            problems.append(f"{key} is missing ({feature}: expected {shape})")
        elif state_shapes[key] != shape:
            problems.append(
                f"{key} is {state_shapes[key]}, the layout needs {shape} ({feature_of(spec, name)})"
            )
    used = set(mapping.values())
    modules = {key.rsplit(".", 1)[0] for key in used}
    for key in state_shapes:
        if key in used or ignore(key):
            continue
        module, tensor = key.rsplit(".", 1) if "." in key else (key, "")
        if module in modules and tensor == "bias":
            problems.append(f"{key} is unexpected (conv bias: the other 3x3 convs have none)")
        else:
            problems.append(f"{key} is unexpected (no block of the layout owns it)")
    return problems


def save_state(state: Mapping[str, Any], path: Path) -> Path:
    """``torch.save`` of a plain state dict (what ``torch.save(model.state_dict())`` writes)."""
    import torch

    torch.save(dict(state), path)
    return path


def spec_problems(inferred: UNetSpec, given: UNetSpec | None, free: Iterable[str]) -> list[str]:
    """Fields where ``given`` contradicts what the file says (``free`` ones the file cannot say)."""
    if given is None:
        return []
    free = set(free)
    return [
        f"{field}={a!r} in the file, {b!r} in the given spec"
        for field, (a, b) in inferred.diff(given).items()
        if field not in free
    ]


def reconcile(
    inferred: UNetSpec, given: UNetSpec | None, free: Iterable[str], where: str
) -> UNetSpec:
    """``inferred``, with the ``free`` fields (not stored in the file) taken from ``given``.

    Raises:
        ValueError: ``given`` contradicts the file; every contradicting field is named.
    """
    if given is None:
        return inferred
    problems = spec_problems(inferred, given, free)
    if problems:
        raise ValueError(f"{where}: the given spec does not fit the file: {'; '.join(problems)}")
    changes = {k: b for k, (_, b) in inferred.diff(given).items()}
    return inferred.replace(**changes) if changes else inferred


def load_strict(module: Any, state: Mapping[str, Any], where: str) -> Any:
    """``module.load_state_dict(state, strict=True)`` with its report as one line."""
    try:
        module.load_state_dict(dict(state), strict=True)
    except RuntimeError as err:
        lines = [ln.strip() for ln in str(err).splitlines() if ln.strip()]
        raise ValueError(f"{where}: {' '.join(lines)[:600]}") from None
    return module


def user_model(target: str, args_json: str | None = None) -> tuple[Any, str]:
    """The model ``MODULE:FACTORY(**args)`` builds: a class or function of an importable module
    (the current folder is searched first, so a checkout of the source project works as is) or of
    a Python file (``path/to/unet.py:UNet``, imported with its folder on ``sys.path`` so its
    sibling imports work).

    Returns:
        The model (whatever the factory returns) and the call, for messages.

    Raises:
        ValueError: A malformed target or arguments, a module that does not import, or a factory
            that refuses the arguments.
    """
    if ":" not in target:
        raise ValueError(
            "--source-model must read pkg.module:factory (a class or function of an importable "
            f"module) or path/to/unet.py:factory (of a file). Received: {target!r}"
        )
    module_name, attr = target.rsplit(":", 1)
    try:
        kwargs = json.loads(args_json) if args_json else {}
    except json.JSONDecodeError as err:
        raise ValueError(f"--source-args is not valid JSON: {err}") from None
    if not isinstance(kwargs, dict):
        raise ValueError(f"--source-args must be a JSON object. Received: {args_json!r}")
    _triton_first()
    module = _import(target, module_name)
    factory = module
    for part in attr.split("."):
        if not hasattr(factory, part):
            raise ValueError(f"--source-model {target}: {module_name!r} has no {attr!r}")
        factory = getattr(factory, part)
    try:
        model = factory(**kwargs)
    except TypeError as err:
        raise ValueError(f"--source-model {target}: {err}") from None
    call = f"{target}({', '.join(f'{k}={v!r}' for k, v in kwargs.items())})"
    return model, call


def _triton_first() -> None:
    """Load triton before the user's code runs: that code may import TensorFlow (a Keras builder),
    and TensorFlow followed by triton crashes the interpreter (``unet_keras._imports``, which does
    the same when Keras is imported). TensorFlow itself is left for when a Keras model is built:
    loading it here would add its 0.7 GB to the memory a torch source's proof runs in."""
    if "tensorflow" not in sys.modules:
        with contextlib.suppress(ImportError):
            import triton  # noqa: F401


def _import(target: str, module_name: str) -> Any:
    """The module a ``--source-model`` names: a file path or an importable name."""
    if module_name.endswith(".py") or os.sep in module_name or "/" in module_name:
        path = Path(module_name).expanduser().resolve()
        if not path.is_file():
            raise FileNotFoundError(f"--source-model {target}: no such file {module_name!r}")
        # A name of its own per file: two files called unet.py never replace each other.
        name = f"unet_source_{abs(hash(str(path))):x}_{path.stem}"
        if name in sys.modules:
            return sys.modules[name]
        spec = importlib.util.spec_from_file_location(name, path)
        if spec is None or spec.loader is None:
            raise ValueError(f"--source-model {target}: {module_name!r} is not a Python file")
        module = importlib.util.module_from_spec(spec)
        folder = str(path.parent)
        added = folder not in sys.path
        if added:
            sys.path.insert(0, folder)
        sys.modules[name] = module
        try:
            spec.loader.exec_module(module)
        except Exception as err:  # the file's own import-time error, in one line
            del sys.modules[name]
            raise ValueError(
                f"--source-model {target}: importing {path.name} failed "
                f"({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''})"
            ) from None
        finally:
            if added:
                sys.path.remove(folder)
        return module
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        return importlib.import_module(module_name)
    except ImportError as err:
        raise ValueError(
            f"--source-model {target}: cannot import {module_name!r} ({err})"
        ) from None


def user_module(target: str, args_json: str | None = None) -> tuple[Any, str]:
    """The torch module ``MODULE:FACTORY(**args)`` names (see :func:`user_model`).

    Raises:
        ValueError: As :func:`user_model`, or a factory that does not give a ``torch.nn.Module``.
    """
    model, call = user_model(target, args_json)
    import torch

    if not isinstance(model, torch.nn.Module):
        raise ValueError(
            f"--source-model {target} gave a {type(model).__name__}, not a torch.nn.Module"
        )
    return model, call
