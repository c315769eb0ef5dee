"""Assigners: decide for each candidate box (anchor/proposal) which ground-truth box it learns from."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torchvision.ops import box_iou

from kiln.registry import TASK_UTILS

__all__ = ["AssignResult", "MaxIoUAssigner", "box_iof"]


def box_iof(boxes: torch.Tensor, regions: torch.Tensor) -> torch.Tensor:
    """Intersection over the area of ``boxes`` (N×M): how much of each box lies in each region."""
    lt = torch.max(boxes[:, None, :2], regions[None, :, :2])
    rb = torch.min(boxes[:, None, 2:], regions[None, :, 2:])
    inter = (rb - lt).clamp(min=0).prod(-1)
    area = ((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])).clamp(min=1e-6)
    return inter / area[:, None]


@dataclass
class AssignResult:
    """The outcome of an assignment.

    Attributes:
        num_gts: number of ground-truth boxes.
        gt_inds: per candidate, ``0`` = negative (background), ``-1`` = ignored, ``k ≥ 1`` = positive for
            ground truth ``k - 1``.
        max_overlaps: per candidate, its best IoU with any ground truth.
        labels: per candidate, the class of its ground truth, ``-1`` when not positive.
    """

    num_gts: int
    gt_inds: torch.Tensor
    max_overlaps: torch.Tensor
    labels: torch.Tensor | None = None

    @property
    def num_preds(self) -> int:
        """Number of candidates."""
        return len(self.gt_inds)

    def add_gt_(self, gt_labels: torch.Tensor | None, append: bool = False) -> None:
        """Add the ground truths themselves as positive candidates (used when sampling proposals):
        before the others (MMDetection), or after them with ``append=True`` (Detectron2's
        ``add_ground_truth_to_proposals``)."""
        self_inds = torch.arange(1, self.num_gts + 1, dtype=self.gt_inds.dtype, device=self.gt_inds.device)
        ones = self.max_overlaps.new_ones(self.num_gts)

        def join(added: torch.Tensor, existing: torch.Tensor) -> torch.Tensor:
            return torch.cat([existing, added] if append else [added, existing])

        self.gt_inds = join(self_inds, self.gt_inds)
        self.max_overlaps = join(ones, self.max_overlaps)
        if self.labels is not None and gt_labels is not None:
            self.labels = join(gt_labels.to(self.labels.dtype), self.labels)


@TASK_UTILS.register_module()
class MaxIoUAssigner:
    """Assign each candidate to the ground truth it overlaps most (Faster R-CNN / RetinaNet rule).

    1. every candidate starts ignored (-1);
    2. max IoU in ``[0, neg_iou_thr)`` (or in ``[lo, hi)`` for a tuple) → negative (0);
    3. max IoU ``>= pos_iou_thr`` → positive for that ground truth;
    4. ``match_low_quality``: each ground truth also takes the candidate(s) it overlaps most
       (all tied ones when ``gt_max_assign_all``) if that IoU is ``>= min_pos_iou`` and above 0, so every
       object gets at least one positive. (The "above 0" guard keeps a ground truth that overlaps nothing
       from claiming every candidate, which ``min_pos_iou=0`` would otherwise allow.)

    Candidates whose intersection-over-foreground with an ignore region exceeds ``ignore_iof_thr`` (> 0)
    stay ignored.

    ``low_quality_keeps_argmax=True`` is Detectron2's ``Matcher(allow_low_quality_matches=True)``: a
    candidate promoted by rule 4 becomes positive but learns from the ground truth it overlaps most (its
    argmax), not from the ground truth it is the best candidate for (MMDetection). The two differ when a
    candidate is some object's best match yet overlaps another object more.

    Example::

        >>> a = MaxIoUAssigner(pos_iou_thr=0.5, neg_iou_thr=0.4)
        >>> r = a.assign(torch.tensor([[0., 0, 10, 10], [20, 20, 30, 30]]), torch.tensor([[0., 0, 10, 9]]))
        >>> r.gt_inds.tolist()
        [1, 0]
    """

    def __init__(
        self,
        pos_iou_thr: float,
        neg_iou_thr: float | Sequence[float],
        min_pos_iou: float = 0.0,
        gt_max_assign_all: bool = True,
        ignore_iof_thr: float = -1,
        ignore_wrt_candidates: bool = True,
        match_low_quality: bool = True,
        gpu_assign_thr: int = -1,
        low_quality_keeps_argmax: bool = False,
    ) -> None:
        if isinstance(neg_iou_thr, (list, tuple)):
            if len(neg_iou_thr) != 2:
                raise ValueError(f"MaxIoUAssigner neg_iou_thr={neg_iou_thr!r}: a range must be (low, high).")
            neg_iou_thr = (float(neg_iou_thr[0]), float(neg_iou_thr[1]))
        self.pos_iou_thr = float(pos_iou_thr)
        self.neg_iou_thr = neg_iou_thr
        self.min_pos_iou = float(min_pos_iou)
        self.gt_max_assign_all = gt_max_assign_all
        self.ignore_iof_thr = float(ignore_iof_thr)
        self.ignore_wrt_candidates = ignore_wrt_candidates
        self.match_low_quality = match_low_quality
        self.low_quality_keeps_argmax = bool(low_quality_keeps_argmax)

    def assign(
        self,
        bboxes: torch.Tensor,
        gt_bboxes: torch.Tensor,
        gt_bboxes_ignore: torch.Tensor | None = None,
        gt_labels: torch.Tensor | None = None,
    ) -> AssignResult:
        """Assign ``bboxes`` (N×4) to ``gt_bboxes`` (K×4, XYXY); see the class docstring."""
        overlaps = (
            box_iou(gt_bboxes.float(), bboxes.float())
            if len(gt_bboxes)
            else bboxes.new_zeros((0, len(bboxes)))
        )
        if self.ignore_iof_thr > 0 and gt_bboxes_ignore is not None and len(gt_bboxes_ignore) and len(bboxes):
            if self.ignore_wrt_candidates:
                iof = box_iof(bboxes.float(), gt_bboxes_ignore.float()).max(dim=1).values
            else:
                iof = box_iof(gt_bboxes_ignore.float(), bboxes.float()).max(dim=0).values
            overlaps[:, iof > self.ignore_iof_thr] = -1
        return self.assign_wrt_overlaps(overlaps, gt_labels)

    def assign_wrt_overlaps(
        self, overlaps: torch.Tensor, gt_labels: torch.Tensor | None = None
    ) -> AssignResult:
        """Assign from a precomputed K×N IoU matrix (ignored candidates hold -1)."""
        num_gts, num_bboxes = overlaps.shape
        gt_inds = overlaps.new_full((num_bboxes,), -1, dtype=torch.long)
        if num_gts == 0 or num_bboxes == 0:
            max_overlaps = overlaps.new_zeros((num_bboxes,))
            if num_gts == 0:
                gt_inds[:] = 0
            labels = None if gt_labels is None else overlaps.new_full((num_bboxes,), -1, dtype=torch.long)
            return AssignResult(num_gts, gt_inds, max_overlaps, labels)

        max_overlaps, argmax = overlaps.max(dim=0)
        if isinstance(self.neg_iou_thr, tuple):
            lo, hi = self.neg_iou_thr
            gt_inds[(max_overlaps >= lo) & (max_overlaps < hi)] = 0
        else:
            gt_inds[(max_overlaps >= 0) & (max_overlaps < self.neg_iou_thr)] = 0
        pos = max_overlaps >= self.pos_iou_thr
        gt_inds[pos] = argmax[pos] + 1

        if self.match_low_quality:
            gt_max, gt_argmax = overlaps.max(dim=1)
            ok = (gt_max >= self.min_pos_iou) & (gt_max > 0)
            if self.low_quality_keeps_argmax:
                # Detectron2: promoted candidates keep their own best ground truth (ties included).
                promoted = ((overlaps == gt_max[:, None]) & ok[:, None]).any(dim=0)
                gt_inds = torch.where(promoted, argmax + 1, gt_inds)
            elif self.gt_max_assign_all:
                mask = (overlaps == gt_max[:, None]) & ok[:, None]
                # Later ground truths win ties, as in the sequential rule of MMDetection.
                order = torch.arange(1, num_gts + 1, device=overlaps.device)[:, None]
                best = (mask.long() * order).max(dim=0).values
                gt_inds = torch.where(best > 0, best, gt_inds)
            else:
                for i in torch.nonzero(ok).flatten().tolist():
                    gt_inds[gt_argmax[i]] = i + 1

        labels = None
        if gt_labels is not None:
            labels = gt_inds.new_full((num_bboxes,), -1)
            p = gt_inds > 0
            labels[p] = gt_labels[gt_inds[p] - 1].long()
        return AssignResult(num_gts, gt_inds, max_overlaps, labels)
