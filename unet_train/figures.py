"""The figures of a training run: overlays of the best weights' labels, and the learning curves.

Both are written atomically as PNG (matplotlib's Agg backend, chosen when drawing, never at import).
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from unet_data import IGNORE_INDEX, Sample
from unet_infer import TiledPredictor, labels_from_probs
from unet_runtime import atomic_write_bytes


def draw_overlays(
    predictor: TiledPredictor, samples: Sequence[Sample], path: Path, tile: int | None = None
) -> Path:
    """``image | truth | prediction`` rows, one per sample, the predictions being the labels
    ``unet predict`` writes for the predictor's weights (tiled whole images, the one label rule).

    Args:
        predictor: The weights to show, e.g. the best checkpoint's
            (:class:`~unet_torch.predict.TorchPredictor` with ``head=True``).
        samples: ``(name, image, mask)`` triples.
        path: The PNG to write.
        tile: Tile input size (``None``: the engine's choice).
    """
    plt = _pyplot()
    spec = predictor.spec
    preds = [
        labels_from_probs(predictor.predict(image, tile), spec.head) for _, image, _ in samples
    ]
    k = max(spec.num_classes, 2)
    cmap = plt.get_cmap("tab10" if k <= 10 else "tab20")
    colours = np.array([cmap(i % cmap.N)[:3] for i in range(k)], np.float32)

    def paint(mask: np.ndarray) -> np.ndarray:
        rgb = colours[np.clip(mask, 0, k - 1)]
        rgb[mask == IGNORE_INDEX] = 0.0
        return rgb

    fig, axes = plt.subplots(len(samples), 3, figsize=(9, 3 * len(samples)), squeeze=False)
    for row, ((name, image, mask), pred) in enumerate(zip(samples, preds, strict=True)):
        shown = image[0] if image.shape[0] == 1 else np.moveaxis(image[:3], 0, -1)
        panels = ((shown, "image"), (paint(mask), "truth"), (paint(pred), "prediction"))
        for ax, (panel, title) in zip(axes[row], panels, strict=True):
            ax.imshow(panel, cmap="gray" if panel.ndim == 2 else None, vmin=0, vmax=1)
            ax.set_title(f"{title}: {Path(name).name}" if title == "image" else title, fontsize=8)
            ax.axis("off")
    fig.tight_layout()
    save_figure(fig, path)
    plt.close(fig)
    return path


def draw_curves(history: Sequence[dict[str, float]], path: Path) -> Path:
    """Training and validation loss, and validation mean Dice and IoU, per epoch."""
    plt = _pyplot()
    epochs = [r["epoch"] for r in history]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    for key, label in (("train/loss", "train loss"), ("val/loss", "val loss")):
        ax1.plot(epochs, [r.get(key, np.nan) for r in history], label=label)
    ax1.set_xlabel("epoch")
    ax1.set_title("loss")
    ax1.legend()
    ax2.plot(epochs, [r.get("val/dice", np.nan) for r in history], label="mean Dice")
    ax2.plot(epochs, [r.get("val/miou", np.nan) for r in history], label="mean IoU")
    ax2.set_xlabel("epoch")
    ax2.set_title("validation")
    ax2.set_ylim(0, 1)
    ax2.legend()
    fig.tight_layout()
    save_figure(fig, path)
    plt.close(fig)
    return path


def save_figure(fig: Any, path: Path) -> None:
    """A matplotlib figure as a PNG, written atomically."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    atomic_write_bytes(path, buffer.getvalue())


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt
