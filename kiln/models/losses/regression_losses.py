"""Box regression losses: Smooth L1, L1 and the IoU family (generalized, distance, complete IoU)."""

from __future__ import annotations

import torch
from torchvision.ops import complete_box_iou_loss, distance_box_iou_loss, generalized_box_iou_loss

from kiln.registry import MODELS

from .utils import _WeightedLoss, weight_reduce_loss

__all__ = ["SmoothL1Loss", "L1Loss", "GIoULoss", "DIoULoss", "CIoULoss"]


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


class _BoxIoULoss(_WeightedLoss):
    """Shared body of the per-box IoU-family losses (N×4 XYXY boxes, ``weight`` per box or per
    coordinate, the latter averaged per box as in MMDetection)."""

    def __init__(self, eps: float = 1e-7, reduction: str = "mean", loss_weight: float = 1.0) -> None:
        super().__init__(reduction, loss_weight)
        self.eps = float(eps)

    def _per_box(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(
        self,
        pred: torch.Tensor,
        target: torch.Tensor,
        weight: torch.Tensor | None = None,
        avg_factor: float | torch.Tensor | None = None,
        reduction_override: str | None = None,
    ) -> torch.Tensor:
        """Per-box loss, weighted and reduced, times ``loss_weight``."""
        if weight is not None and weight.dim() > 1:
            weight = weight.mean(-1)
        loss = self._per_box(pred.float(), target.float())
        return self.loss_weight * weight_reduce_loss(
            loss, weight, self._reduction(reduction_override), avg_factor
        )


@MODELS.register_module()
class DIoULoss(_BoxIoULoss):
    """``1 - IoU + d² / c²`` (Zheng et al. 2020): ``d`` the distance between box centres, ``c`` the
    diagonal of the smallest box enclosing both; moves non-overlapping boxes towards each other.
    Detectron2's ``BBOX_REG_LOSS_TYPE: diou`` (eps 1e-7); use with ``reg_decoded_bbox=True``."""

    def _per_box(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return distance_box_iou_loss(pred, target, reduction="none", eps=self.eps)


@MODELS.register_module()
class CIoULoss(_BoxIoULoss):
    """DIoU plus an aspect-ratio consistency term ``alpha * v`` (Zheng et al. 2020). Detectron2's
    ``BBOX_REG_LOSS_TYPE: ciou`` (eps 1e-7); use with ``reg_decoded_bbox=True``."""

    def _per_box(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return complete_box_iou_loss(pred, target, reduction="none", eps=self.eps)
