"""``GridAssigner``: YOLOv3's rule, IoU matching restricted to the grid cells that hold an object's centre."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torchvision.ops import box_iou

from kiln.registry import TASK_UTILS

from .assigners import AssignResult

__all__ = ["GridAssigner"]


@TASK_UTILS.register_module()
class GridAssigner:
    """Assign anchors to ground truths, only through the anchors of each object's centre cell.

    The head marks, on every level, the anchors of the cell containing each ground truth's centre as
    *responsible*. Then, with ``IoU`` between every anchor and every ground truth:

    1. every anchor starts ignored (-1);
    2. max IoU in ``[0, neg_iou_thr]`` (or ``(lo, hi]`` for a pair) → negative (0), whether responsible
       or not;
    3. a responsible anchor whose max IoU over the ground truths is ``> pos_iou_thr`` → positive for that
       ground truth (only responsible anchors count in the max here);
    4. each ground truth also takes its best responsible anchor (all tied ones with
       ``gt_max_assign_all``) if that IoU is ``> min_pos_iou``: every object gets one anchor somewhere.

    The comparisons (``<=`` for negatives, strict ``>`` for positives) are MMDetection's, which differ
    from :class:`MaxIoUAssigner`'s.
    """

    def __init__(
        self,
        pos_iou_thr: float,
        neg_iou_thr: float | Sequence[float],
        min_pos_iou: float = 0.0,
        gt_max_assign_all: bool = True,
        iou_calculator: dict | None = None,
    ) -> None:
        if iou_calculator is not None and dict(iou_calculator).get("type") != "BboxOverlaps2D":
            raise ValueError(
                f"GridAssigner(iou_calculator={iou_calculator!r}): kiln computes plain box IoU "
                "(BboxOverlaps2D); remove iou_calculator."
            )
        if isinstance(neg_iou_thr, (list, tuple)):
            if len(neg_iou_thr) != 2:
                raise ValueError(f"GridAssigner neg_iou_thr={neg_iou_thr!r}: a range must be (low, high).")
            neg_iou_thr = (float(neg_iou_thr[0]), float(neg_iou_thr[1]))
        else:
            neg_iou_thr = float(neg_iou_thr)
        self.pos_iou_thr = float(pos_iou_thr)
        self.neg_iou_thr = neg_iou_thr
        self.min_pos_iou = float(min_pos_iou)
        self.gt_max_assign_all = bool(gt_max_assign_all)

    def assign(
        self,
        priors: torch.Tensor,
        gt_bboxes: torch.Tensor,
        gt_bboxes_ignore: torch.Tensor | None = None,
        gt_labels: torch.Tensor | None = None,
        *,
        responsible_flags: torch.Tensor,
    ) -> AssignResult:
        """Assign ``priors`` (N×4) to ``gt_bboxes`` (K×4); ``responsible_flags`` (N, bool) from the head."""
        if gt_bboxes_ignore is not None and len(gt_bboxes_ignore):
            raise ValueError(
                "GridAssigner does not use ignore regions (MMDetection's YOLOv3 neither); drop "
                "gt_bboxes_ignore / crowd boxes from the YOLOv3 training data."
            )
        num_gts, num_priors = len(gt_bboxes), len(priors)
        gt_inds = priors.new_full((num_priors,), -1, dtype=torch.long)
        if num_gts == 0 or num_priors == 0:
            if num_gts == 0:
                gt_inds[:] = 0
            labels = None if gt_labels is None else gt_inds.new_full((num_priors,), -1)
            return AssignResult(num_gts, gt_inds, priors.new_zeros((num_priors,)), labels)
        overlaps = box_iou(gt_bboxes.float(), priors.float())
        max_overlaps, _ = overlaps.max(dim=0)
        if isinstance(self.neg_iou_thr, tuple):
            lo, hi = self.neg_iou_thr
            gt_inds[(max_overlaps > lo) & (max_overlaps <= hi)] = 0
        else:
            gt_inds[(max_overlaps >= 0) & (max_overlaps <= self.neg_iou_thr)] = 0

        responsible = responsible_flags.bool()
        overlaps = overlaps.masked_fill(~responsible[None, :], -1.0)
        max_resp, argmax_resp = overlaps.max(dim=0)
        pos = (max_resp > self.pos_iou_thr) & responsible
        gt_inds[pos] = argmax_resp[pos] + 1

        gt_max, gt_argmax = overlaps.max(dim=1)
        for i in range(num_gts):  # sequential, so later ground truths win ties as in MMDetection
            if gt_max[i] > self.min_pos_iou:
                if self.gt_max_assign_all:
                    gt_inds[(overlaps[i] == gt_max[i]) & responsible] = i + 1
                elif responsible[gt_argmax[i]]:
                    gt_inds[gt_argmax[i]] = i + 1

        labels = None
        if gt_labels is not None:
            labels = gt_inds.new_full((num_priors,), -1)
            p = gt_inds > 0
            labels[p] = gt_labels[gt_inds[p] - 1].long()
        return AssignResult(num_gts, gt_inds, max_resp, labels)
