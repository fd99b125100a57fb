"""Freeze the encoder for the first epochs of a fine-tuning run, then train it at a lower rate.

:class:`FreezeEncoder` is Lightning's own fine-tuning callback (``BaseFinetuning``) for the U-Net:
``freeze_before_training`` freezes the encoder (``enc1`` … ``encN`` and the bottleneck ``mid``,
or the plan levels named), so the system's optimiser holds only the decoder and the head;
``finetune_function`` unfreezes it at epoch ``unfreeze_at_epoch`` and adds its parameters to the
optimiser as a group of their own, at ``lr_factor`` times the rate of the other parameters.

Frozen means unchanged: the encoder's batch norm is frozen with it (its scale, shift and running
statistics; Lightning's ``freeze`` with ``train_bn=False``), unless ``train_bn``.

A learning-rate schedule laid out when the optimiser was made knows only the groups it had then;
torch's schedulers keep one base rate (and a ``LambdaLR`` one factor function) per group, so a
group added later would keep its first rate for the rest of the run. The unfrozen group is given
the first group's schedule, scaled by ``lr_factor`` (neither Lightning nor torch does this).

Configured in YAML (``configs/finetune.yaml``)::

    trainer:
      callbacks:
        - class_path: unet_train.finetune.FreezeEncoder
          init_args: {unfreeze_at_epoch: 2, lr_factor: 0.1}
"""

from __future__ import annotations

from typing import Any

import lightning as L
from lightning.pytorch.callbacks import BaseFinetuning
from lightning.pytorch.utilities import rank_zero_info
from torch import nn
from torch.optim import Optimizer


def encoder_levels(model: nn.Module) -> list[str]:
    """The plan levels of a U-Net's contracting path: ``enc1`` … ``encN`` and ``mid``."""
    return [n for n, _ in model.named_children() if n.startswith("enc") or n == "mid"]


class FreezeEncoder(BaseFinetuning):
    """Freeze the encoder, then unfreeze it at a lower learning rate.

    Args:
        unfreeze_at_epoch: The epoch (from 0) at whose start the encoder is unfrozen; ``None``
            keeps it frozen for the whole run.
        lr_factor: The encoder's learning rate as a share of the other parameters' rate (at the
            same step of the schedule).
        levels: The plan levels to freeze (top-level names of the model: ``enc1``, ``mid``,
            ``dec2``, ...); default: the encoder (:func:`encoder_levels`).
        train_bn: Keep training the frozen levels' batch norm (scale, shift, running statistics).
    """

    def __init__(
        self,
        unfreeze_at_epoch: int | None = 1,
        lr_factor: float = 0.1,
        levels: list[str] | None = None,
        train_bn: bool = False,
    ) -> None:
        super().__init__()
        if unfreeze_at_epoch is not None and unfreeze_at_epoch < 0:
            raise ValueError(
                f"FreezeEncoder.unfreeze_at_epoch must be >= 0 or null. Received: "
                f"{unfreeze_at_epoch}"
            )
        if not 0.0 < lr_factor:
            raise ValueError(f"FreezeEncoder.lr_factor must be > 0. Received: {lr_factor}")
        self.unfreeze_at_epoch = unfreeze_at_epoch
        self.lr_factor = lr_factor
        self.levels = list(levels) if levels is not None else None
        self.train_bn = train_bn

    def modules(self, pl_module: L.LightningModule) -> list[nn.Module]:
        """The modules this callback freezes, from ``pl_module.model``."""
        model = pl_module.model
        names = self.levels if self.levels is not None else encoder_levels(model)
        children = dict(model.named_children())
        unknown = [n for n in names if n not in children]
        if unknown:
            raise ValueError(
                f"FreezeEncoder.levels: no level {', '.join(map(repr, unknown))} in the model; "
                f"its levels are {', '.join(children)}"
            )
        return [children[n] for n in names]

    def freeze_before_training(self, pl_module: L.LightningModule) -> None:
        self.freeze(self.modules(pl_module), train_bn=self.train_bn)

    def finetune_function(
        self, pl_module: L.LightningModule, epoch: int, optimizer: Optimizer
    ) -> None:
        if self.unfreeze_at_epoch is None or epoch < self.unfreeze_at_epoch:
            return
        modules = self.modules(pl_module)
        if epoch == self.unfreeze_at_epoch:
            self.unfreeze_and_add_param_group(
                modules, optimizer, initial_denom_lr=1.0 / self.lr_factor, train_bn=True
            )
            rank_zero_info(
                f"FreezeEncoder: encoder unfrozen at epoch {epoch}, learning rate "
                f"x{self.lr_factor:g}"
            )
        else:
            # A run resumed after the unfreezing: Lightning restores the optimiser's groups, but
            # ``setup`` froze the encoder again.
            self.make_trainable(modules)
        if len(optimizer.param_groups) > 1:
            follow_schedule(pl_module.trainer, optimizer, self.lr_factor)


def follow_schedule(trainer: L.Trainer, optimizer: Optimizer, factor: float) -> None:
    """Give the optimiser's last parameter group the schedule of its first, scaled by ``factor``
    (once: a group that has it already is left as it is).

    A scheduler keeps per-group lists made when it was built (``base_lrs``, and a ``LambdaLR``'s
    ``lr_lambdas``); some read per-group keys at every step (``OneCycleLR``'s ``max_lr`` and
    ``initial_lr``). The new group gets each of them from the first group, rates scaled.
    """
    first, new = optimizer.param_groups[0], optimizer.param_groups[-1]
    for key, value in first.items():
        if key != "params" and key not in new:
            new[key] = value * factor if key.endswith("lr") else value
    for config in trainer.lr_scheduler_configs:
        scheduler: Any = config.scheduler
        if scheduler.optimizer is not optimizer:
            continue
        base = getattr(scheduler, "base_lrs", None)
        if isinstance(base, list) and len(base) == len(optimizer.param_groups) - 1:
            base.append(base[0] * factor)
            new["initial_lr"] = base[-1]
        lambdas = getattr(scheduler, "lr_lambdas", None)
        if isinstance(lambdas, list) and len(lambdas) == len(optimizer.param_groups) - 1:
            lambdas.append(lambdas[0])


__all__ = ["FreezeEncoder", "encoder_levels", "follow_schedule"]
