"""``ATSSAssigner``: adaptive training sample selection (Zhang et al., "Bridging the Gap Between
Anchor-based and Anchor-free Detection via Adaptive Training Sample Selection", CVPR 2020)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torchvision.ops import box_iou

from kiln.registry import TASK_UTILS

from .assigners import AssignResult, box_iof

__all__ = ["ATSSAssigner"]

_INF = 100000000.0


@TASK_UTILS.register_module()
class ATSSAssigner:
    """Per ground truth, pick positives from statistics of its closest candidates instead of a fixed IoU.

    For each ground truth: on every level take the ``topk`` priors whose centres are closest to its centre
    (L2 distance); over those candidates compute the IoUs' mean + standard deviation (unbiased) as that
    ground truth's threshold; candidates with IoU ``>=`` the threshold whose centre lies inside the box
    (by more than 0.01 px on every side) become positives. A prior positive for several ground truths
    takes the one it overlaps most. Everything else is negative (0); priors whose intersection over
    their own area with an ignore region exceeds ``ignore_iof_thr`` (> 0) are ignored (-1).

    Args:
        topk: candidates per level per ground truth (the paper's k = 9).
        iou_calculator: ``dict(type='BboxOverlaps2D')`` (plain IoU, the only one kiln has).
        ignore_iof_thr: see above; ``-1`` disables ignore regions.
        alpha: MMDetection's DDOD variant mixing classification cost into the IoU; not implemented.
    """

    def __init__(
        self,
        topk: int,
        iou_calculator: Mapping[str, Any] | None = None,
        ignore_iof_thr: float = -1,
        alpha: float | None = None,
    ) -> None:
        if alpha is not None:
            raise NotImplementedError(
                f"ATSSAssigner(alpha={alpha}): the DDOD cost-weighted assignment is not implemented; remove "
                "alpha (plain ATSS)."
            )
        if iou_calculator is not None and iou_calculator.get("type", "BboxOverlaps2D") != "BboxOverlaps2D":
            raise NotImplementedError(
                f"ATSSAssigner(iou_calculator={dict(iou_calculator)!r}): kiln computes plain IoU "
                "(type='BboxOverlaps2D') only."
            )
        if int(topk) < 1:
            raise ValueError(
                f"ATSSAssigner(topk={topk}): expected a positive number of candidates per level."
            )
        self.topk = int(topk)
        self.ignore_iof_thr = float(ignore_iof_thr)

    def assign(
        self,
        priors: torch.Tensor,
        num_level_priors: Sequence[int],
        gt_bboxes: torch.Tensor,
        gt_labels: torch.Tensor | None = None,
        gt_bboxes_ignore: torch.Tensor | None = None,
    ) -> AssignResult:
        """Assign ``priors`` (P×4 XYXY, all levels concatenated; ``num_level_priors`` per level) to
        ``gt_bboxes`` (G×4)."""
        priors = priors[:, :4]
        if sum(num_level_priors) != len(priors):
            raise ValueError(
                f"ATSSAssigner: num_level_priors={list(num_level_priors)} sum to {sum(num_level_priors)}, "
                f"but {len(priors)} priors were given."
            )
        num_gt, num_priors = len(gt_bboxes), len(priors)
        gt_inds = priors.new_zeros((num_priors,), dtype=torch.long)
        labels = priors.new_full((num_priors,), -1, dtype=torch.long)
        if num_gt == 0 or num_priors == 0:
            return AssignResult(num_gt, gt_inds, priors.new_zeros((num_priors,)), labels)
        gt_bboxes = gt_bboxes.to(priors.dtype)
        overlaps = box_iou(priors, gt_bboxes)  # P×G
        gt_ctr = (gt_bboxes[:, :2] + gt_bboxes[:, 2:]) / 2
        prior_ctr = (priors[:, :2] + priors[:, 2:]) / 2
        distances = (prior_ctr[:, None, :] - gt_ctr[None, :, :]).pow(2).sum(-1).sqrt()  # P×G

        if self.ignore_iof_thr > 0 and gt_bboxes_ignore is not None and len(gt_bboxes_ignore):
            iof = box_iof(priors, gt_bboxes_ignore.to(priors.dtype)).max(dim=1).values
            ignored = iof > self.ignore_iof_thr
            distances[ignored, :] = _INF
            gt_inds[ignored] = -1

        # The topk closest priors per level, per ground truth: K_total×G indices into all priors.
        candidates, start = [], 0
        for n in num_level_priors:
            k = min(self.topk, n)
            if k > 0:
                _, idx = distances[start:start + n].topk(k, dim=0, largest=False)
                candidates.append(idx + start)
            start += n
        cand = torch.cat(candidates, dim=0)
        gt_cols = torch.arange(num_gt, device=priors.device)
        cand_iou = overlaps[cand, gt_cols]  # K_total×G
        thr = cand_iou.mean(0) + cand_iou.std(0)
        is_pos = cand_iou >= thr[None, :]
        # The candidate's centre must lie inside the ground truth.
        cx, cy = prior_ctr[cand, 0], prior_ctr[cand, 1]  # K_total×G
        inside = torch.stack(
            [cx - gt_bboxes[:, 0], cy - gt_bboxes[:, 1], gt_bboxes[:, 2] - cx, gt_bboxes[:, 3] - cy], dim=-1
        ).min(dim=-1).values > 0.01
        is_pos &= inside

        # A prior positive for several ground truths keeps the one it overlaps most.
        masked = torch.full_like(overlaps, -_INF)
        rows, cols = cand[is_pos], gt_cols.expand_as(cand)[is_pos]
        masked[rows, cols] = overlaps[rows, cols]
        max_overlaps, argmax = masked.max(dim=1)
        pos = max_overlaps != -_INF
        gt_inds[pos] = argmax[pos] + 1
        if gt_labels is not None:
            labels[pos] = gt_labels[argmax[pos]].long()
        return AssignResult(num_gt, gt_inds, overlaps.max(dim=1).values, labels)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(topk={self.topk}, ignore_iof_thr={self.ignore_iof_thr})"
