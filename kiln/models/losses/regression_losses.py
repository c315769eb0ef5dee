"""Box regression losses: Smooth L1, L1 and generalized IoU."""

from __future__ import annotations

import torch
from torchvision.ops import generalized_box_iou_loss

from kiln.registry import MODELS

from .utils import _WeightedLoss, weight_reduce_loss

__all__ = ["SmoothL1Loss", "L1Loss", "GIoULoss"]


@MODELS.register_module()
class SmoothL1Loss(_WeightedLoss):
    """Huber-style loss: ``0.5 x² / beta`` for ``|x| < beta``, else ``|x| - 0.5 beta`` (``beta=0``: L1)."""

    def __init__(self, beta: float = 1.0, reduction: str = "mean", loss_weight: float = 1.0) -> None:
        super().__init__(reduction, loss_weight)
        if beta < 0:
            raise ValueError(f"SmoothL1Loss beta={beta} must be >= 0.")
        self.beta = float(beta)

    def forward(
        self,
        pred: torch.Tensor,
        target: torch.Tensor,
        weight: torch.Tensor | None = None,
        avg_factor: float | torch.Tensor | None = None,
        reduction_override: str | None = None,
    ) -> torch.Tensor:
        """Element-wise smooth L1, weighted and reduced, times ``loss_weight``."""
        diff = (pred - target).abs()
        if self.beta > 0:
            loss = torch.where(diff < self.beta, 0.5 * diff * diff / self.beta, diff - 0.5 * self.beta)
        else:
            loss = diff
        return self.loss_weight * weight_reduce_loss(
            loss, weight, self._reduction(reduction_override), avg_factor
        )


@MODELS.register_module()
class L1Loss(_WeightedLoss):
    """Element-wise absolute error."""

    def forward(
        self,
        pred: torch.Tensor,
        target: torch.Tensor,
        weight: torch.Tensor | None = None,
        avg_factor: float | torch.Tensor | None = None,
        reduction_override: str | None = None,
    ) -> torch.Tensor:
        """``|pred - target|``, weighted and reduced, times ``loss_weight``."""
        loss = (pred - target).abs()
        return self.loss_weight * weight_reduce_loss(
            loss, weight, self._reduction(reduction_override), avg_factor
        )


@MODELS.register_module()
class GIoULoss(_WeightedLoss):
    """``1 - GIoU`` between predicted and target boxes (N×4 XYXY); use with ``reg_decoded_bbox=True``.

    ``weight`` may be per box (N) or per coordinate (N×4, averaged per box as in MMDetection).
    """

    def __init__(self, eps: float = 1e-6, reduction: str = "mean", loss_weight: float = 1.0) -> None:
        super().__init__(reduction, loss_weight)
        self.eps = eps

    def forward(
        self,
        pred: torch.Tensor,
        target: torch.Tensor,
        weight: torch.Tensor | None = None,
        avg_factor: float | torch.Tensor | None = None,
        reduction_override: str | None = None,
    ) -> torch.Tensor:
        """Per-box GIoU loss, weighted and reduced, times ``loss_weight``."""
        if weight is not None and weight.dim() > 1:
            weight = weight.mean(-1)
        loss = generalized_box_iou_loss(pred.float(), target.float(), reduction="none", eps=self.eps)
        return self.loss_weight * weight_reduce_loss(
            loss, weight, self._reduction(reduction_override), avg_factor
        )
