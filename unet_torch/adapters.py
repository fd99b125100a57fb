"""The PyTorch twin's side of the canonical weights: a :class:`~unet_torch.model.UNet` ⇄ canonical
float32 numpy arrays, and the float64 copy that parity checks measure fp32 noise against.

The counterpart of :mod:`unet_keras.adapters`. Module paths are the plan names, so no name or layout
is translated here: PyTorch's layouts are the canonical ones. What is left is choosing the plan's
tensors (batch norm's ``num_batches_tracked`` counter is bookkeeping that Keras has no equivalent
for, so it is not part of the canonical form), checking names and shapes before anything is copied,
and the dtype and device of the copies.

``model`` is a ``UNet`` (the functions read its ``spec``, ``plan`` and ``state_dict``); this module
does not import the model module, which re-exports these functions from their earlier home.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import TypeVar

import numpy as np
import torch
from torch import nn

from unet_spec import check_weights

M = TypeVar("M", bound=nn.Module)


def canonical_state(model: nn.Module) -> dict[str, np.ndarray]:
    """The model's weights as canonical float32 numpy arrays (names = plan names)."""
    names = model.plan.weight_shapes
    state = model.state_dict()
    return {
        n: state[n].detach().to("cpu", torch.float32).contiguous().numpy().copy() for n in names
    }


@torch.no_grad()
def load_canonical(model: M, weights: Mapping[str, np.ndarray], source: str = "weights") -> M:
    """Copy canonical weights into ``model`` after checking every name and shape (``source``
    names the weights in the error)."""
    check_weights(weights, model.spec, source=source)
    state = model.state_dict()
    for name in model.plan.weight_shapes:
        # Weights read from a file can be read-only views; torch warns on wrapping those, so a
        # read-only array is copied (a writable one is wrapped as it is).
        array = np.require(weights[name], dtype=np.float32, requirements="W")
        state[name].copy_(torch.from_numpy(array))
    return model


def to_float64(model: M) -> M:
    """``model`` itself on the CPU in double precision: the one float64 reference that parity
    checks, port proofs and exports measure fp32 noise against (the twin's, and a torch source's).
    Cast in place, so no copy is held; casting float32 weights there and back is exact."""
    return model.to("cpu", torch.float64)


@torch.no_grad()
def float64_reference(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``model`` on ``x`` in double precision, on the CPU (:func:`to_float64` of a copy: ``model``
    itself is left as it is)."""
    return to_float64(copy.deepcopy(model))(x.detach().to("cpu", torch.float64))


__all__ = ["canonical_state", "float64_reference", "load_canonical", "to_float64"]
