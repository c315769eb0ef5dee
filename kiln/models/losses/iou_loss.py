"""``IoULoss``: the IoU between predicted and target boxes as a loss (UnitBox; FCOS's box loss)."""

from __future__ import annotations

import torch

from kiln.registry import MODELS

from .utils import _WeightedLoss, weight_reduce_loss

__all__ = ["IoULoss", "aligned_box_iou"]

_MODES = ("log", "linear", "square")


def aligned_box_iou(pred: torch.Tensor, target: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """IoU of each box in ``pred`` (N×4 XYXY) with the box at the same row of ``target`` (N)."""
    lt = torch.max(pred[:, :2], target[:, :2])
    rb = torch.min(pred[:, 2:], target[:, 2:])
    inter = (rb - lt).clamp(min=0).prod(-1)
    area_p = (pred[:, 2] - pred[:, 0]) * (pred[:, 3] - pred[:, 1])
    area_t = (target[:, 2] - target[:, 0]) * (target[:, 3] - target[:, 1])
    union = (area_p + area_t - inter).clamp(min=eps)
    return inter / union


@MODELS.register_module()
class IoULoss(_WeightedLoss):
    """Per-box ``-log(IoU)`` (``mode='log'``, MMDetection's default), ``1 - IoU`` (``'linear'``) or
    ``1 - IoU²`` (``'square'``); the IoU is clamped to ``eps`` first so the log stays finite.

    ``weight`` is per box (N) or per coordinate (N×4, averaged per box as in MMDetection); FCOS weights
    each positive by its centerness target. ``linear=True`` is MMDetection's older spelling of
    ``mode='linear'``.
    """

    def __init__(
        self,
        linear: bool = False,
        eps: float = 1e-6,
        reduction: str = "mean",
        loss_weight: float = 1.0,
        mode: str = "log",
    ) -> None:
        super().__init__(reduction, loss_weight)
        if mode not in _MODES:
            raise ValueError(f"IoULoss(mode={mode!r}): expected one of {_MODES}.")
        self.mode = "linear" if linear else mode
        self.eps = float(eps)

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
        iou = aligned_box_iou(pred.float(), target.float()).clamp(min=self.eps)
        if self.mode == "log":
            loss = -iou.log()
        elif self.mode == "linear":
            loss = 1 - iou
        else:
            loss = 1 - iou**2
        return self.loss_weight * weight_reduce_loss(
            loss, weight, self._reduction(reduction_override), avg_factor
        )
