"""Model cards: a short README beside an artefact (the spec, its parity figures, how to load it).

``unet export`` writes one beside every artefact (``DST.README.md``; ``README.md`` inside a
SavedModel folder). A hub folder's card (:func:`hub_card`: ``unet port`` and a training run write
it) opens with the YAML metadata hubs index, rendered by huggingface_hub's ``ModelCardData``: the
fields every folder carries (:mod:`unet_spec.hub`), and from a training run's ``metrics.json`` its
data set, its validation figures (:data:`VALIDATION_FIGURES`) and the base model it was fine-tuned
from. The card is built from what the caller proved; nothing in it is typed by hand.

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
from unet_spec import hub as hub_folder

#: The main figures of a training run's validation (``SegmentationSystem.summarize`` logs them as
#: ``val/<name>``), in the order cards and run summaries show them, each with the metric id and
#: name a hub card gives it. The per-class figures stay in ``metrics.json``.
VALIDATION_FIGURES = {
    "val/dice": ("dice", "mean Dice (validation)"),
    "val/dice_fg": ("dice", "foreground Dice (validation)"),
    "val/miou": ("mean_iou", "mean IoU (validation)"),
    "val/pixel_error": ("pixel_error", "pixel error (validation)"),
}

#: How to load a hub folder (``{path}``: the folder or hub id).
HUB_LOADING = """```python
from unet_torch import UNet                       # pip install 'unet-twins[torch]'
model = UNet.from_pretrained("{path}")            # eval mode; NCHW logits out

import unet_keras                                 # pip install 'unet-twins[keras]'
keras_model = unet_keras.from_pretrained("{path}")  # NHWC logits out

import torch                                      # REPO: a clone of unet-twins
model = torch.hub.load("REPO", "unet", source="local", weights="{path}")
```"""

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


#: Figures a training run's card shows, in this order.
_FIGURES = (*VALIDATION_FIGURES, "val/loss", "train/loss")


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


def card_metadata(
    spec: UNetSpec, metrics: Mapping[str, Any] | None = None, name: str = "model"
) -> dict[str, Any]:
    """A hub card's YAML metadata as keyword arguments of huggingface_hub's ``ModelCardData``.

    The fields every folder carries (:mod:`unet_spec.hub`) and the preset's tag; with
    ``metrics`` (a training run's ``metrics.json``), its data set as ``datasets``, its best
    epoch's validation figures as the ``metrics`` ids and ``eval_results`` (``model-index``),
    and the weights a fine-tuned run started from (``base_model.name``) as ``base_model``.
    """
    from unet_spec.sizes import preset_name

    preset = preset_name(spec)
    meta: dict[str, Any] = {
        "library_name": hub_folder.LIBRARY_NAME,
        "license": hub_folder.LICENSE,
        "pipeline_tag": hub_folder.PIPELINE_TAG,
        "tags": [*hub_folder.TAGS, *([f"preset-{preset}"] if preset else [])],
    }
    if not metrics:
        return meta
    base = metrics.get("base_model")
    if isinstance(base, Mapping) and base.get("name"):
        meta["base_model"] = str(base["name"])  # a fine-tuned run's weights, named as hubs do
    dataset = _dataset_name(metrics.get("data"))
    if dataset:
        meta["datasets"] = [dataset]
    best = metrics.get("best")
    figures = {
        key: value
        for key, value in (best.items() if isinstance(best, Mapping) else ())
        if key in VALIDATION_FIGURES and isinstance(value, (int, float))
    }
    if figures:
        meta["metrics"] = sorted({VALIDATION_FIGURES[k][0] for k in figures})
        meta["model_name"] = name
        meta["eval_results"] = [
            {
                "task_type": hub_folder.PIPELINE_TAG,
                "dataset_type": dataset or "custom",
                "dataset_name": dataset or "custom",
                "dataset_split": "validation",
                "metric_type": VALIDATION_FIGURES[key][0],
                "metric_name": VALIDATION_FIGURES[key][1],
                "metric_value": round(float(value), 6),
            }
            for key, value in figures.items()
        ]
    return meta


def _dataset_name(data: Any) -> str | None:
    """A short name for a run's data (its folder's name, else its data module's)."""
    if not isinstance(data, Mapping):
        return None
    if data.get("root"):
        return Path(str(data["root"])).name or None
    module = str(data.get("module") or "")
    module = module.removesuffix("DataModule").removesuffix("Data")
    return module.lower() or None


def card_header(
    spec: UNetSpec, metrics: Mapping[str, Any] | None = None, name: str = "model"
) -> str:
    """A hub card's YAML front matter (``---`` lines included), rendered by huggingface_hub's
    ``ModelCardData`` so that hubs read it as they read their own (:func:`card_metadata`)."""
    from huggingface_hub import EvalResult, ModelCardData

    meta = card_metadata(spec, metrics, name)
    results = [EvalResult(**r) for r in meta.pop("eval_results", [])]
    data = ModelCardData(**meta, eval_results=results or None)
    return f"---\n{data.to_yaml()}\n---\n"


def hub_card(
    spec: UNetSpec,
    parity: Any = None,
    metrics: Mapping[str, Any] | None = None,
    source: str | None = None,
    name: str = "model",
) -> str:
    """A hub folder's card: :func:`card_header`, then :func:`model_card` with the three ways to
    load the folder. A training run's folder and ``unet port``'s hub folders get this card."""
    body = model_card(spec, parity, metrics, source=source, name=name,
                      loading=HUB_LOADING.format(path=name))  # fmt: skip
    return card_header(spec, metrics, name) + body


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
    return atomic_write_bytes(folder / hub_folder.CARD_NAME, text.encode())


__all__ = [
    "HUB_LOADING",
    "LOADING",
    "VALIDATION_FIGURES",
    "card_header",
    "card_metadata",
    "card_path",
    "find_metrics",
    "hub_card",
    "model_card",
    "write_hub_card",
    "write_model_card",
]
