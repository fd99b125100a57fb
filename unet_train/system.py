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
from typing import Any, Literal

import lightning as L
import numpy as np
import torch
from torchmetrics import MetricCollection
from torchmetrics.classification import (
    MulticlassAccuracy,
    MulticlassF1Score,
    MulticlassJaccardIndex,
)

from unet_data import IGNORE_INDEX, median_frequency_weights
from unet_infer import TTAChoice, default_tile, labels_from_probs, predict_images, tile_grid
from unet_spec import make_spec
from unet_torch.model import UNet, probabilities
from unet_train.losses import LossName, SegmentationLoss

ClassWeighting = Literal["none", "median_frequency", "sqrt_median_frequency"]


class SegmentationSystem(L.LightningModule):
    """Trains a U-Net on segmentation masks with CE / BCE / Dice losses and Dice/IoU metrics.

    Args:
        preset: Architecture preset (``unet summary`` lists them), e.g. ``modern-small``.
        spec: Spec fields that override the preset (``{depth: 3, dropout: 0.2}``); without a
            preset, a whole spec.
        in_channels: Input channels (overrides the preset; 1 grey, 3 RGB).
        num_classes: Classes (``train.py`` links it from the data module).
        loss: ``ce``, ``bce``, ``dice``, ``ce_dice`` or ``bce_dice``.
        dice_weight: Weight of the Dice term in ``ce_dice``/``bce_dice``.
        class_weights: One loss weight per class, or ``None``.
        class_weighting: Compute class weights from the training masks instead:
            ``median_frequency`` or its square root ``sqrt_median_frequency`` (gentler).
        optimizer: ``adamw`` or ``sgd`` (with Nesterov momentum).
        lr: Peak learning rate.
        weight_decay: Decoupled (AdamW) or L2 (SGD) weight decay.
        momentum: SGD momentum.
        scheduler: ``cosine`` (linear warm-up, then cosine decay to zero, stepped per batch) or
            ``none``.
        warmup_fraction: Share of the steps spent warming up.
        tile: Tile input size for validation (``None``: the tiling engine chooses, as
            ``unet predict`` does without ``--tile``).
        tta: Test-time augmentation at validation, in the vocabulary of :mod:`unet_infer.tta`:
            ``true`` (or ``d4``) averages the 8 flips/rotations, ``flips`` the 4 flips, ``hflip``
            the image and its mirror image (for scenes with an up and a down).
        channels_last: Run convolutions in channels-last memory format (faster on recent GPUs).
        compile: ``torch.compile`` the forward pass (the stored weights keep their names).
        recompute: Plan levels to recompute in the backward pass instead of storing their
            activations (e.g. ``[enc1, enc2]``: less memory for about 1 % more arithmetic; see
            :class:`unet_torch.UNet`).

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
        loss: LossName = "ce_dice",
        dice_weight: float = 1.0,
        class_weights: list[float] | None = None,
        class_weighting: ClassWeighting = "none",
        optimizer: Literal["adamw", "sgd"] = "adamw",
        lr: float = 1e-3,
        weight_decay: float = 1e-4,
        momentum: float = 0.9,
        scheduler: Literal["cosine", "none"] = "cosine",
        warmup_fraction: float = 0.05,
        tile: int | None = None,
        tta: TTAChoice = False,
        channels_last: bool = False,
        compile: bool = False,
        recompute: list[str] | None = None,
    ) -> None:
        super().__init__()
        self.spec = make_spec(preset, spec, in_channels, num_classes)
        if class_weights is not None and class_weighting != "none":
            raise ValueError("give model.class_weights or model.class_weighting, not both")
        if lr <= 0:
            raise ValueError(f"model.lr must be positive. Received: lr={lr}")
        self.save_hyperparameters()
        # The resolved spec, so the checkpoint alone rebuilds the model (``unet port`` reads it).
        self.hparams["spec"] = self.spec.to_dict()
        self.model = UNet(self.spec, recompute=recompute or ())
        if channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.loss_fn = SegmentationLoss(loss, class_weights, IGNORE_INDEX, dice_weight)
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

    # -- setup -----------------------------------------------------------------------------------
    def setup(self, stage: str) -> None:
        weighting = self.hparams["class_weighting"]
        try:
            trainer = self.trainer
        except RuntimeError:  # called by hand, outside a Trainer
            trainer = None
        datamodule = getattr(trainer, "datamodule", None)
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
    def predict_logits(self, images: torch.Tensor) -> torch.Tensor:
        """Logits ``(N, K, H, W)`` for whole images ``(N, C, H, W)`` of any size (the stitched
        logits of the tiling engine; probabilities and labels come from :meth:`predict_probs`)."""
        return self._infer(images, ("logits",), None)[0]

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

    def labels_from(self, logits: torch.Tensor) -> torch.Tensor:
        """Class ids from logits such as :meth:`predict_logits` returns (the head, then the one
        label rule); :meth:`predict_labels` gives the labels of ``unet predict`` directly."""
        return self._labels(probabilities(logits, self.spec.head))

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
        tile = self.hparams["tile"]
        # About as many pixels per forward pass as the loader's batch of whole images, the memory
        # that val_batch_size budgets; tiles of several images share a pass.
        grid = tile_grid(self.spec, (h, w), tile or default_tile(self.spec, (h, w)))
        per_pass = max(1, -(-n * h * w // (grid.tile[0] * grid.tile[1])))
        out = predict_images(
            images.detach().float().cpu().numpy(), forward, self.spec, tile, batch_size=per_pass,
            tta=tta,
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
        logits, probs = self._infer(images, ("logits", "probs"), self.hparams["tta"])
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
        labels = self.predict_labels(images, self.hparams["tta"])
        # The smallest type that holds the ids: the trainer may keep every batch's result.
        small = torch.uint8 if max(self.spec.num_classes, 2) <= 256 else torch.int64
        return {"names": list(names), "labels": labels.to(small)}

    # -- optimisation ----------------------------------------------------------------------------
    def configure_optimizers(self) -> Any:
        hp = self.hparams
        params = list(self.model.parameters())
        if hp["optimizer"] == "adamw":
            # The fused kernel updates every tensor in one pass; the default on the CPU loops over
            # parameters with several element-wise kernels each (CUDA fuses too).
            fused = all(p.device.type in ("cpu", "cuda") for p in params)
            opt = torch.optim.AdamW(
                params, lr=hp["lr"], weight_decay=hp["weight_decay"], fused=fused
            )
        else:
            opt = torch.optim.SGD(
                params, lr=hp["lr"], momentum=hp["momentum"], nesterov=hp["momentum"] > 0,
                weight_decay=hp["weight_decay"],
            )  # fmt: skip
        total = self.trainer.estimated_stepping_batches
        if hp["scheduler"] == "none" or not math.isfinite(total) or total < 1:
            return opt
        total = int(total)
        warmup = max(1, int(hp["warmup_fraction"] * total))

        def factor(step: int) -> float:
            if step < warmup:
                return (step + 1) / warmup
            progress = min(1.0, (step - warmup) / max(1, total - warmup))
            return 0.5 * (1.0 + math.cos(math.pi * progress))

        sched = torch.optim.lr_scheduler.LambdaLR(opt, factor)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}
