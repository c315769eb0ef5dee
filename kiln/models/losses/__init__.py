"""Losses (registered in ``MODELS``): all take ``reduction``, ``loss_weight`` and, at call time,
``weight``, ``avg_factor`` and ``reduction_override``."""

from .cross_entropy_loss import CrossEntropyLoss
from .focal_loss import FocalLoss
from .mse_loss import MSELoss
from .regression_losses import CIoULoss, DIoULoss, GIoULoss, L1Loss, SmoothL1Loss
from .utils import weight_reduce_loss

__all__ = [
    "CIoULoss", "CrossEntropyLoss", "DIoULoss", "FocalLoss", "GIoULoss", "L1Loss", "SmoothL1Loss",
    "weight_reduce_loss",
]
from .iou_loss import IoULoss  # noqa: E402

__all__ += ["IoULoss"]
__all__ += ["MSELoss"]
