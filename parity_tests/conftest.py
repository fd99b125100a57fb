"""Shared pieces of the cross-framework suite: twin models from one set of canonical weights."""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import torch
from hypothesis import HealthCheck, settings

from unet_bridge import keras_model, torch_model
from unet_spec import UNetSpec, random_weights
from unet_torch import UNet, float64_reference

# CI runs a fixed (derandomised) set of examples so a red run is reproducible; locally each run
# draws new specs (`HYPOTHESIS_PROFILE=dev`).
settings.register_profile(
    "ci", derandomize=True, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile("dev", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") else "dev"))


@dataclass
class Twins:
    spec: UNetSpec
    size: tuple[int, int]
    weights: dict[str, np.ndarray]
    torch_model: UNet
    keras_model: object  # keras.Model, logits

    def inputs(self, batch: int = 1, seed: int = 0) -> np.ndarray:
        rng = np.random.default_rng(seed)
        return rng.random((batch, self.spec.in_channels, *self.size), dtype=np.float32)

    def torch_logits(self, x: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return self.torch_model(torch.from_numpy(x)).numpy()

    def reference_logits(self, x: np.ndarray) -> np.ndarray:
        """The float64 reference: the PyTorch twin in double precision."""
        return float64_reference(self.torch_model, torch.from_numpy(x)).numpy()

    def keras_logits(self, x: np.ndarray) -> np.ndarray:
        # Imported here, not with this file: pytest's controller process loads this conftest too
        # (under xdist it runs no test), and TensorFlow there would cost seconds and print its
        # start-up lines before pytest captures anything.
        import unet_keras

        y = self.keras_model(unet_keras.to_nhwc(x), training=False)
        return unet_keras.to_nchw(np.asarray(y))


def make_twins(spec: UNetSpec, size: int | tuple[int, int], seed: int = 0) -> Twins:
    """Both twins of ``spec`` with one set of random weights, built by the bridge's builders (the
    ones ``unet parity``, ``unet port`` and the mutation tests' planted defects go through)."""
    hw = (size, size) if isinstance(size, int) else tuple(size)
    weights = random_weights(spec, seed=seed)
    return Twins(spec, hw, weights, torch_model(spec, weights), keras_model(spec, weights, hw))
