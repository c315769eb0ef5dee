"""MaxIoUAssigner on hand-built cases (and IoU vs brute force); random and OHEM samplers."""

from __future__ import annotations

import pytest
import torch
from torchvision.ops import box_iou

from kiln.registry import TASK_UTILS


def _iou_brute(a, b):
    out = torch.zeros(len(a), len(b))
    for i, p in enumerate(a.tolist()):
        for j, q in enumerate(b.tolist()):
            iw = max(0.0, min(p[2], q[2]) - max(p[0], q[0]))
            ih = max(0.0, min(p[3], q[3]) - max(p[1], q[1]))
            inter = iw * ih
            union = (p[2] - p[0]) * (p[3] - p[1]) + (q[2] - q[0]) * (q[3] - q[1]) - inter
            out[i, j] = inter / union
    return out


def test_iou_used_by_the_assigner_matches_brute_force():
    g = torch.Generator().manual_seed(0)
    xy = torch.rand(20, 2, generator=g) * 50
    boxes = torch.cat([xy, xy + torch.rand(20, 2, generator=g) * 30 + 1], 1)
    assert torch.allclose(box_iou(boxes[:7], boxes), _iou_brute(boxes[:7], boxes), atol=1e-6)


def _assigner(**kw):
    cfg = dict(type="MaxIoUAssigner", pos_iou_thr=0.5, neg_iou_thr=0.4, min_pos_iou=0.0)
    cfg.update(kw)
    return TASK_UTILS.build(cfg)


ANCHORS = torch.tensor(
    [
        [0.0, 0, 10, 10],  # IoU 0.9 with gt0 → positive
        [0.0, 0, 10, 20],  # IoU 0.45 with gt0 → ignored (between thresholds)
        [50.0, 50, 60, 60],  # IoU 0 → negative
        [30.0, 30, 40, 42],  # IoU 0.3 with gt1: best anchor of gt1 → positive by low-quality matching
    ]
)
GTS = torch.tensor([[0.0, 0, 10, 9], [28.0, 28, 48, 48]])


def test_hand_built_assignment():
    r = _assigner().assign(ANCHORS, GTS, gt_labels=torch.tensor([2, 5]))
    assert r.gt_inds.tolist() == [1, -1, 0, 2]
    assert r.labels.tolist() == [2, -1, -1, 5]
    assert torch.allclose(r.max_overlaps, box_iou(GTS, ANCHORS).max(0).values)


def test_without_low_quality_matching_the_weak_anchor_is_negative():
    r = _assigner(match_low_quality=False).assign(ANCHORS, GTS)
    assert r.gt_inds.tolist() == [1, -1, 0, 0]


def test_min_pos_iou_limits_low_quality_matches():
    r = _assigner(min_pos_iou=0.35).assign(ANCHORS, GTS)
    assert r.gt_inds[3].item() == 0


def test_neg_iou_range_makes_low_overlaps_ignored():
    r = _assigner(neg_iou_thr=(0.1, 0.4), match_low_quality=False).assign(ANCHORS, GTS)
    assert r.gt_inds.tolist() == [1, -1, -1, 0]  # IoU 0 is now below the range: ignored


def test_no_ground_truth_makes_everything_negative():
    r = _assigner().assign(ANCHORS, torch.zeros(0, 4), gt_labels=torch.zeros(0, dtype=torch.long))
    assert r.gt_inds.tolist() == [0, 0, 0, 0] and r.labels.tolist() == [-1] * 4


def test_ignore_regions_mark_covered_anchors_ignored():
    r = _assigner(ignore_iof_thr=0.5).assign(
        ANCHORS, GTS, gt_bboxes_ignore=torch.tensor([[45.0, 45, 70, 70]])
    )
    assert r.gt_inds[2].item() == -1


def test_gt_overlapping_nothing_does_not_claim_every_anchor():
    r = _assigner().assign(ANCHORS[:3], torch.tensor([[200.0, 200, 210, 210]]))
    assert r.gt_inds.tolist() == [0, 0, 0]


def test_random_sampler_respects_budget_and_positive_fraction():
    torch.manual_seed(0)
    anchors = torch.cat([ANCHORS[:1].repeat(30, 1), ANCHORS[2:3].repeat(100, 1)])
    r = _assigner().assign(anchors, GTS[:1], gt_labels=torch.tensor([1]))
    s = TASK_UTILS.build(dict(type="RandomSampler", num=40, pos_fraction=0.25, add_gt_as_proposals=True))
    res = s.sample(r, anchors, GTS[:1], torch.tensor([1]))
    assert len(res.pos_inds) == 10 and len(res.neg_inds) == 30
    assert len(res.bboxes) == 131 and res.bboxes[0].tolist() == GTS[0].tolist()
    assert (res.pos_gt_labels == 1).all() and torch.equal(res.pos_gt_bboxes, GTS[:1].expand(10, 4))


def test_neg_pos_upper_bound_limits_negatives():
    anchors = torch.cat([ANCHORS[:1].repeat(2, 1), ANCHORS[2:3].repeat(100, 1)])
    r = _assigner().assign(anchors, GTS[:1])
    s = TASK_UTILS.build(
        dict(type="RandomSampler", num=64, pos_fraction=0.5, neg_pos_ub=3, add_gt_as_proposals=False)
    )
    res = s.sample(r, anchors, GTS[:1])
    assert len(res.pos_inds) == 2 and len(res.neg_inds) == 6


def test_ohem_sampler_keeps_the_hardest_candidates():
    anchors = ANCHORS[2:3].repeat(10, 1)
    r = _assigner().assign(anchors, GTS[:1])
    s = TASK_UTILS.build(dict(type="OHEMSampler", num=3, pos_fraction=0.5, add_gt_as_proposals=False))
    losses = torch.tensor([0.1, 5.0, 0.2, 3.0, 0.0, 4.0, 0.3, 0.1, 0.1, 0.1])
    res = s.sample(r, anchors, GTS[:1], losses=losses)
    assert sorted(res.neg_inds.tolist()) == [1, 3, 5]
    res2 = s.sample(
        _assigner().assign(anchors, GTS[:1]),
        anchors,
        GTS[:1],
        loss_fn=lambda boxes, labels: losses[: len(boxes)],
    )
    assert sorted(res2.neg_inds.tolist()) == [1, 3, 5]


def test_ohem_without_losses_explains_what_to_pass():
    anchors = ANCHORS[2:3].repeat(10, 1)
    s = TASK_UTILS.build(dict(type="OHEMSampler", num=3, pos_fraction=0.5, add_gt_as_proposals=False))
    with pytest.raises(ValueError, match="loss_fn"):
        s.sample(_assigner().assign(anchors, GTS[:1]), anchors, GTS[:1])
