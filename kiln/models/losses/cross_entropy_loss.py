"""Cross-entropy loss: softmax over classes, or per-class binary (sigmoid)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from kiln.registry import MODELS

from .utils import _WeightedLoss, weight_reduce_loss

__all__ = ["CrossEntropyLoss"]


@MODELS.register_module()
class CrossEntropyLoss(_WeightedLoss):
    """Softmax cross-entropy (default) or sigmoid binary cross-entropy (``use_sigmoid=True``).

    Softmax: ``pred`` N×C logits, ``target`` N class indices (entries equal to ``ignore_index`` are
    skipped; with ``avg_non_ignore`` the mean is over the non-ignored ones). Sigmoid: ``target`` is N
    class indices (index ``C`` = background → all zeros) or an N×C 0/1 matrix. ``class_weight``
    rescales classes.

    Mask (``use_mask=True``, the Mask R-CNN mask loss): ``pred`` R×C×h×w mask logits, ``target`` R×h×w
    0/1 masks and, in the third argument's place, ``label`` R (each RoI's class): the mean binary
    cross-entropy of each RoI's map of its class against its target (MMDetection's
    ``mask_cross_entropy``).
    """

    def __init__(
        self,
        use_sigmoid: bool = False,
        use_mask: bool = False,
        reduction: str = "mean",
        class_weight: Sequence[float] | None = None,
        ignore_index: int = -100,
        loss_weight: float = 1.0,
        avg_non_ignore: bool = False,
    ) -> None:
        super().__init__(reduction, loss_weight)
        if use_mask and use_sigmoid:
            raise ValueError("CrossEntropyLoss: use_sigmoid and use_mask are exclusive (use_mask is the "
                             "per-pixel binary loss of mask heads).")
        if use_mask and class_weight is not None:
            raise ValueError("CrossEntropyLoss(use_mask=True, class_weight=...): kiln's mask loss does not "
                             "weight classes; remove class_weight.")
        self.use_mask = use_mask
        self.use_sigmoid = use_sigmoid
        self.class_weight = list(class_weight) if class_weight is not None else None
        self.ignore_index = ignore_index
        self.avg_non_ignore = avg_non_ignore

    def forward(
        self,
        pred: torch.Tensor,
        target: torch.Tensor,
        weight: torch.Tensor | None = None,
        avg_factor: float | torch.Tensor | None = None,
        reduction_override: str | None = None,
    ) -> torch.Tensor:
        """The weighted, reduced cross-entropy times ``loss_weight``."""
        reduction = self._reduction(reduction_override)
        cw = pred.new_tensor(self.class_weight) if self.class_weight is not None else None
        if self.use_mask:
            return self.loss_weight * self._mask_loss(pred, target, weight, reduction)
        if self.use_sigmoid:
            if target.dim() == pred.dim() - 1:
                c = pred.shape[-1]
                valid = (target >= 0) & (target != self.ignore_index)
                onehot = F.one_hot(torch.where(valid, target, c).long(), c + 1)[..., :c]
                target = onehot
                vw = valid.to(pred.dtype)
                weight = vw if weight is None else weight * vw
            loss = F.binary_cross_entropy_with_logits(
                pred, target.to(pred.dtype), pos_weight=None, reduction="none"
            )
            if cw is not None:
                loss = loss * cw
        else:
            loss = F.cross_entropy(
                pred, target.long(), weight=cw, reduction="none", ignore_index=self.ignore_index
            )
            if self.avg_non_ignore and avg_factor is None and reduction == "mean":
                avg_factor = (target != self.ignore_index).sum().clamp(min=1).item()
        return self.loss_weight * weight_reduce_loss(loss, weight, reduction, avg_factor)

    @staticmethod
    def _mask_loss(pred: torch.Tensor, target: torch.Tensor, label: torch.Tensor | None,
                   reduction: str) -> torch.Tensor:
        if label is None or pred.dim() != 4 or label.shape != pred.shape[:1]:
            raise ValueError(
                "CrossEntropyLoss(use_mask=True) takes (pred R×C×h×w, target R×h×w, label R), got pred "
                f"{tuple(pred.shape)}, label {None if label is None else tuple(label.shape)}."
            )
        rows = torch.arange(pred.shape[0], device=pred.device)
        pred_slice = pred[rows, label.long()]
        if reduction != "mean":
            raise ValueError(f"CrossEntropyLoss(use_mask=True) averages over all pixels; reduction="
                             f"{reduction!r} is not supported (use 'mean').")
        return F.binary_cross_entropy_with_logits(pred_slice, target.to(pred_slice.dtype), reduction="mean")
