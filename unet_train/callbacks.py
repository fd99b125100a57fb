"""Callbacks of a training run: atomic checkpoints, a non-finite loss guard, the run's artifacts and
the prediction writer.

:class:`AtomicCheckpointIO` is a checkpoint plugin (Lightning's public ``CheckpointIO`` interface):
every checkpoint the trainer writes (``ModelCheckpoint``, ``trainer.save_checkpoint``) goes to a
temporary file beside its destination and is renamed into place. ``train.py`` registers it.

:class:`RunArtifacts` writes, at the end of ``fit``, into the run's folder (beside ``checkpoints/``):

- ``model.safetensors``: the best checkpoint's weights in canonical form (:mod:`unet_spec.weights`);
- ``model.keras``: the Keras twin built from them, written through the bridge's verified writer
  (:func:`unet_bridge.write_verified`: the written file is run against PyTorch and its float64
  reference on a validation crop); a failed check fails the run (:class:`ParityError`) and leaves
  no ``model.keras``;
- ``overlays.png`` (image | truth | prediction, the prediction by a
  :class:`~unet_torch.predict.TorchPredictor` of the saved weights) and ``curves.png`` (loss and
  Dice per epoch), drawn by :mod:`unet_train.figures`; ``metrics.json`` (best and last validation
  figures, the views the model was trained with, the base model a fine-tuned run started from and
  its file's SHA-256, files, wall time);
- ``README.md``: the model card (hub metadata with ``base_model`` for a fine-tuned run, spec,
  base model, training figures, the export's parity, how to load it), and ``config.json`` (the
  spec): with ``model.safetensors`` the folder is a hub folder that ``UNet.from_pretrained``,
  ``unet_keras.from_pretrained`` and ``torch.hub`` load as it is. The three are written last, by
  the bridge's one writer of hub folders (:func:`unet_bridge.hub.write_hub_files`), so a run that
  fails before its end leaves no partial hub folder (its checkpoints stay).

:class:`MaskWriter` writes what ``predict_step`` returns, one ``NAME_mask.png`` and
``NAME_overlay.png`` per image, as ``unet predict`` writes them.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import BasePredictionWriter, Callback, Checkpoint
from lightning.pytorch.plugins.io import TorchCheckpointIO

from unet_infer.masks import encode_mask, overlay, png_bytes
from unet_runtime import atomic_path, atomic_write_bytes, machine_info
from unet_spec import NoiseTolerance, UNetSpec
from unet_torch.model import UNet, canonical_state
from unet_torch.predict import TorchPredictor
from unet_train.figures import draw_curves, draw_overlays


class NonFiniteLossError(RuntimeError):
    """The training loss became NaN or infinite."""


class ParityError(RuntimeError):
    """The exported Keras model does not compute what the PyTorch model computes."""


class FiniteLossGuard(Callback):
    """Stop the run, before the weights are touched, when the loss is NaN or infinite.

    The error propagates out of ``fit`` without any checkpoint being written, so the last good
    checkpoint on disk stays as it was; resume from it with a lower learning rate.
    """

    def on_before_backward(
        self, trainer: L.Trainer, pl_module: L.LightningModule, loss: torch.Tensor
    ) -> None:
        bad = not bool(torch.isfinite(loss.detach()).all())
        # Every process must agree, or the healthy ones would wait forever for the stopped one.
        bad = trainer.strategy.reduce_boolean_decision(bad, all=False)
        if bad:
            raise NonFiniteLossError(
                f"training loss is {float(loss.detach())} at epoch {trainer.current_epoch}, step "
                f"{trainer.global_step}; stopped before updating the weights (lower "
                "model.optimizer.lr or check the data; resume with --ckpt_path from the last good "
                "checkpoint)"
            )


class AtomicCheckpointIO(TorchCheckpointIO):
    """Torch checkpoint I/O that writes to a temporary file and renames it into place.

    A process killed mid-write leaves the previous checkpoint intact (and at worst a hidden
    temporary file beside it), never a truncated ``.ckpt``. Remote paths (``s3://...``) are
    written as :class:`TorchCheckpointIO` writes them.
    """

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None
    ) -> None:
        if "://" in str(path):
            super().save_checkpoint(checkpoint, path, storage_options)
            return
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp:
            super().save_checkpoint(checkpoint, tmp, storage_options)


def monitored_checkpoint(trainer: L.Trainer) -> Checkpoint | None:
    """The checkpoint callback that keeps the best epoch (``train.py`` adds an unmonitored one
    for ``last.ckpt``), else the trainer's first."""
    monitored = [cb for cb in trainer.checkpoint_callbacks if getattr(cb, "monitor", None)]
    return monitored[0] if monitored else trainer.checkpoint_callback


def run_dir(trainer: L.Trainer) -> Path:
    """The folder of this run: the checkpoints' parent, else the logger's folder."""
    ckpt = trainer.checkpoint_callback
    if ckpt is not None and getattr(ckpt, "dirpath", None):
        return Path(ckpt.dirpath).parent
    return Path(trainer.log_dir or trainer.default_root_dir)


class RunArtifacts(Callback):
    """Collect per-epoch figures and write the run's artifacts at the end of ``fit``.

    Args:
        overlays: Validation images shown in ``overlays.png``.
        keras_export: Export and parity-check the Keras model.
        parity_margin: The Keras export must match PyTorch within this multiple of PyTorch's
            fp32 noise, measured against a float64 run on the same crop
            (see :class:`unet_spec.NoiseTolerance`).
    """

    def __init__(
        self,
        overlays: int = 4,
        keras_export: bool = True,
        parity_margin: float = NoiseTolerance.margin,
    ) -> None:
        self.overlays = overlays
        self.keras_export = keras_export
        self.tolerance = NoiseTolerance(margin=parity_margin)
        self.history: list[dict[str, float]] = []
        self._train_losses: list[float] = []
        self._elapsed = 0.0
        self._start = time.monotonic()

    # Persisted in checkpoints, so a resumed run draws its curves from the first epoch.
    def state_dict(self) -> dict[str, Any]:
        return {"history": self.history, "elapsed": self._elapsed + time.monotonic() - self._start}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.history = list(state_dict.get("history", []))
        self._elapsed = float(state_dict.get("elapsed", 0.0))

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._start = time.monotonic()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs
        self._train_losses.append(float(loss.detach()))

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        row: dict[str, float] = {"epoch": trainer.current_epoch, "step": trainer.global_step}
        if self._train_losses:
            row["train/loss"] = float(np.mean(self._train_losses))
        self._train_losses = []
        loss = trainer.callback_metrics.get("val/loss")
        if loss is not None:
            row["val/loss"] = float(loss)
        row.update(getattr(pl_module, "last_val", {}))
        self.history.append(row)

    # -- artifacts -------------------------------------------------------------------------------
    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.fast_dev_run or not trainer.is_global_zero:
            return
        out = run_dir(trainer)
        out.mkdir(parents=True, exist_ok=True)
        ckpt_cb = monitored_checkpoint(trainer)
        best = getattr(ckpt_cb, "best_model_path", "") or getattr(ckpt_cb, "last_model_path", "")
        spec: UNetSpec = pl_module.spec
        if best and Path(best).is_file():
            state = torch.load(best, map_location="cpu", weights_only=True)["state_dict"]
            weights = {k[len("model.") :]: v for k, v in state.items() if k.startswith("model.")}
        else:  # no checkpointing configured: the final weights are the result
            weights = {k: v.detach().cpu() for k, v in pl_module.model.state_dict().items()}
            best = ""
        model = UNet(spec)
        model.load_state_dict(weights)
        model.eval()
        files = {"best_checkpoint": best}
        datamodule = trainer.datamodule
        # A sequence that may read its images when indexed: only the few used here are decoded.
        val = getattr(datamodule, "val_samples", None) or []
        parity = None
        if self.keras_export and val:
            parity = self._export_keras(model, spec, val, datamodule, out / "model.keras")
            files["keras"] = str(out / "model.keras")
        if val and self.overlays > 0:
            # Drawn by a predictor of the weights just saved, as ``unet predict`` draws them: the
            # live module keeps its own weights.
            device = "cuda" if pl_module.device.type == "cuda" else "cpu"
            predictor = TorchPredictor(spec, canonical_state(model), device)
            inference = getattr(pl_module, "inference", None)
            tile = inference.tile if inference is not None else None
            path = draw_overlays(predictor, val[: self.overlays], out / "overlays.png", tile)
            files["overlays"] = str(path)
        if not val:
            print("No validation images: model.keras and overlays.png are not written (the export "
                  "is checked, and the overlays drawn, on validation images)", flush=True)  # fmt: skip
        if self.history:
            files["curves"] = str(draw_curves(self.history, out / "curves.png"))
        metrics = self._metrics(trainer, files, parity)
        # Imported here: the bridge's modules come after the torch stack (see _export_keras).
        from unet_bridge.card import VALIDATION_FIGURES
        from unet_bridge.hub import write_hub_files

        name = out.parent.name if out.name.startswith("version_") else out.name
        written = write_hub_files(out, canonical_state(model), spec, parity=_parity_summary(parity),
                                  metrics=metrics, source=best or None, name=name)  # fmt: skip
        files.update({key: str(path) for key, path in written.items()})  # metrics["files"] too
        atomic_write_bytes(out / "metrics.json", (json.dumps(metrics, indent=2) + "\n").encode())
        best_val = metrics.get("best", {})
        figures = ", ".join(
            f"{k.split('/', 1)[1]}={best_val[k]:.4f}" for k in VALIDATION_FIGURES if k in best_val
        )
        listed = ", ".join(Path(p).name for k, p in files.items() if p and k != "best_checkpoint")
        print(f"Results in {out}/ (metrics.json, {listed}, checkpoints/); best epoch: {figures}",
              flush=True)  # fmt: skip

    def _export_keras(
        self, model: UNet, spec: UNetSpec, val: list, datamodule: Any, path: Path
    ) -> dict[str, Any]:
        # Imported here: the bridge loads TensorFlow, which must come after the torch stack.
        import unet_bridge

        layout = getattr(datamodule, "layout", None)
        size = tuple(layout.input_size) if layout else (unet_bridge.small_size(spec),) * 2
        image = val[0][1]
        pad = [(0, 0)] + [(0, max(0, s - d)) for s, d in zip(size, image.shape[1:], strict=True)]
        crop = np.pad(image, pad, mode="reflect")[:, : size[0], : size[1]][None].astype(np.float32)
        try:
            result = unet_bridge.write_verified(
                canonical_state(model), spec, path, size, x=crop, tolerance=self.tolerance
            )
        except unet_bridge.RejectedError as rejected:
            raise ParityError(
                f"{path}: Keras export differs from PyTorch on a validation crop "
                f"({rejected.result.summary}; limit {self.tolerance.margin:g}× the fp32 noise)"
            ) from None
        return {**result.report.logits.to_dict(), "input_size": list(size)}

    def _metrics(self, trainer: L.Trainer, files: dict[str, str], parity: dict | None) -> dict:
        ckpt = monitored_checkpoint(trainer)
        monitor = getattr(ckpt, "monitor", None)
        mode = getattr(ckpt, "mode", "max")
        scored = [r for r in self.history if monitor and monitor in r]
        if scored:
            pick = max if mode == "max" else min
            best = pick(scored, key=lambda r: r[monitor])
        else:
            best = self.history[-1] if self.history else {}
        return {
            "monitor": monitor,
            "best": best,
            "last": self.history[-1] if self.history else {},
            "epochs": trainer.current_epoch,
            "global_step": trainer.global_step,
            "wall_time_s": round(self._elapsed + time.monotonic() - self._start, 1),
            "keras_parity": parity,
            # The views the augmentation drew (SegmentationSystem.symmetries): the default
            # test-time augmentation of this model's evaluation and ``unet predict --tta``.
            "tta_views": trainer.lightning_module.hparams.get("symmetries"),
            # The weights a fine-tuned run started from (model.init_from): the name given, the
            # file's SHA-256, what was proven and what was changed for the task.
            "base_model": getattr(trainer.lightning_module, "base_model", None),
            "data": _describe_data(trainer.datamodule),
            "machine": machine_info(),
            "files": files,
            "history": self.history,
        }


class MaskWriter(BasePredictionWriter):
    """Write each predicted image's ``NAME_mask.png`` and ``NAME_overlay.png`` (``train.py predict``).

    The masks are the system's ``predict_step`` labels (the engine's one label rule), encoded as
    ``unet predict`` encodes them (:func:`unet_infer.masks.encode_mask`: 0/255 for a binary task,
    class ids otherwise); every file is written atomically.

    Args:
        output_dir: Output folder (created if absent). Default: ``predictions/`` in the run's
            folder (``trainer.log_dir``; with ``--ckpt_path`` inside a run, that run's folder).
        overlays: Also write the overlays.
    """

    def __init__(self, output_dir: str | None = None, overlays: bool = True) -> None:
        super().__init__(write_interval="batch")
        self.output_dir = output_dir
        self.overlays = overlays
        self.written: list[Path] = []

    def folder(self, trainer: L.Trainer) -> Path:
        """Where the masks go."""
        if self.output_dir:
            return Path(self.output_dir)
        return Path(trainer.log_dir or trainer.default_root_dir) / "predictions"

    def on_predict_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.written = []
        if trainer.is_global_zero:
            self.folder(trainer).mkdir(parents=True, exist_ok=True)
        trainer.strategy.barrier("MaskWriter")

    def write_on_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, prediction: Any,
        batch_indices: Any, batch: Any, batch_idx: int, dataloader_idx: int,
    ) -> None:  # fmt: skip
        out = self.folder(trainer)
        images = batch[0].detach().float().cpu().numpy()
        labels = prediction["labels"].cpu().numpy().astype(np.int64)
        k = pl_module.spec.num_classes
        for name, image, ids in zip(prediction["names"], images, labels, strict=True):
            stem = Path(name).stem
            self.written.append(
                atomic_write_bytes(out / f"{stem}_mask.png", png_bytes(encode_mask(ids, k)))
            )
            if self.overlays:
                atomic_write_bytes(out / f"{stem}_overlay.png", png_bytes(overlay(image, ids)))

    def on_predict_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.is_global_zero:
            print(f"{len(self.written)} mask(s) written to {self.folder(trainer)}", flush=True)


def _parity_summary(parity: dict[str, Any] | None) -> dict[str, str] | None:
    """The Keras export's check (:meth:`RunArtifacts._export_keras`) as a line of the card."""
    if parity is None:
        return None
    verdict = "passed" if parity["passed"] else "FAILED"
    return {
        "Keras export (model.keras) vs PyTorch on a validation crop": (
            f"relative error {parity['rel']:.3g} (PyTorch's fp32 noise {parity['noise_rel']:.3g}, "
            f"limit {parity['rel_limit']:.3g}), {parity['flips']} label flips in "
            f"{parity['decisive']} decisive pixels: {verdict}"
        )
    }


def _describe_data(datamodule: Any) -> dict[str, Any] | None:
    """What the run trained on, for metrics.json and the model card."""
    if datamodule is None:
        return None
    described: dict[str, Any] = {"module": type(datamodule).__name__}
    for key in ("root", "split", "held_out_groups", "num_train", "num_val", "image_size"):
        value = getattr(datamodule, key, None)
        if value not in (None, [], ""):
            described[key] = str(value) if isinstance(value, Path) else value
    for key in ("train_samples", "val_samples"):
        samples = getattr(datamodule, key, None)
        if samples:
            described[key.replace("samples", "images")] = len(samples)
    return described
