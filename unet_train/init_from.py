"""Start a training run from weights: anything ``unet port`` reads, proven, then fitted to the task.

``model.init_from`` names the base model: a canonical ``.safetensors`` file, a Lightning ``.ckpt``,
a ``.pt``/``.pth`` state dict (this project's, or a layout from elsewhere such as
milesial/Pytorch-UNet's or MONAI's ``BasicUNet``, recognised by its key names), a ``.keras`` or
``.weights.h5`` file, a hub folder or a hub id (``user/name``, fetched through huggingface_hub's
cache). :func:`read_base` reads it through the bridge, as ``unet port`` reads a source, and proves
it: where the source can run (a Keras model file, MONAI installed, or the class the user names with
``model.init_source_model``), the PyTorch twin holding the weights is run against it on the same
input and judged by the project's noise-aware rule; a run does not start from weights that do not
compute what their source computes.

The spec comes from the base model. :func:`start_from` then fits it to the task:

- a ``model.preset``/``model.spec`` that contradicts the base model is refused, the fields named
  (one that agrees is accepted);
- another number of classes (the data's, which ``train.py`` links to ``model.num_classes``)
  re-initialises the head;
- another number of input channels adapts the first convolution as timm's ``adapt_input_conv``
  does: the kernels are summed for one channel, repeated and rescaled for more;
- anything else that differs is refused, the tensor named.

Example:
    >>> import tempfile, pathlib
    >>> from unet_spec import get_preset, random_weights, save_weights
    >>> spec = get_preset("modern-small")
    >>> path = save_weights(random_weights(spec), spec, pathlib.Path(tempfile.mkdtemp()) / "a.safetensors")
    >>> start = start_from(str(path), num_classes=5)
    >>> start.spec.num_classes, start.changes[0].split(":")[0]
    (5, 'head re-initialised for 5 classes (the base model has 2)')
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from unet_spec import UNetSpec, make_spec

#: Fields a task may change; every other field of the spec comes from the base model.
TASK_FIELDS = ("in_channels", "num_classes")


@dataclass(frozen=True)
class BaseModel:
    """A base model as read and proven.

    Attributes:
        name: ``model.init_from`` as given (a path or a hub id).
        file: The file whose bytes ``sha256`` hashes (a hub folder's ``model.safetensors``).
        sha256: The SHA-256 of ``file``.
        kind: What the file is (``canonical safetensors file``, ``milesial layout``, ...).
        weights: Canonical weights.
        spec: The spec read from the source.
        proven: What was proven against the source, one line.
    """

    name: str
    file: Path
    sha256: str
    kind: str
    weights: dict[str, np.ndarray]
    spec: UNetSpec
    proven: str


@dataclass(frozen=True)
class Start:
    """A base model fitted to the task: the spec to build and the tensors to load into it.

    Attributes:
        base: The base model.
        spec: The task's spec: the base model's, with the task's channels and classes.
        weights: The tensors to load; those left out (a re-initialised head) keep the new
            model's initialisation.
        changes: What was changed for the task, one line each (empty: the same task).
    """

    base: BaseModel
    spec: UNetSpec
    weights: dict[str, np.ndarray]
    changes: list[str] = field(default_factory=list)

    def line(self) -> str:
        """The one line a run prints: what it loaded, what was proven, what changed."""
        b = self.base
        changed = "; ".join(self.changes) if self.changes else "the same task, every tensor loaded"
        return (
            f"model.init_from {b.name}: {b.kind}, sha256 {b.sha256[:12]}, {len(b.weights)} "
            f"tensors; {b.proven}; {changed}"
        )

    def provenance(self) -> dict[str, Any]:
        """What ``metrics.json`` and the model card record (plain types)."""
        b = self.base
        return {
            "name": b.name,
            "file": str(b.file),
            "sha256": b.sha256,
            "kind": b.kind,
            "spec": b.spec.to_dict(),
            "proven": b.proven,
            "changes": list(self.changes),
        }


def sha256_of(path: str | os.PathLike[str]) -> str:
    """The SHA-256 of a file's bytes, read in chunks."""
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def read_base(
    name: str, source_model: str | None = None, source_args: Mapping[str, Any] | None = None
) -> BaseModel:
    """Read and prove a base model.

    Args:
        name: A weight file or hub folder (any format ``unet port`` reads), or a hub id.
        source_model: The source's own torch class or factory (``pkg.module:factory``), for a
            layout from elsewhere whose code is not installed: the weights are proven against it.
        source_args: Keyword arguments of ``source_model``.

    Raises:
        FileNotFoundError: No such file, folder or hub id.
        ValueError: A file no reader knows, non-finite weights, or weights whose twin does not
            compute what the source computes (the judge's figures in the message).
    """
    import json

    from unet_bridge.formats import format_of
    from unet_bridge.parity import check_finite
    from unet_bridge.port import prove_read
    from unet_bridge.sources import read_any
    from unet_runtime.downloads import fetch_folder, looks_like_hub_id
    from unet_spec.hub import FETCHED, WEIGHTS_NAME

    path = Path(name)
    if not path.exists() and looks_like_hub_id(name):
        path = fetch_folder(name, FETCHED)
    elif not path.exists():
        raise FileNotFoundError(f"model.init_from {name}: no such file or folder")
    args = json.dumps(dict(source_args)) if source_args else None
    source, read = read_any(path, source_model=source_model, source_args=args)
    check_finite(read.weights, what=f"model.init_from {name}")
    # The judge of `unet port`: the twin with the weights against the source, where it can run.
    proof = prove_read(read)
    if not proof.ok:
        raise ValueError(
            f"model.init_from {name}: the PyTorch twin with these weights does not compute what "
            f"the source computes ({proof.summary})"
        )
    if read.reference is not None:
        proven = f"proven: {proof.summary}"
    elif source is None:
        proven = "this project's own weights: names, shapes and spec checked"
    else:
        proven = (
            f"not proven against {source.name}'s own code (only its weights were given: names, "
            "shapes and spec checked; name its class with model.init_source_model to prove it)"
        )
    kind = f"{source.name} layout" if source is not None else format_of(path).description
    hashed = path / WEIGHTS_NAME if path.is_dir() else path
    return BaseModel(name, hashed, sha256_of(hashed), kind, read.weights, read.spec, proven)


def check_agrees(base: UNetSpec, preset: str | None, overrides: Mapping[str, Any] | None) -> None:
    """Refuse a ``model.preset``/``model.spec`` that contradicts the base model's spec.

    With a preset, its whole spec (with ``overrides``) must be the base model's; without one,
    each field in ``overrides`` must be. The channels and classes are the task's (see
    :func:`fit_to_task`), so they may differ.

    Raises:
        ValueError: The fields that differ, with both values.
    """
    if preset is None and not overrides:
        return
    overrides = dict(overrides or {})
    if preset is not None:
        given = make_spec(preset, overrides).to_dict()
        what = f"model.preset {preset!r}" + (" with model.spec" if overrides else "")
    else:
        given = {**base.to_dict(), **overrides}
        unknown = sorted(set(overrides) - set(base.to_dict()))
        if unknown:
            raise ValueError(f"model.spec: unknown field(s) {', '.join(unknown)}")
        what = "model.spec"
    ours = base.to_dict()
    skip = set(TASK_FIELDS)
    if given["num_classes"] != ours["num_classes"]:
        skip.add("head")  # the head's activation follows the class count
    differ = {k: (ours[k], given[k]) for k in ours if k not in skip and ours[k] != given[k]}
    if differ:
        fields = ", ".join(f"{k} (base model {a!r}, given {b!r})" for k, (a, b) in differ.items())
        raise ValueError(
            f"{what} contradicts the base model of model.init_from: {fields}; the spec comes from "
            "the base model: set model.preset to null and leave out model.spec, or give only "
            "values that agree"
        )


def task_spec(
    base: UNetSpec, in_channels: int | None = None, num_classes: int | None = None
) -> UNetSpec:
    """The base model's spec with the task's channels and classes.

    A binary task (2 classes, as the data measures 0/255 masks) is the same task for a
    one-class sigmoid model; a one-class model given more classes gets a softmax head.
    """
    fields: dict[str, Any] = {}
    if in_channels is not None:
        fields["in_channels"] = in_channels
    if num_classes is not None and max(num_classes, 2) != max(base.num_classes, 2):
        fields["num_classes"] = num_classes
        if base.head == "sigmoid" and base.num_classes == 1 and num_classes > 2:
            fields["head"] = "softmax"
        elif base.head == "softmax" and num_classes == 1:
            fields["head"] = "sigmoid"
    return base.replace(**fields) if fields else base


def adapt_input_conv(weight: np.ndarray, in_channels: int) -> np.ndarray:
    """A first convolution's kernels ``(out, in, kh, kw)`` for ``in_channels`` input channels.

    As timm's ``adapt_input_conv`` (``timm/models/_manipulate.py``): one channel gets the sum of
    the kernels (a grey image through RGB kernels, each channel the grey value); more channels get
    the kernels repeated and cut to ``in_channels``, scaled by ``in / in_channels``, so that an
    image whose channels are alike gives the base model's response (exactly where
    ``in_channels`` is a multiple of its channels, at its scale otherwise). timm converts from
    three channels only; the same two rules hold for any count, so any is taken here.
    """
    weight = np.asarray(weight, dtype=np.float32)
    have = weight.shape[1]
    if in_channels == have:
        return weight
    if in_channels == 1:
        return weight.sum(axis=1, keepdims=True)
    repeat = -(-in_channels // have)
    tiled = np.tile(weight, (1, repeat, 1, 1))[:, :in_channels]
    return (tiled * (have / in_channels)).astype(np.float32)


def fit_to_task(base: BaseModel, spec: UNetSpec) -> tuple[dict[str, np.ndarray], list[str]]:
    """The base model's tensors for ``spec`` (:func:`task_spec`) and what was changed.

    Tensors whose shape changed with the class count (the head) are left out, so they keep the
    new model's initialisation; the first convolution is adapted to the channel count
    (:func:`adapt_input_conv`).

    Raises:
        ValueError: A tensor that differs otherwise (named, with both shapes).
    """
    ours, theirs = base.spec.plan().weight_shapes, spec.plan().weight_shapes
    if set(ours) != set(theirs):
        names = sorted(set(ours) ^ set(theirs))
        raise ValueError(
            f"model.init_from: the task's model has other tensors ({', '.join(names)})"
        )
    weights: dict[str, np.ndarray] = {}
    head: list[str] = []
    adapted: list[str] = []
    for name, shape in theirs.items():
        had = ours[name]
        if tuple(had) == tuple(shape):
            weights[name] = base.weights[name]
        elif _differs_only(had, shape, 1, base.spec.in_channels, spec.in_channels):
            weights[name] = adapt_input_conv(base.weights[name], spec.in_channels)
            adapted.append(name)
        elif _differs_only(had, shape, 0, base.spec.num_classes, spec.num_classes):
            head.append(name)
        else:
            raise ValueError(
                f"model.init_from: tensor {name} is {tuple(had)} in the base model and "
                f"{tuple(shape)} for this task; only the head (classes) and the first "
                "convolution (input channels) can change"
            )
    changes = []
    if head:
        was, now = base.spec.num_classes, spec.num_classes
        head_kind = f", head {spec.head}" if spec.head != base.spec.head else ""
        changes.append(f"head re-initialised for {now} classes (the base model has {was}"
                       f"{head_kind}): {', '.join(head)}")  # fmt: skip
    if adapted:
        was, now = base.spec.in_channels, spec.in_channels
        rule = (f"its {was} channels' kernels summed" if now == 1
                else f"its {was} channels' kernels repeated and scaled by {was}/{now}")  # fmt: skip
        changes.append(
            f"first convolution adapted to {now} input channel{'s' * (now != 1)} ({rule}): "
            + ", ".join(adapted)
        )
    return weights, changes


def _differs_only(had: tuple, shape: tuple, axis: int, was: int, now: int) -> bool:
    """Whether two shapes differ only along ``axis``, from ``was`` to ``now``."""
    if len(had) != len(shape) or len(had) <= axis or was == now:
        return False
    rest = all(a == b for i, (a, b) in enumerate(zip(had, shape, strict=True)) if i != axis)
    return rest and had[axis] == was and shape[axis] == now


def start_from(
    name: str,
    preset: str | None = None,
    overrides: Mapping[str, Any] | None = None,
    in_channels: int | None = None,
    num_classes: int | None = None,
    source_model: str | None = None,
    source_args: Mapping[str, Any] | None = None,
) -> Start:
    """Read and prove the base model ``name``, check the given spec against it and fit it to the
    task's channels and classes (see the module's notes).

    Raises:
        FileNotFoundError: No such file, folder or hub id.
        ValueError: An unreadable or unproven source, a contradicting spec (the fields named), or
            a difference that is neither the head nor the first convolution.
    """
    base = read_base(name, source_model, source_args)
    check_agrees(base.spec, preset, overrides)
    given = dict(overrides or {})
    spec = task_spec(
        base.spec,
        in_channels if in_channels is not None else given.get("in_channels"),
        num_classes if num_classes is not None else given.get("num_classes"),
    )
    weights, changes = fit_to_task(base, spec)
    return Start(base, spec, weights, changes)


__all__ = [
    "TASK_FIELDS",
    "BaseModel",
    "Start",
    "adapt_input_conv",
    "check_agrees",
    "fit_to_task",
    "read_base",
    "sha256_of",
    "start_from",
    "task_spec",
]
