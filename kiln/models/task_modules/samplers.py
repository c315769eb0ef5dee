"""Samplers: choose which assigned candidates (positives/negatives) contribute to the loss."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from kiln.registry import TASK_UTILS

from .assigners import AssignResult

__all__ = ["SamplingResult", "PseudoSampler", "RandomSampler", "OHEMSampler"]


@dataclass
class SamplingResult:
    """Indices of sampled positives/negatives into ``bboxes`` (gts first when added, or last).

    Attributes:
        pos_inds, neg_inds: indices into ``bboxes``.
        bboxes: all candidates (gt boxes first if ``add_gt_as_proposals``; last with ``append_gt``).
        pos_assigned_gt_inds: for each positive, the index of its ground truth.
        pos_gt_bboxes, pos_gt_labels: the matched ground truths.
        pos_is_gt: whether each positive is a ground-truth box added as a candidate.
    """

    pos_inds: torch.Tensor
    neg_inds: torch.Tensor
    bboxes: torch.Tensor
    gt_bboxes: torch.Tensor
    assign_result: AssignResult
    gt_flags: torch.Tensor

    @property
    def pos_bboxes(self) -> torch.Tensor:
        """The positive candidates (K×4)."""
        return self.bboxes[self.pos_inds]

    @property
    def neg_bboxes(self) -> torch.Tensor:
        """The negative candidates."""
        return self.bboxes[self.neg_inds]

    @property
    def pos_assigned_gt_inds(self) -> torch.Tensor:
        """Ground-truth index (0-based) of each positive."""
        return self.assign_result.gt_inds[self.pos_inds] - 1

    @property
    def pos_gt_bboxes(self) -> torch.Tensor:
        """Matched ground-truth box of each positive."""
        if len(self.gt_bboxes) == 0:
            return self.gt_bboxes.new_zeros((0, 4))
        return self.gt_bboxes[self.pos_assigned_gt_inds]

    @property
    def pos_gt_labels(self) -> torch.Tensor | None:
        """Class of each positive (``None`` when the assignment had no labels)."""
        labels = self.assign_result.labels
        return None if labels is None else labels[self.pos_inds]

    @property
    def pos_is_gt(self) -> torch.Tensor:
        """1 for positives that are ground-truth boxes added as candidates."""
        return self.gt_flags[self.pos_inds]

    # MMDetection v3 names
    pos_priors = pos_bboxes
    neg_priors = neg_bboxes


class _BaseSampler:
    """Sampling with a budget of ``num`` candidates, a ``pos_fraction`` of them positive.

    ``append_gt=True`` puts the ground-truth candidates (``add_gt_as_proposals``) after the others instead
    of before them, as Detectron2's ``add_ground_truth_to_proposals`` does; the set of candidates is the
    same, but a random draw picks different ones from a different order.
    """

    def __init__(
        self,
        num: int,
        pos_fraction: float,
        neg_pos_ub: float = -1,
        add_gt_as_proposals: bool = True,
        append_gt: bool = False,
        **kwargs: object,
    ) -> None:
        if num <= 0 or not 0 <= pos_fraction <= 1:
            raise ValueError(
                f"{type(self).__name__}: num={num} must be > 0 and pos_fraction={pos_fraction} in [0, 1]."
            )
        self.num = int(num)
        self.pos_fraction = float(pos_fraction)
        self.neg_pos_ub = neg_pos_ub
        self.add_gt_as_proposals = add_gt_as_proposals
        self.append_gt = bool(append_gt)

    def _select(self, inds: torch.Tensor, k: int, **kwargs: object) -> torch.Tensor:
        raise NotImplementedError

    def sample(
        self,
        assign_result: AssignResult,
        bboxes: torch.Tensor,
        gt_bboxes: torch.Tensor,
        gt_labels: torch.Tensor | None = None,
        **kwargs: object,
    ) -> SamplingResult:
        """Sample positives (up to ``num * pos_fraction``) then negatives to fill ``num``."""
        bboxes = bboxes[:, :4]
        gt_flags = bboxes.new_zeros((len(bboxes),), dtype=torch.uint8)
        if self.add_gt_as_proposals and len(gt_bboxes) > 0:
            gts = gt_bboxes.to(bboxes.dtype)
            gt_ones = bboxes.new_ones((len(gt_bboxes),), dtype=torch.uint8)
            if self.append_gt:
                bboxes, gt_flags = torch.cat([bboxes, gts]), torch.cat([gt_flags, gt_ones])
            else:
                bboxes, gt_flags = torch.cat([gts, bboxes]), torch.cat([gt_ones, gt_flags])
            assign_result.add_gt_(gt_labels, append=self.append_gt)
        pos = torch.nonzero(assign_result.gt_inds > 0).flatten()
        neg = torch.nonzero(assign_result.gt_inds == 0).flatten()
        num_pos = min(int(self.num * self.pos_fraction), len(pos))
        pos_inds = self._select(pos, num_pos, bboxes=bboxes, assign_result=assign_result, **kwargs)
        num_neg = self.num - len(pos_inds)
        if self.neg_pos_ub >= 0:
            num_neg = min(num_neg, int(self.neg_pos_ub * max(1, len(pos_inds))))
        num_neg = min(num_neg, len(neg))
        neg_inds = self._select(neg, num_neg, bboxes=bboxes, assign_result=assign_result, **kwargs)
        return SamplingResult(pos_inds, neg_inds, bboxes, gt_bboxes, assign_result, gt_flags)


@TASK_UTILS.register_module()
class PseudoSampler:
    """No sampling: every positive and every negative is used (RetinaNet: focal loss handles imbalance)."""

    def __init__(self, **kwargs: object) -> None:
        pass

    def sample(
        self,
        assign_result: AssignResult,
        bboxes: torch.Tensor,
        gt_bboxes: torch.Tensor,
        gt_labels: torch.Tensor | None = None,
        **kwargs: object,
    ) -> SamplingResult:
        """Return all positives and negatives."""
        pos = torch.nonzero(assign_result.gt_inds > 0).flatten()
        neg = torch.nonzero(assign_result.gt_inds == 0).flatten()
        flags = bboxes.new_zeros((len(bboxes),), dtype=torch.uint8)
        return SamplingResult(pos, neg, bboxes[:, :4], gt_bboxes, assign_result, flags)


@TASK_UTILS.register_module()
class RandomSampler(_BaseSampler):
    """Uniformly random positives and negatives (Faster R-CNN: ``num=512, pos_fraction=0.25``).

    Draws from torch's global RNG, so runs are reproducible under ``torch.manual_seed``. A pool no larger
    than its budget is taken whole without a draw (MMDetection); ``permute_all=True`` draws a permutation
    of every pool, positives then negatives, as Detectron2's ``subsample_labels`` does, so that under the
    same seed both frameworks pick the same candidates (the RNG advances identically).
    """

    def __init__(self, num: int, pos_fraction: float, neg_pos_ub: float = -1,
                 add_gt_as_proposals: bool = True, append_gt: bool = False, permute_all: bool = False,
                 **kwargs: object) -> None:
        super().__init__(num, pos_fraction, neg_pos_ub, add_gt_as_proposals, append_gt, **kwargs)
        self.permute_all = bool(permute_all)

    def _select(self, inds: torch.Tensor, k: int, **kwargs: object) -> torch.Tensor:
        if len(inds) <= k and not self.permute_all:
            return inds
        perm = torch.randperm(len(inds), device=inds.device)[:k]
        return inds[perm]


@TASK_UTILS.register_module()
class OHEMSampler(_BaseSampler):
    """Online hard example mining: keep the candidates with the highest loss (Shrivastava et al. 2016).

    ``sample(..., loss_fn=f)`` where ``f(bboxes, labels) -> per-candidate loss`` is called without
    gradient on all candidates (gts included when added); alternatively ``losses=`` gives the per-candidate
    losses directly (aligned with ``bboxes`` after adding gts). Labels passed to ``loss_fn`` are the
    assigned classes, ``num_classes``-style background handled by the caller (``-1`` for negatives).
    """

    def _select(
        self,
        inds: torch.Tensor,
        k: int,
        *,
        bboxes: torch.Tensor,
        assign_result: AssignResult,
        loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
        losses: torch.Tensor | None = None,
        **kwargs: object,
    ) -> torch.Tensor:
        if len(inds) <= k:
            return inds
        if losses is None:
            if loss_fn is None:
                raise ValueError(
                    "OHEMSampler.sample needs loss_fn=(bboxes, labels) -> losses or losses=<tensor> "
                    "to rank candidates by difficulty."
                )
            labels = assign_result.labels
            if labels is None:
                labels = torch.full((len(bboxes),), -1, dtype=torch.long, device=bboxes.device)
            with torch.no_grad():
                losses = loss_fn(bboxes[inds], labels[inds])
        else:
            losses = losses[inds]
        if len(losses) != len(inds):
            raise ValueError(f"OHEMSampler: got {len(losses)} losses for {len(inds)} candidates.")
        return inds[losses.detach().topk(k).indices]
