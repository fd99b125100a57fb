"""Train a U-Net: ``python train.py fit --config configs/demo.yaml``.

A thin LightningCLI entry point over :class:`unet_train.system.SegmentationSystem` and the data
modules of :mod:`unet_train.data`. Everything is a config key or a command-line override:

    python train.py fit --config configs/demo.yaml --trainer.max_epochs 5
    python train.py fit --config configs/demo.yaml --print_config      # the full, editable config
    python train.py fit --config configs/demo.yaml --ckpt_path runs/demo/version_0/checkpoints/last.ckpt
    python train.py fit --config configs/demo.yaml --trainer.accelerator cpu --trainer.devices 2 \\
        --trainer.strategy ddp
    python train.py test --config configs/demo.yaml --ckpt_path runs/demo/version_0/checkpoints/best.ckpt
    python train.py predict --config configs/demo.yaml --ckpt_path runs/demo/version_0/checkpoints/best.ckpt \\
        --data.init_args.predict_images images/             # NAME_mask.png, NAME_overlay.png

Every run writes into ``runs/<name>/version_<n>/``: checkpoints (best and last), CSV and TensorBoard
logs, the config, and at the end the canonical weights, the Keras export, overlays, curves and
metrics (see :mod:`unet_train.callbacks`). Given a ``--ckpt_path`` inside such a folder, ``fit``
resumes there and ``validate``, ``test`` and ``predict`` (masks in ``predictions/``) work there.
A bad input stops the run with a one-line message naming the file or field and exit status 2.
"""

import sys

from unet_runtime import keep_freed_memory
from unet_runtime.quiet import quiet_frameworks

if __name__ == "__main__":
    keep_freed_memory()  # the process setting every entry point makes (docs/architecture.md)
    quiet_frameworks()  # before the frameworks load: their start-up noise off, real warnings kept
    from unet_train.cli import main

    sys.exit(main())
