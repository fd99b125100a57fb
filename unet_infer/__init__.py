"""Framework-free inference: the tiling engine, the label rule and the files a prediction becomes.

:mod:`unet_infer.tiling` cuts an image of any size into tiles of a valid input size, runs a
``forward`` callable (NCHW numpy in and out, from any backend) and stitches the outputs;
:mod:`unet_infer.masks` encodes the labels as mask files and overlays. Importing this package loads
numpy only (Pillow is imported inside the functions that write images).
"""
