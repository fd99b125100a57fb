"""The Lightning system: trains ``UNet(spec)`` and measures it on whole validation images.

Its typed ``__init__`` is what ``train.py`` (LightningCLI) reads. The architecture is a preset name
plus optional overrides; the resolved spec is stored as ``spec`` in the hyper-parameters (plain
types only), so a checkpoint rebuilds its model alone, also with
``torch.load(path, weights_only=True)``. The model sits at ``self.model``, so checkpoint weights are
named ``model.<canonical name>``.

Validation, test and prediction run whole images through the tiling engine that ``unet predict``
uses (:mod:`unet_infer.tiling`: one padding and tiling policy for both paddings), with the spec's head
and the engine's one label rule, so the validation and test metrics are those of the masks
``unet predict`` writes for the same images and weights, and ``predict_step`` returns those masks
(:class:`~unet_train.callbacks.MaskWriter` writes them as ``unet predict`` does).
"""

from __future__ import annotations

import math
from dataclasses import asdict
from typing import Any, Literal

import lightning as L
import numpy as np
import torch
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from lightning.pytorch.utilities import rank_zero_info
from torchmetrics import MetricCollection
from torchmetrics.classification import (
    MulticlassAccuracy,
    MulticlassF1Score,
    MulticlassJaccardIndex,
)

from unet_data import IGNORE_INDEX, median_frequency_weights
from unet_infer import (
    TTAChoice,
    TTAMode,
    default_tile,
    labels_from_probs,
    predict_images,
    tile_grid,
    tta_mode,
)
from unet_spec import make_spec
from unet_torch.model import UNet, probabilities
from unet_train.init_from import start_from
from unet_train.losses import SegmentationLoss
from unet_train.schedules import WarmupCosine, takes_total_steps
from unet_train.settings import (
    InferenceSettings,
    LossSettings,
    moved_checkpoint,
    system_settings,
)


class SegmentationSystem(L.LightningModule):
    """Trains a U-Net on segmentation masks with CE / BCE / Dice losses and Dice/IoU metrics.

    Args:
        preset: Architecture preset (``unet summary`` lists them), e.g. ``modern-small``.
        spec: Spec fields that override the preset (``{depth: 3, dropout: 0.2}``); without a
            preset, a whole spec.
        in_channels: Input channels (overrides the preset; 1 grey, 3 RGB).
        num_classes: Classes (``train.py`` links it from the data module).
        loss: The loss (:class:`~unet_train.settings.LossSettings`; in a config:
            ``loss: {name: ce_dice, dice_weight: 2.0}``): ``name`` (``ce``, ``bce``, ``dice``,
            ``ce_dice``, ``bce_dice``), ``dice_weight``, and ``class_weights`` or
            ``class_weighting`` (``median_frequency``, ``sqrt_median_frequency``: computed from
            the training masks).
        optimizer: The optimiser, a class LightningCLI injects with its arguments (a config names
            it: ``optimizer: {class_path: torch.optim.AdamW, init_args: {lr: 0.002}}``);
            called with the model's parameters.
        scheduler: The learning-rate schedule, injected likewise and called with the optimiser, or
            ``None`` for a constant rate. A schedule that takes ``total_steps`` and leaves it
            unset (:class:`~unet_train.schedules.WarmupCosine`, ``OneCycleLR``) is given the
            run's optimiser steps (``trainer.estimated_stepping_batches``) and stepped per batch;
            any other is stepped per epoch, as Lightning does by default.
        inference: How validation, test and prediction run whole images
            (:class:`~unet_train.settings.InferenceSettings`; ``inference: {tile: 256, tta:
            true}``): ``tile`` (the tile input size; ``None``: the tiling engine chooses, as
            ``unet predict`` does) and ``tta`` (test-time augmentation: ``false``, ``d4``,
            ``flips``, ``hflip``, or ``true``: the views the model was trained with).
        symmetries: The views the training augmentation made alike: the largest TTA mode whose
            views it draws, or ``none``. ``fit`` records it from the data module's ``augment``
            (:meth:`~unet_train.datasets.Augmentation.symmetries`), so checkpoints carry it.
        channels_last: Run convolutions in channels-last memory format (faster on recent GPUs).
        compile: ``torch.compile`` the forward pass (the stored weights keep their names).
        recompute: Plan levels to recompute in the backward pass instead of storing their
            activations (e.g. ``[enc1, enc2]``: less memory for about 1 % more arithmetic; see
            :class:`unet_torch.UNet`).
        init_from: Start from these weights (fine-tuning): anything ``unet port`` reads (a
            canonical file, ``.ckpt``, ``.pt``/``.pth`` of this project or of a layout from
            elsewhere, ``.keras``, ``.weights.h5``, a hub folder or hub id), read and proven as
            ``unet port`` does (:mod:`unet_train.init_from`). The spec comes from it: a
            ``preset``/``spec`` that contradicts it is refused (set ``preset: null``); other
            classes re-initialise the head, other input channels adapt the first convolution.
            Checkpoints of the run hold the resulting spec and weights and rebuild without it.
        init_source_model: The source's own torch class or factory (``pkg.module:factory``) for
            a layout from elsewhere, to prove ``init_from`` against its forward pass.
        init_source_args: Keyword arguments of ``init_source_model``.
        **moved: The keys of older configs and checkpoints that are now fields of ``loss`` and
            ``inference`` (``dice_weight``, ``class_weights``, ``class_weighting``, ``tile``,
            ``tta``; :data:`unet_train.settings.MODEL_MOVES`), read into them with a note.

    Example:
        >>> system = SegmentationSystem(preset="modern-small", num_classes=3)
        >>> system.spec.num_classes, system.hparams["spec"]["num_classes"]
        (3, 3)
    """

    def __init__(
        self,
        preset: str | None = "modern-small",
        spec: dict[str, Any] | None = None,
        in_channels: int | None = None,
        num_classes: int | None = None,
        loss: LossSettings = LossSettings(),  # noqa: B008 (frozen: LightningCLI shows its fields)
        optimizer: OptimizerCallable = torch.optim.AdamW,
        scheduler: LRSchedulerCallable | None = WarmupCosine,
        inference: InferenceSettings = InferenceSettings(),  # noqa: B008 (likewise)
        symmetries: TTAMode | Literal["none"] | None = None,
        channels_last: bool = False,
        compile: bool = False,
        recompute: list[str] | None = None,
        init_from: str | None = None,
        init_source_model: str | None = None,
        init_source_args: dict[str, Any] | None = None,
        **moved: Any,
    ) -> None:
        super().__init__()
        #: The loss and inference settings (``self.hparams`` holds them as plain mappings).
        self.loss_settings, self.inference = system_settings(loss, inference, moved)
        start = None
        if init_from is not None:
            start = start_from(init_from, preset, spec, in_channels, num_classes,
                               init_source_model, init_source_args)  # fmt: skip
            self.spec = start.spec
            rank_zero_info(start.line())
        elif init_source_model is not None or init_source_args is not None:
            raise ValueError(
                "model.init_source_model and model.init_source_args need model.init_from"
            )
        elif preset is None and spec is None:
            raise ValueError(
                "the model needs model.preset, model.spec or model.init_from (the weights to "
                "start from, as configs/finetune.yaml expects)"
            )
        else:
            self.spec = make_spec(preset, spec, in_channels, num_classes)
        #: Where the starting weights came from (``metrics.json`` and the model card record it).
        self.base_model: dict[str, Any] | None = start.provenance() if start else None
        self.save_hyperparameters(ignore=list(moved))
        # Plain mappings, so a checkpoint loads with ``torch.load(weights_only=True)`` and
        # rebuilds the system (the groups of older keys included).
        self.hparams["loss"] = asdict(self.loss_settings)
        self.hparams["inference"] = asdict(self.inference)
        # LightningCLI records the optimiser and schedule as their config (class path and
        # arguments), which rebuilds them from a checkpoint; given in Python they are code, which a
        # weights-only checkpoint cannot hold, so they are not recorded.
        for key in ("optimizer", "scheduler"):
            if not isinstance(self.hparams.get(key), dict | None):
                del self.hparams[key]
        self.optimizer, self.scheduler = optimizer, scheduler
        # The resolved spec, so the checkpoint alone rebuilds the model (``unet port`` reads it).
        self.hparams["spec"] = self.spec.to_dict()
        self.model = UNet(self.spec, recompute=recompute or ())
        if start is not None:
            # Tensors left out (a re-initialised head) keep the initialisation just drawn.
            state = self.model.state_dict()
            with torch.no_grad():
                for name, value in start.weights.items():
                    state[name].copy_(torch.from_numpy(np.asarray(value, dtype=np.float32)))
        if channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        losses = self.loss_settings
        self.loss_fn = SegmentationLoss(losses.name, losses.class_weights, IGNORE_INDEX,
                                        losses.dice_weight)  # fmt: skip
        k = max(self.spec.num_classes, 2)
        metric_args = {"num_classes": k, "ignore_index": IGNORE_INDEX}
        self.val_metrics = MetricCollection(
            {
                "dice": MulticlassF1Score(average="none", **metric_args),
                "iou": MulticlassJaccardIndex(average="none", **metric_args),
                "accuracy": MulticlassAccuracy(average="micro", **metric_args),
            }
        )
        # The same figures for the test split, accumulated apart (validation may run beside it).
        self.test_metrics = self.val_metrics.clone()
        self.last_val: dict[str, float] = {}
        self.last_test: dict[str, float] = {}
        # Kept off the module tree so the compiled wrapper adds no second copy of the weights.
        object.__setattr__(self, "_compiled", torch.compile(self.model) if compile else None)

    # -- checkpoints -----------------------------------------------------------------------------
    @classmethod
    def load_from_checkpoint(cls, checkpoint_path: Any, *args: Any, **kwargs: Any) -> Any:
        """Lightning's ``load_from_checkpoint``; a checkpoint written before ``loss`` and
        ``inference`` were groups, and overrides given by their old keys (``tta="hflip"``), are
        read into the groups (:func:`unet_train.settings.moved_checkpoint`)."""
        checkpoint_path, kwargs = moved_checkpoint(checkpoint_path, kwargs)
        return super().load_from_checkpoint(checkpoint_path, *args, **kwargs)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # The checkpoint holds the run's weights and its resolved spec (``spec``): it rebuilds
        # the model alone, without reading the base model again.
        hparams = checkpoint.get("hyper_parameters")
        if isinstance(hparams, dict) and hparams.get("init_from") is not None:
            checkpoint["hyper_parameters"] = {
                **hparams, "init_from": None, "init_source_model": None, "init_source_args": None,
            }  # fmt: skip
        if self.base_model is not None:
            checkpoint["base_model"] = self.base_model

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.base_model = checkpoint.get("base_model", self.base_model)

    # -- setup -----------------------------------------------------------------------------------
    def setup(self, stage: str) -> None:
        weighting = self.loss_settings.class_weighting
        try:
            trainer = self.trainer
        except RuntimeError:  # called by hand, outside a Trainer
            trainer = None
        datamodule = getattr(trainer, "datamodule", None)
        augment = getattr(datamodule, "augment", None)
        if stage == "fit" and hasattr(augment, "symmetries"):
            # Recorded with the weights: the default views of ``tta: true`` from now on.
            self.hparams["symmetries"] = augment.symmetries()
        data_classes = getattr(datamodule, "num_classes", None)
        if data_classes is not None and data_classes != max(self.spec.num_classes, 2):
            raise ValueError(
                f"the data has {data_classes} classes but the model has "
                f"num_classes={self.spec.num_classes}; set model.num_classes (train.py links it)"
            )
        if (
            weighting != "none"
            and datamodule is not None
            and getattr(datamodule, "train_samples", None)
        ):
            power = 1.0 if weighting == "median_frequency" else 0.5
            weights = median_frequency_weights(
                datamodule.train_samples, self.spec.num_classes, power
            )
            self.loss_fn.class_weights = torch.tensor(
                weights, dtype=torch.float32, device=self.device
            )
            self.print("class weights: " + ", ".join(f"{w:.2f}" for w in weights))

    # -- forward ---------------------------------------------------------------------------------
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.hparams["channels_last"]:
            x = x.contiguous(memory_format=torch.channels_last)
        net = self._compiled if self._compiled is not None else self.model
        return net(x)

    @torch.no_grad()
    def predict_probs(self, images: torch.Tensor, tta: TTAChoice = False) -> torch.Tensor:
        """Probabilities ``(N, K, H, W)`` under the spec's head, exactly as ``unet predict``
        computes them; with ``tta`` (:func:`unet_infer.tta_mode`), averaged over the views, e.g.
        the 8 flips/rotations (``True``) or the image and its horizontal mirror (``"hflip"``)."""
        return self._infer(images, ("probs",), tta)[0]

    @torch.no_grad()
    def predict_labels(self, images: torch.Tensor, tta: TTAChoice = False) -> torch.Tensor:
        """Class ids ``(N, H, W)``: :meth:`predict_probs` under the one label rule
        (:func:`unet_infer.labels_from_probs`)."""
        probs = self.predict_probs(images, tta)
        return self._labels(probs)

    def views(self, tta: TTAChoice) -> str | None:
        """The TTA mode a choice means for this model: ``True`` is the views it was trained with
        (``symmetries``: none for a model trained without flips or turns; all 8 when nothing is
        recorded), anything else as :func:`unet_infer.tta_mode` reads it."""
        trained = self.hparams.get("symmetries")
        if tta is True and trained is not None:
            return None if trained == "none" else trained
        return tta_mode(tta)

    def _labels(self, probs: torch.Tensor) -> torch.Tensor:
        ids = labels_from_probs(probs.detach().float().cpu().numpy(), self.spec.head)
        return torch.from_numpy(ids).to(probs.device)

    def _infer(
        self,
        images: torch.Tensor,
        outputs: tuple[Literal["logits", "probs"], ...],
        tta: TTAChoice,
    ) -> list[torch.Tensor]:
        """The requested outputs for whole images through the shared tiling engine, one pass.

        Every tile's logits and head probabilities travel stacked along the channels, so both are
        stitched (and TTA-averaged) from the same forward passes: the probabilities are blended
        after the head, as ``unet predict`` blends them.
        """
        k = self.spec.num_classes
        head = self.spec.head

        def forward(tiles: np.ndarray) -> np.ndarray:
            logits = self(torch.from_numpy(tiles).to(self.device)).float()
            parts = [
                logits if name == "logits" else probabilities(logits, head) for name in outputs
            ]
            return torch.cat(parts, 1).cpu().numpy()

        n, _, h, w = images.shape
        tile = self.inference.tile
        # About as many pixels per forward pass as the loader's batch of whole images, the memory
        # that val_batch_size budgets; tiles of several images share a pass.
        grid = tile_grid(self.spec, (h, w), tile or default_tile(self.spec, (h, w)))
        per_pass = max(1, -(-n * h * w // (grid.tile[0] * grid.tile[1])))
        out = predict_images(
            images.detach().float().cpu().numpy(), forward, self.spec, tile, batch_size=per_pass,
            tta=self.views(tta),
        )  # fmt: skip
        stacked = torch.from_numpy(out).to(images.device)
        return list(stacked.split(k, dim=1))

    # -- steps -----------------------------------------------------------------------------------
    def training_step(self, batch: tuple[torch.Tensor, ...], batch_idx: int) -> torch.Tensor:
        # (images, masks) or, with the data's border weight map, (images, masks, pixel weights).
        images, masks, *pixel_weights = batch
        logits = self(images)
        loss = self.loss_fn(logits, masks, *pixel_weights)
        # Averaged over the processes (a scalar each step), so a DDP run's epoch loss is the run's.
        self.log("train/loss", loss, prog_bar=True, on_step=True, on_epoch=True,
                 batch_size=len(images), sync_dist=True)  # fmt: skip
        return loss

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        self._evaluate(batch, "val", self.val_metrics)

    def test_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        self._evaluate(batch, "test", self.test_metrics)

    def _evaluate(
        self, batch: tuple[torch.Tensor, torch.Tensor], stage: str, metrics: MetricCollection
    ) -> None:
        images, masks = batch
        # One pass gives the loss its logits and the metrics the labels of ``unet predict``
        # (with TTA, both averaged over the same views).
        logits, probs = self._infer(images, ("logits", "probs"), self.inference.tta)
        labels = self._labels(probs)
        loss = self.loss_fn(logits, masks)
        self.log(f"{stage}/loss", loss, prog_bar=True, sync_dist=True, batch_size=len(images))
        metrics.update(labels, masks)

    def on_validation_epoch_end(self) -> None:
        self.last_val = self._log_summary("val", self.val_metrics)

    def on_test_epoch_end(self) -> None:
        self.last_test = self._log_summary("test", self.test_metrics)

    def _log_summary(self, stage: str, metrics: MetricCollection) -> dict[str, float]:
        summary = self.summarize(metrics.compute(), stage)
        metrics.reset()
        # Already reduced over all processes by torchmetrics, so every process holds the same
        # values: ``sync_dist`` averages equal numbers (a few scalars once per epoch) and tells
        # Lightning that the epoch's figures are the run's, not one process's.
        self.log_dict(summary, prog_bar=False, sync_dist=True)
        self.log(f"{stage}/dice_mean", summary[f"{stage}/dice"], prog_bar=True, sync_dist=True)
        return {k: float(v) for k, v in summary.items()}

    @staticmethod
    def summarize(values: dict[str, torch.Tensor], stage: str = "val") -> dict[str, torch.Tensor]:
        """The logged figures from a computed metric collection (``val_metrics.compute()``).

        ``<stage>/dice`` and ``<stage>/miou`` average every class; ``<stage>/dice_fg`` averages
        the foreground classes ``1..K-1`` only (for a binary task, the Dice of class 1), which
        a large, easy background does not inflate. Per class: ``<stage>/dice_<k>``,
        ``<stage>/iou_<k>``; ``<stage>/pixel_error`` is one minus the pixel accuracy.
        """
        dice, iou = values["dice"].float(), values["iou"].float()
        summary = {
            f"{stage}/dice": dice.mean(),
            f"{stage}/dice_fg": dice[1:].mean(),
            f"{stage}/miou": iou.mean(),
            f"{stage}/pixel_error": 1.0 - values["accuracy"].float(),
        }
        for k in range(len(dice)):
            summary[f"{stage}/dice_{k}"] = dice[k]
            summary[f"{stage}/iou_{k}"] = iou[k]
        return summary

    def predict_step(
        self, batch: tuple[torch.Tensor, list[str]], batch_idx: int, dataloader_idx: int = 0
    ) -> dict[str, Any]:
        """Labels of whole images, as ``unet predict`` computes them.

        ``batch`` is ``(images, names)`` as the data modules' ``predict_dataloader`` gives it.
        Returns ``{"names": names, "labels": (N, H, W) uint8 or int64 class ids}``;
        :class:`~unet_train.callbacks.MaskWriter` writes each as ``NAME_mask.png`` and
        ``NAME_overlay.png``.
        """
        images, names = batch
        labels = self.predict_labels(images, self.inference.tta)
        # The smallest type that holds the ids: the trainer may keep every batch's result.
        small = torch.uint8 if max(self.spec.num_classes, 2) <= 256 else torch.int64
        return {"names": list(names), "labels": labels.to(small)}

    # -- optimisation ----------------------------------------------------------------------------
    def configure_optimizers(self) -> Any:
        # Frozen parameters (a fine-tuning callback's, unet_train.finetune) stay out: the
        # callback adds them as a group of their own when it unfreezes them.
        optimizer = self.optimizer([p for p in self.model.parameters() if p.requires_grad])
        if self.scheduler is None:
            return optimizer
        if not takes_total_steps(self.scheduler):
            return {"optimizer": optimizer, "lr_scheduler": self.scheduler(optimizer)}
        total = self.trainer.estimated_stepping_batches
        if not math.isfinite(total) or total < 1:
            return optimizer  # an open-ended run (max_epochs -1): nothing to lay a schedule over
        scheduler = self.scheduler(optimizer, total_steps=int(total))
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": "step"},
        }
