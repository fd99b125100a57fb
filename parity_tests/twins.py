"""Gradients and optimiser steps of both twins in canonical form, for the parity tests.

Both sides compute the same loss, mean((logits − target)²), from the same canonical weights on the
same NCHW batches; everything returned is canonical (plan names, PyTorch layouts), so results
compare name by name. Keras runs on the TensorFlow backend with ``tf.GradientTape``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from unet_bridge import import_frameworks, keras_model, torch_model
from unet_spec import UNetSpec, build_plan, keras_name

import_frameworks()

# isort: off
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
import keras  # noqa: E402
import tensorflow as tf  # noqa: E402
# isort: on

from unet_keras import to_canonical, to_nchw, to_nhwc  # noqa: E402

BN_STATS = ("running_mean", "running_var")
#: The optimisers' settings, one convention for both twins: SGD's momentum and Adam's (β₁, β₂).
MOMENTUM = 0.9
BETAS = (0.9, 0.999)


def size_of(x: np.ndarray) -> int:
    return int(x.shape[-1])


def torch_gradients(
    spec: UNetSpec,
    weights: Mapping[str, np.ndarray],
    x: np.ndarray,
    target: np.ndarray,
    train: bool,
    dtype: torch.dtype = torch.float32,
) -> tuple[float, dict[str, np.ndarray], np.ndarray]:
    """Loss, gradients wrt every trainable canonical tensor, and the input gradient (computed in
    ``dtype``; float64 gives the reference)."""
    model = torch_model(spec, weights).to(dtype).train(train)
    xt = torch.from_numpy(x.copy()).to(dtype).requires_grad_(True)
    loss = F.mse_loss(model(xt), torch.from_numpy(target).to(dtype))
    loss.backward()
    params = dict(model.named_parameters())
    grads = {
        n: params[n].grad.numpy().copy() for n in build_plan(spec).weight_shapes if n in params
    }
    return loss.item(), grads, xt.grad.numpy().copy()


def _keras_canonical(model: keras.Model, spec: UNetSpec, arrays: Mapping[str, np.ndarray]) -> dict:
    """Canonical form of per-variable arrays (keyed by variable path) through the adapter:
    they are written into ``model``'s variables and read back with ``to_canonical``."""
    for block in build_plan(spec).blocks:
        if block.weight_shapes:
            layer = model.get_layer(block.keras_name)
            layer.set_weights([arrays.get(v.path, np.zeros(v.shape)) for v in layer.weights])
    return to_canonical(model, spec, dtype=np.dtype(model.dtype))


def keras_gradients(
    spec: UNetSpec,
    weights: Mapping[str, np.ndarray],
    x: np.ndarray,
    target: np.ndarray,
    train: bool,
    dtype: str = "float32",
) -> tuple[float, dict[str, np.ndarray], np.ndarray]:
    """Like :func:`torch_gradients`, on the Keras twin."""
    model = keras_model(spec, weights, size_of(x), dtype)
    xv = tf.Variable(to_nhwc(x).astype(dtype))
    with tf.GradientTape() as tape:
        out = model(xv, training=train)
        loss = tf.reduce_mean(tf.square(out - to_nhwc(target).astype(dtype)))
    variables = model.trainable_variables
    grads = tape.gradient(loss, [xv, *variables])
    by_path = {v.path: np.asarray(g) for v, g in zip(variables, grads[1:], strict=True)}
    canonical = _keras_canonical(model, spec, by_path)
    canonical = {n: a for n, a in canonical.items() if not n.endswith(BN_STATS)}
    return float(loss), canonical, to_nchw(np.asarray(grads[0]))


def torch_train(
    spec: UNetSpec,
    weights: Mapping[str, np.ndarray],
    batches: Sequence[tuple[np.ndarray, np.ndarray]],
    optimizer: str,
    lr: float,
    epsilon: float,
    bn_inputs: dict[str, list[np.ndarray]] | None = None,
    frozen: frozenset[str] = frozenset(),
    dtype: torch.dtype = torch.float32,
) -> tuple[list[float], dict[str, np.ndarray]]:
    """Steps of SGD with momentum (:data:`MOMENTUM`) or Adam (:data:`BETAS`); returns the losses
    and the final weights (in ``dtype``: float64 gives the reference trajectory that measures
    fp32's noise).

    Adam's epsilon follows Keras' convention: Keras adds ``epsilon`` to ``√v`` before the bias
    correction, PyTorch to ``√v̂`` after it, so PyTorch gets ``epsilon/√(1−β₂ᵗ)`` at step ``t``,
    which makes the two updates the same formula. ``frozen`` names tensors left untrained.
    ``bn_inputs``, when given, collects every batch-norm layer's input per step (float64 numpy),
    from which the tests account for PyTorch's unbiased running variance.
    """
    model = torch_model(spec, weights).to(dtype).train()
    params = [p for n, p in model.named_parameters() if n not in frozen]
    if optimizer == "sgd":
        opt: torch.optim.Optimizer = torch.optim.SGD(params, lr=lr, momentum=MOMENTUM)
    else:
        opt = torch.optim.Adam(params, lr=lr, betas=BETAS, eps=epsilon)
    handles = []
    if bn_inputs is not None:
        for block in build_plan(spec).blocks:
            if block.kind == "batchnorm":
                bn_inputs[block.name] = []

                def keep(_m: Any, inputs: tuple, name: str = block.name) -> None:
                    bn_inputs[name].append(inputs[0].detach().double().numpy().copy())

                handles.append(model.get_submodule(block.name).register_forward_pre_hook(keep))
    losses = []
    for step, (x, target) in enumerate(batches, start=1):
        if optimizer != "sgd":
            opt.param_groups[0]["eps"] = epsilon / (1 - BETAS[1] ** step) ** 0.5
        opt.zero_grad()
        loss = F.mse_loss(model(torch.from_numpy(x).to(dtype)), torch.from_numpy(target).to(dtype))
        loss.backward()
        opt.step()
        losses.append(loss.item())
    for handle in handles:
        handle.remove()
    state = model.state_dict()
    return losses, {n: state[n].detach().numpy().copy() for n in build_plan(spec).weight_shapes}


def keras_train(
    spec: UNetSpec,
    weights: Mapping[str, np.ndarray],
    batches: Sequence[tuple[np.ndarray, np.ndarray]],
    optimizer: str,
    lr: float,
    epsilon: float,
    frozen: frozenset[str] = frozenset(),
    dtype: str = "float32",
) -> tuple[list[float], dict[str, np.ndarray]]:
    """Like :func:`torch_train`, on the Keras twin (eager steps, no XLA)."""
    model = keras_model(spec, weights, size_of(batches[0][0]), dtype)
    if optimizer == "sgd":
        opt = keras.optimizers.SGD(learning_rate=lr, momentum=MOMENTUM)
    else:
        opt = keras.optimizers.Adam(
            learning_rate=lr, beta_1=BETAS[0], beta_2=BETAS[1], epsilon=epsilon
        )
    # Canonical ``enc1.conv1.bias`` is the Keras variable ``enc1_conv1/bias``.
    frozen_paths = {f"{keras_name(n.rsplit('.', 1)[0])}/{n.rsplit('.', 1)[1]}" for n in frozen}
    assert all(any(v.path == p for v in model.trainable_variables) for p in frozen_paths)
    losses = []
    for x, target in batches:
        with tf.GradientTape() as tape:
            out = model(to_nhwc(x).astype(dtype), training=True)
            loss = tf.reduce_mean(tf.square(out - to_nhwc(target).astype(dtype)))
        trained = [v for v in model.trainable_variables if v.path not in frozen_paths]
        grads = tape.gradient(loss, trained)
        opt.apply_gradients(zip(grads, trained, strict=True))
        losses.append(float(loss))
    return losses, to_canonical(model, spec, dtype=np.dtype(dtype))
