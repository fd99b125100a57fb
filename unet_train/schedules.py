"""Learning-rate schedules that torch does not have, for ``model.scheduler`` in a config.

:class:`WarmupCosine` is the training recipe's default: a linear warm-up, then a cosine decay to
zero, stepped once per optimiser step. torch's nearest, ``SequentialLR(LinearLR, CosineAnnealingLR)``,
starts its warm-up at a chosen factor rather than at ``1 / warmup`` and needs the warm-up length at
configuration time, before the run's step count is known; this is one ``LambdaLR``.
"""

from __future__ import annotations

import functools
import inspect
import math
from typing import Any

import torch


class WarmupCosine(torch.optim.lr_scheduler.LambdaLR):
    """Linear warm-up over ``warmup_fraction`` of the steps, then cosine decay to zero.

    The factor of step ``s`` is ``(s + 1) / w`` during the ``w`` warm-up steps, then
    ``(1 + cos(π p)) / 2`` with ``p`` the share of the remaining steps done.

    Args:
        optimizer: The optimiser whose learning rates are scaled.
        total_steps: Optimiser steps of the whole run; :class:`~unet_train.system.SegmentationSystem`
            fills it in from the trainer when a config leaves it out.
        warmup_fraction: Share of the steps spent warming up (at least one step).

    Example:
        >>> opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
        >>> [round(f(s), 3) for f in WarmupCosine(opt, 10, 0.2).lr_lambdas for s in (0, 1, 2, 9)]
        [0.5, 1.0, 1.0, 0.038]
    """

    def __init__(
        self, optimizer: torch.optim.Optimizer, total_steps: int | None = None,
        warmup_fraction: float = 0.05,
    ) -> None:  # fmt: skip
        if total_steps is None or total_steps < 1:
            raise ValueError(
                f"WarmupCosine needs total_steps >= 1 (the run's optimiser steps). "
                f"Received: total_steps={total_steps}"
            )
        if not 0.0 <= warmup_fraction < 1.0:
            raise ValueError(
                f"model.scheduler.warmup_fraction must be in [0, 1). Received: {warmup_fraction}"
            )
        self.total_steps = total_steps
        self.warmup_steps = warmup = max(1, int(warmup_fraction * total_steps))

        def factor(step: int) -> float:
            if step < warmup:
                return (step + 1) / warmup
            progress = min(1.0, (step - warmup) / max(1, total_steps - warmup))
            return 0.5 * (1.0 + math.cos(math.pi * progress))

        super().__init__(optimizer, factor)


def takes_total_steps(factory: Any) -> bool:
    """Whether a schedule factory leaves ``total_steps`` to the run.

    LightningCLI (through jsonargparse) injects a ``functools.partial`` that holds every argument
    of the configured class, ``total_steps=None`` when the config leaves it out; a class given in
    Python shows the argument in its signature.
    """
    if isinstance(factory, functools.partial):
        return "total_steps" in factory.keywords and factory.keywords["total_steps"] is None
    try:
        parameter = inspect.signature(factory).parameters.get("total_steps")
    except (TypeError, ValueError):  # a callable without a readable signature
        return False
    return parameter is not None and parameter.default in (None, inspect.Parameter.empty)
