"""Shared pieces of the cross-framework suite: twin models from one set of canonical weights."""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import torch
from hypothesis import HealthCheck, settings

from unet_bridge import keras_model, torch_model
from unet_spec import PRESETS, UNetSpec, random_weights
from unet_torch import UNet, float64_reference

# CI runs a fixed (derandomised) set of examples so a red run is reproducible; locally each run
# draws new specs (`HYPOTHESIS_PROFILE=dev`), so the runs add up to far more than one run draws.
# 30 random specs a run; `make test`'s AVX2 rerun (`--hypothesis-profile rerun`) draws 20 more of
# the same kind, against the other kernels: 50 a `make test`.
_common = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow], max_examples=30)
settings.register_profile("ci", derandomize=True, **_common)
settings.register_profile("dev", **_common)
_base = os.environ.get("HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") else "dev")
settings.register_profile("rerun", settings.get_profile(_base), max_examples=20)
settings.load_profile(_base)

#: How much narrower a full-width preset is checked (see :data:`ARCHITECTURES`).
NARROWING = 8


def narrow(spec: UNetSpec, factor: int = NARROWING) -> UNetSpec:
    """``spec`` with every width divided by ``factor`` (at least 1 channel): the same layers, the
    same wiring and the same sizes, at a fraction of the arithmetic."""

    def scaled(widths: tuple[int, ...]) -> tuple[int, ...]:
        return tuple(max(1, w // factor) for w in widths)

    return spec.replace(
        base_filters=max(1, spec.base_filters // factor),
        widths=scaled(spec.widths),
        decoder_widths=scaled(spec.decoder_widths),
        decoder_mid_widths=scaled(spec.decoder_mid_widths),
        up_widths=scaled(spec.up_widths),
    )


def small_sibling(name: str) -> str | None:
    """The ``<name>-small`` preset when it is ``name``'s architecture at another width (dropout
    aside, which evaluation leaves out), else None."""
    small = PRESETS.get(f"{name}-small")
    if small is None:
        return None
    full = PRESETS[name]
    same = small.replace(base_filters=full.base_filters, dropout=full.dropout) == full
    return f"{name}-small" if same else None


def _architectures() -> dict[str, UNetSpec]:
    found = {}
    for name, spec in sorted(PRESETS.items()):
        if spec.base_filters <= 16:
            found[name] = spec
        elif small_sibling(name) is None:
            found[f"{name}/{NARROWING}"] = narrow(spec)
    return found


#: Every preset's architecture once, at a width the suite can afford: the presets of width 16 or
#: less as they are; a full-width preset is covered by its ``-small`` sibling where that is the same
#: architecture, else checked as ``<name>/8`` (:func:`narrow`). Parity, round trips and planted
#: defects depend on the layers and their wiring, not on how many channels a layer has; the one
#: check whose point is the full size is ``test_forward.test_full_seed_model_at_572``.
ARCHITECTURES: dict[str, UNetSpec] = _architectures()


@dataclass
class Twins:
    spec: UNetSpec
    size: tuple[int, int]
    weights: dict[str, np.ndarray]
    torch_model: UNet
    keras_model: object  # keras.Model, logits; None where only the PyTorch twin was built

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


def make_twins(
    spec: UNetSpec, size: int | tuple[int, int], seed: int = 0, keras: bool = True
) -> Twins:
    """Both twins of ``spec`` with one set of random weights, built by the bridge's builders (the
    ones ``unet parity``, ``unet port`` and the mutation tests' planted defects go through).
    ``keras=False`` builds the PyTorch twin only, for checks that judge a third runtime against
    it (a Keras model costs a build and TensorFlow's start-up where nothing reads it)."""
    hw = (size, size) if isinstance(size, int) else tuple(size)
    weights = random_weights(spec, seed=seed)
    kmodel = keras_model(spec, weights, hw) if keras else None
    return Twins(spec, hw, weights, torch_model(spec, weights), kmodel)
