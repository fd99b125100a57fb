"""PyTorch side: ``UNet(spec)`` and canonical-weight adapters (training lives in submodules)."""

from unet_torch._imports import check_import_order

check_import_order()

from unet_torch.model import (  # noqa: E402
    UNet,
    canonical_state,
    float64_reference,
    load_canonical,
    probabilities,
)

__all__ = ["UNet", "canonical_state", "float64_reference", "load_canonical", "probabilities"]
