"""Training: the Lightning system, data modules, losses, callbacks and the training command line.

A layer above the bridge: it trains ``unet_torch.UNet`` and exports to Keras through
:mod:`unet_bridge`, never importing ``unet_keras`` itself. ``train.py`` is its entry point.
"""
