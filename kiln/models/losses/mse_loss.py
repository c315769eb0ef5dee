"""``MSELoss``: squared error (YOLOv3's width/height loss)."""

from __future__ import annotations

import torch

from kiln.registry import MODELS

from .utils import _WeightedLoss, weight_reduce_loss

__all__ = ["MSELoss"]


@MODELS.register_module()
class MSELoss(_WeightedLoss):
    """Element-wise ``(pred - target)²``, weighted (broadcast) and reduced, times ``loss_weight``."""

    def forward(
        self,
        pred: torch.Tensor,
        target: torch.Tensor,
        weight: torch.Tensor | None = None,
        avg_factor: float | torch.Tensor | None = None,
        reduction_override: str | None = None,
    ) -> torch.Tensor:
        """The weighted, reduced squared error times ``loss_weight``."""
        loss = (pred - target) ** 2
        return self.loss_weight * weight_reduce_loss(
            loss, weight, self._reduction(reduction_override), avg_factor
        )
