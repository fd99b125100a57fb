"""A source's state dict and the canonical weights, both ways, by a tensor mapping: canonical tensor
name (``enc1.conv1.weight``) → the source's state-dict key (``down1.double_conv.0.weight``), or a
:class:`Fixed` value where the source stores none (the weight and bias of a norm without affine
parameters).

Both directions keep PyTorch layouts, so mapping is renaming: the canonical form is the twin's own
``state_dict``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np
import torch

from unet_spec import UNetSpec, build_plan


@dataclass(frozen=True)
class Fixed:
    """A canonical tensor the source does not store: one value everywhere, in ``shape``."""

    value: float
    shape: tuple[int, ...]


#: Canonical tensor name → the source's state-dict key, or the value the source implies.
TensorMap = Mapping[str, "str | Fixed"]


def tensor_mapping(
    modules: Mapping[str, str], spec: UNetSpec, state_keys: Iterable[str] | None = None
) -> tuple[dict[str, str], tuple[str, ...]]:
    """A name map (plan block → source module path, as the named converters state their layouts)
    as a tensor mapping, and the source's bookkeeping keys (batch norm's ``num_batches_tracked``).

    Args:
        modules: Plan block → module path (``enc1.conv1`` → ``inc.double_conv.0``).
        spec: The spec whose plan lists the tensors.
        state_keys: The source's keys, when known: bookkeeping is then what they hold; otherwise
            every batch norm is given its counter (what ``nn.BatchNorm2d`` keeps).
    """
    plan = build_plan(spec)
    mapping = {}
    for name in plan.weight_shapes:
        block, tensor = name.rsplit(".", 1)
        mapping[name] = f"{modules[block]}.{tensor}"
    counters = [f"{modules[b.name]}.num_batches_tracked" for b in plan.blocks
                if b.kind == "batchnorm"]  # fmt: skip
    if state_keys is not None:
        keys = set(state_keys)
        counters = [k for k in counters if k in keys]
    return mapping, tuple(counters)


def canonical_weights(
    state_dict: Mapping[str, torch.Tensor], mapping: TensorMap
) -> dict[str, np.ndarray]:
    """Canonical float32 numpy weights read from a source's state dict through ``mapping``.

    Raises:
        ValueError: A key the mapping names is not in the state dict (the key is named).
    """
    out: dict[str, np.ndarray] = {}
    for name, key in mapping.items():
        if isinstance(key, Fixed):
            out[name] = np.full(key.shape, key.value, dtype=np.float32)
            continue
        if key not in state_dict:
            raise ValueError(f"the state dict has no {key!r} (canonical {name})")
        value = state_dict[key]
        out[name] = value.detach().to("cpu", torch.float32).contiguous().numpy().copy()
    return out


def source_state(
    weights: Mapping[str, np.ndarray], mapping: TensorMap, bookkeeping: Iterable[str] = ()
) -> dict[str, torch.Tensor]:
    """The source's state dict from canonical weights: every mapped key, and each bookkeeping key
    as a zero counter (what a strict ``load_state_dict`` expects of a batch norm).

    Raises:
        ValueError: A canonical tensor is missing; a fixed one holds other values (the source
            cannot store them); two canonical tensors that share a source key differ.
    """
    state: dict[str, torch.Tensor] = {}
    for name, key in mapping.items():
        if name not in weights:
            raise ValueError(f"the weights have no {name!r}")
        array = np.ascontiguousarray(weights[name], dtype=np.float32)
        if isinstance(key, Fixed):
            if not np.all(array == key.value):
                raise ValueError(
                    f"{name}: the source has no tensor for it (it is {key.value:g} everywhere), "
                    "and these weights hold other values"
                )
            continue
        if key in state and not np.array_equal(state[key].numpy(), array):
            raise ValueError(f"{key}: two canonical tensors with different values map to it")
        state[key] = torch.from_numpy(array.copy())
    for key in bookkeeping:
        state[key] = torch.tensor(0, dtype=torch.long)
    return state
