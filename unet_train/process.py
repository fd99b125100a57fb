"""Process settings as Lightning callbacks, for a training script of the user's own.

``train.py`` and the ``unet`` command make the project's one process setting first thing: glibc's
``malloc`` keeping freed memory for the next allocation (:func:`unet_runtime.keep_freed_memory`;
why, and its price, in docs/architecture.md, "Process settings"). A script that builds its own
``Trainer`` does not go through them, and a U-Net then pays for every large activation map with
fresh pages on every step. :class:`KeepFreedMemory` gives such a script the setting in one line::

    Trainer(callbacks=[KeepFreedMemory()]).fit(SegmentationSystem(preset="seed"), data)

and the configs list it under ``trainer.callbacks``. Building the callback changes nothing: the
setting is made when the trainer sets up, in every process of the run (each DDP process is a
process of its own).
"""

from __future__ import annotations

from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities import rank_zero_info

from unet_runtime import ENV_VAR, keep_freed_memory


class KeepFreedMemory(Callback):
    """Make glibc's ``malloc`` keep freed memory for reuse when the trainer sets up.

    It calls :func:`unet_runtime.keep_freed_memory` once per process, at the first ``setup``
    (before the first batch of ``fit``, ``validate``, ``test`` or ``predict``), and records the
    answer in :attr:`in_force`. Where the setting cannot be made (``UNET_MALLOC=system``, the
    environment's own ``malloc`` choice, a C library other than glibc), the run goes on and says
    so in one line.

    Attributes:
        in_force: Whether the setting is in force; None until the trainer has set up.
    """

    def __init__(self) -> None:
        super().__init__()
        self.in_force: bool | None = None

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if self.in_force is not None:
            return
        self.in_force = keep_freed_memory()
        if not self.in_force:
            rank_zero_info(
                "KeepFreedMemory: malloc is left as it is (set by the environment, "
                f"{ENV_VAR}=system, or not glibc)"
            )


__all__ = ["KeepFreedMemory"]
