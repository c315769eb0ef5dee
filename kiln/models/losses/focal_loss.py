"""Sigmoid focal loss (Lin et al. 2017), computed by ``torchvision.ops.sigmoid_focal_loss``."""

from __future__ import annotations

import torch
from torchvision.ops import sigmoid_focal_loss

from kiln.registry import MODELS

from .utils import _WeightedLoss, class_index_to_binary, weight_reduce_loss

__all__ = ["FocalLoss"]


@MODELS.register_module()
class FocalLoss(_WeightedLoss):
    """Focal loss on per-class sigmoid logits.

    ``forward(pred, target, weight=None, avg_factor=None, reduction_override=None)``: ``pred`` is N×C
    logits; ``target`` is either N class indices, where ``C`` (== num_classes) means background, or an
    N×C 0/1 matrix. ``weight`` is per sample (N) or per element (N×C).
    """

    def __init__(
        self,
        use_sigmoid: bool = True,
        gamma: float = 2.0,
        alpha: float = 0.25,
        reduction: str = "mean",
        loss_weight: float = 1.0,
    ) -> None:
        super().__init__(reduction, loss_weight)
        if not use_sigmoid:
            raise ValueError(
                "FocalLoss supports use_sigmoid=True only (the softmax variant is not implemented); "
                "use CrossEntropyLoss for softmax classifiers."
            )
        self.use_sigmoid = use_sigmoid
        self.gamma = float(gamma)
        self.alpha = float(alpha)

    def forward(
        self,
        pred: torch.Tensor,
        target: torch.Tensor,
        weight: torch.Tensor | None = None,
        avg_factor: float | torch.Tensor | None = None,
        reduction_override: str | None = None,
    ) -> torch.Tensor:
        """The weighted, reduced focal loss times ``loss_weight``."""
        if target.dim() == pred.dim() - 1:
            target = class_index_to_binary(target, pred)
        loss = sigmoid_focal_loss(
            pred, target.to(pred.dtype), alpha=self.alpha, gamma=self.gamma, reduction="none"
        )
        return self.loss_weight * weight_reduce_loss(
            loss, weight, self._reduction(reduction_override), avg_factor
        )
