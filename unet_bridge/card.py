"""Model cards: a short README beside an artefact (the spec, its parity figures, how to load it).

``unet export`` writes one beside every artefact (``DST.README.md``; ``README.md`` inside a
SavedModel folder); a training run can write one beside its ``model.safetensors`` with its metrics.
The card is plain markdown built from what the caller proved; nothing in it is typed by hand.

Example:
    >>> import tempfile, pathlib
    >>> from unet_spec import get_preset
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> write_model_card(folder, get_preset("modern-small")).name
    'README.md'
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from unet_runtime import atomic_write_bytes, suffix_in
from unet_spec import UNetSpec, build_plan

#: How to load each format, by suffix (``{path}`` is the artefact's file name).
LOADING = {
    ".onnx": """```python
import numpy as np, onnxruntime as ort
session = ort.InferenceSession("{path}", providers=["CPUExecutionProvider"])
logits = session.run(None, {{"x": x_nchw.astype(np.float32)}})[0]  # NCHW logits
spec_json = session.get_modelmeta().custom_metadata_map["unet_spec"]
```
Or `unet predict IMAGES --weights {path} --backend onnx --out masks/`.""",
    ".savedmodel": """```python
import numpy as np, tensorflow as tf
model = tf.saved_model.load("{path}")
logits = model.serve(tf.constant(x_nhwc, tf.float32))  # NHWC in, NHWC logits out
# the spec: {path}/assets.extra/unet_spec.json
```""",
    ".tflite": """```python
from ai_edge_litert.interpreter import Interpreter  # or tf.lite.Interpreter
interpreter = Interpreter(model_path="{path}")
inp = interpreter.get_input_details()[0]
interpreter.resize_tensor_input(inp["index"], x_nhwc.shape)
interpreter.allocate_tensors()
interpreter.set_tensor(inp["index"], x_nhwc.astype("float32"))
interpreter.invoke()
logits = interpreter.get_tensor(interpreter.get_output_details()[0]["index"])  # NHWC
```""",
    ".pt2": """```python
import torch
extra = {{"unet_spec": ""}}
program = torch.export.load("{path}", extra_files=extra)  # extra["unet_spec"]: the spec JSON
logits = program.module()(torch.from_numpy(x_nchw))  # NCHW logits
```""",
    ".safetensors": """```python
from unet_spec import load_weights
from unet_torch import UNet, load_canonical          # pip install 'unet-twins[torch]'
from unet_keras import build_unet, from_canonical    # pip install 'unet-twins[keras]'
weights, spec = load_weights("{path}")
torch_model = load_canonical(UNet(spec), weights).eval()
keras_model = from_canonical(build_unet(spec, None), weights, spec)
```""",
}


def card_path(artefact: str | os.PathLike[str]) -> Path:
    """Where the card of ``artefact`` goes: inside a folder, else ``ARTEFACT.README.md``."""
    artefact = Path(artefact)
    if artefact.is_dir():
        return artefact / "README.md"
    return artefact.with_name(artefact.name + ".README.md")


def find_metrics(weights: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The ``metrics.json`` of a training run's weights, if any and readable: beside the file, or
    one level up for a checkpoint in the run's ``checkpoints/`` folder."""
    weights = Path(weights)
    path = weights.with_name("metrics.json")
    if not path.is_file() and weights.parent.name == "checkpoints":
        path = weights.parent.with_name("metrics.json")
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def trained_views(weights: str | os.PathLike[str]) -> str | bool:
    """The test-time augmentation a training run recorded for its weights (``tta_views`` in its
    ``metrics.json``: the views its augmentation drew, in :mod:`unet_infer.tta`'s vocabulary):
    ``False`` for a run without flips or turns, ``True`` (all 8 views) when nothing is recorded."""
    from unet_infer import TTA_MODES

    views = (find_metrics(weights) or {}).get("tta_views")
    if views == "none":
        return False  # trained without flips or turns: no view but the image itself
    return views if views in TTA_MODES else True


def model_card(
    spec: UNetSpec,
    parity: Any = None,
    metrics: Mapping[str, Any] | None = None,
    artefact: str | os.PathLike[str] | None = None,
    source: str | None = None,
    loading: str | None = None,
    name: str | None = None,
) -> str:
    """The card's markdown.

    Args:
        spec: The architecture.
        parity: An :class:`~unet_bridge.export.ExportResult` (its per-input checks are tabled), or
            a mapping of name → figure, or ``None``.
        metrics: A training run's metrics (its ``metrics.json``): training data and scores.
        artefact: The file the card describes (its suffix picks the loading snippet).
        source: Where the weights came from.
        loading: The loading section (default: the snippet of ``artefact``'s format).
        name: The title (default: ``artefact``'s name).
    """
    file_name = Path(artefact).name if artefact is not None else "model"
    suffix = suffix_in(file_name, LOADING)
    if loading is None and suffix is not None:
        loading = LOADING[suffix].format(path=file_name)
    name = name or file_name
    plan = build_plan(spec)
    lines = [f"# {name}", ""]
    from unet_spec.sizes import preset_name

    preset = preset_name(spec)
    lines.append(
        f"U-Net ({'preset `' + preset + '`' if preset else 'custom spec'}): {spec.in_channels} → "
        f"{spec.num_classes} channels, depth {spec.depth}, base {spec.base_filters} filters, "
        f"{spec.padding} padding, head `{spec.head}`, {plan.trainable_params:,} parameters."
    )
    if source:
        lines.append(f"Weights from `{source}`.")
    lines += ["", "## Spec", "", "```json", json.dumps(spec.to_dict(), indent=1, sort_keys=True),
              "```", ""]  # fmt: skip
    lines += _parity_section(parity)
    if metrics:
        lines += _base_model_section(metrics.get("base_model"))
        lines += _metrics_section(metrics)
    if loading is not None:
        lines += ["## Loading", "", loading, ""]
    return "\n".join(lines).rstrip() + "\n"


def _parity_section(parity: Any) -> list[str]:
    if parity is None:
        return []
    lines = ["## Parity", ""]
    checks = getattr(parity, "checks", None)
    if checks is not None:
        tol = parity.tolerance
        lines += [
            f"Run in {parity.runtime} ({parity.precision}) after writing and judged against the "
            f"canonical PyTorch model (fp32 reference, float64 noise): limit {tol.margin:g}× the "
            f"measured fp32 noise. Valid sizes: {parity.size_rule}.",
            "",
            "| input | shape | rel | limit | max abs | argmax agreement | passed |",
            "|---|---|---|---|---|---|---|",
        ]
        for c in checks:
            lines.append(
                f"| {c.name} | {'x'.join(map(str, c.shape))} | {c.logits.rel:.3g} | "
                f"{c.logits.rel_limit:.3g} | {c.logits.max_abs:.3g} | "
                f"{100 * c.argmax_agreement:.4f}% | {'yes' if c.passed else 'no'} |"
            )
    elif isinstance(parity, Mapping):
        lines += [f"- {k}: {v}" for k, v in parity.items()]
    else:
        lines.append(str(parity))
    return [*lines, ""]


def _base_model_section(base: Any) -> list[str]:
    """Where a fine-tuned run started (``base_model`` in its ``metrics.json``: the name given,
    the file's SHA-256, what was proven, what was changed for the task)."""
    if not isinstance(base, Mapping) or not base.get("name"):
        return []
    lines = ["## Base model", "", f"Fine-tuned from `{base['name']}`."]
    rows = (("file", "file"), ("sha256", "SHA-256"), ("kind", "read as"), ("proven", "proof"))
    lines += [f"- {label}: {base[key]}" for key, label in rows if base.get(key)]
    changes = base.get("changes")
    if isinstance(changes, list):
        lines.append("- changed for the task: " + ("; ".join(changes) if changes else "nothing"))
    return [*lines, ""]


#: Figures a training run's card shows, in this order (the per-class ones stay in metrics.json).
_FIGURES = ("val/dice", "val/dice_fg", "val/miou", "val/pixel_error", "val/loss", "train/loss")


def _metrics_section(metrics: Mapping[str, Any]) -> list[str]:
    """A training run's ``metrics.json`` (see ``unet_train.callbacks.RunArtifacts``) as a short
    section: the data, the run's length, the best and last epoch's main figures, the machine."""
    lines = ["## Training", ""]
    data = metrics.get("data")
    if isinstance(data, Mapping):
        lines.append("- data: " + ", ".join(f"{k} {v}" for k, v in data.items() if v is not None))
    for key, label in (("epochs", "epochs"), ("global_step", "steps"), ("wall_time_s", "wall s"),
                       ("tta_views", "test-time augmentation views (trained with)")):  # fmt: skip
        if key in metrics:
            lines.append(f"- {label}: {metrics[key]}")
    machine = metrics.get("machine")
    if isinstance(machine, Mapping):
        lines.append("- machine: " + ", ".join(f"{k} {v}" for k, v in machine.items()))
    rows = [(name, metrics.get(name)) for name in ("best", "last")]
    rows = [(name, row) for name, row in rows if isinstance(row, Mapping)]
    shown = [k for k in _FIGURES if any(k in row for _, row in rows)]
    if shown:
        monitor = metrics.get("monitor")
        lines += ["", f"| epoch ({'best by ' + monitor if monitor else 'best'}) | "
                  + " | ".join(shown) + " |", "|---" * (len(shown) + 1) + "|"]  # fmt: skip
        for name, row in rows:
            cells = [f"{row[k]:.4f}" if isinstance(row.get(k), float) else "" for k in shown]
            lines.append(f"| {name}: {row.get('epoch', '')} | " + " | ".join(cells) + " |")
    return [*lines, ""]


def _short(value: Any) -> str:
    text = json.dumps(value, sort_keys=True, default=str)
    return text if len(text) <= 300 else text[:297] + "..."


def write_model_card(
    folder_or_path: str | os.PathLike[str],
    spec: UNetSpec,
    parity: Any = None,
    metrics: Mapping[str, Any] | None = None,
    artefact: str | os.PathLike[str] | None = None,
    source: str | None = None,
) -> Path:
    """Write the card atomically and return its path.

    ``folder_or_path``: a folder (the card is its ``README.md``), a ``.md`` path, or an artefact
    (the card is ``ARTEFACT.README.md`` beside it). See :func:`model_card` for the rest.
    """
    target = Path(folder_or_path)
    if target.is_dir():
        path = target / "README.md"
    elif target.suffix == ".md":
        path = target
    else:
        path = card_path(target)
        artefact = artefact if artefact is not None else target
    text = model_card(spec, parity, metrics, artefact, source)
    return atomic_write_bytes(path, text.encode())


def hub_card(
    spec: UNetSpec,
    parity: Any = None,
    metrics: Mapping[str, Any] | None = None,
    source: str | None = None,
    name: str = "model",
) -> str:
    """A hub folder's card: the YAML metadata hubs index (``library_name``, ``tags``,
    ``license``, ``pipeline_tag``, and ``datasets``, ``metrics`` and ``model-index`` from a run's
    ``metrics.json``; :func:`unet_spec.hub.card_metadata`), then :func:`model_card` with the three
    ways to load the folder. A training run's folder and ``unet port``'s hub folders get this card.
    """
    from unet_spec import hub

    body = model_card(spec, parity, metrics, source=source, name=name,
                      loading=hub.LOADING.format(path=name))  # fmt: skip
    return hub.card_header(spec, metrics, name) + body


def write_hub_card(
    folder: str | os.PathLike[str],
    spec: UNetSpec,
    parity: Any = None,
    metrics: Mapping[str, Any] | None = None,
    source: str | None = None,
    name: str | None = None,
) -> Path:
    """Write :func:`hub_card` as ``folder/README.md`` atomically (``name``: the folder's)."""
    folder = Path(folder)
    text = hub_card(spec, parity, metrics, source, name or folder.name)
    return atomic_write_bytes(folder / "README.md", text.encode())


__all__ = [
    "LOADING",
    "card_path",
    "find_metrics",
    "hub_card",
    "model_card",
    "write_hub_card",
    "write_model_card",
]
