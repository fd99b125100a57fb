"""Front-ends of the U-Net graph reader (:mod:`unet_graph`) for graphs that belong to no twin.

The Keras front-end lives with the Keras twin (:mod:`unet_keras.graph`) and the PyTorch one with
the PyTorch twin (:mod:`unet_torch.graph`); an ONNX model is neither framework's, so its front-end
(:mod:`unet_bridge.graphs.onnx_graph`) lives here, in the bridge that already runs onnxruntime.
"""
