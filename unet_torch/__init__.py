"""PyTorch side: ``UNet(spec)`` and canonical-weight adapters (training lives in submodules)."""

from unet_torch._imports import check_import_order

check_import_order()

from unet_torch.model import UNet, canonical_state, load_canonical, probabilities  # noqa: E402

__all__ = ["UNet", "canonical_state", "load_canonical", "probabilities"]
