"""Shared loss plumbing: element weights, reduction and ``avg_factor`` (MMDetection semantics)."""

from __future__ import annotations

import torch

__all__ = ["weight_reduce_loss", "class_index_to_binary", "REDUCTIONS"]

REDUCTIONS = ("none", "mean", "sum")


def weight_reduce_loss(
    loss: torch.Tensor,
    weight: torch.Tensor | None = None,
    reduction: str = "mean",
    avg_factor: float | torch.Tensor | None = None,
) -> torch.Tensor:
    """Multiply by ``weight`` (broadcast) and reduce.

    With ``avg_factor`` and ``reduction='mean'`` the sum is divided by ``avg_factor`` instead of the
    element count (e.g. the number of positive anchors); ``'sum'`` with an ``avg_factor`` is an error
    because the two disagree about the normaliser.
    """
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction={reduction!r}: expected one of {REDUCTIONS}.")
    if weight is not None:
        if weight.dim() == loss.dim() - 1:
            weight = weight.unsqueeze(-1)
        loss = loss * weight
    if avg_factor is None:
        if reduction == "mean":
            return loss.mean() if loss.numel() else loss.sum()
        if reduction == "sum":
            return loss.sum()
        return loss
    if reduction == "mean":
        eps = torch.finfo(torch.float32).eps
        return loss.sum() / (avg_factor + eps)
    if reduction == "sum":
        raise ValueError("avg_factor cannot be used with reduction='sum'; use reduction='mean'.")
    return loss


def class_index_to_binary(target: torch.Tensor, pred: torch.Tensor) -> torch.Tensor:
    """N class indices → N×C 0/1 targets shaped like ``pred``; indices outside ``[0, C)`` (background
    ``C``, ignore ``-1``) give all-zero rows. Written as a scatter into ``pred``'s dtype, which avoids the
    int64 N×(C+1) temporary of ``one_hot`` on the large dense-head tensors."""
    out = torch.zeros_like(pred)
    fg = (target >= 0) & (target < pred.shape[-1])
    idx = torch.nonzero(fg).flatten()
    out[idx, target[idx].long()] = 1.0
    return out


class _WeightedLoss(torch.nn.Module):
    """Base of kiln's losses: ``reduction``, ``loss_weight`` and the ``forward`` signature."""

    def __init__(self, reduction: str = "mean", loss_weight: float = 1.0) -> None:
        super().__init__()
        if reduction not in REDUCTIONS:
            raise ValueError(f"{type(self).__name__}: reduction={reduction!r}, expected one of {REDUCTIONS}.")
        self.reduction = reduction
        self.loss_weight = float(loss_weight)

    def _reduction(self, override: str | None) -> str:
        if override is not None and override not in REDUCTIONS:
            raise ValueError(f"reduction_override={override!r}: expected one of {REDUCTIONS}.")
        return override or self.reduction

    def extra_repr(self) -> str:
        return f"reduction={self.reduction!r}, loss_weight={self.loss_weight}"
