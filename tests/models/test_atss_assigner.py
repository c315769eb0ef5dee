"""ATSSAssigner and ATSSHead on small hand-computed cases.

Priors (XYXY): level A has four 10×10 boxes along y∈[0,10] (centres x = 5, 15, 25, 35), level B two
20×20 boxes (centres (10, 10) and (30, 10)).
"""

from __future__ import annotations

import math

import pytest
import torch

from kiln.registry import MODELS, TASK_UTILS

PRIORS = torch.tensor([
    [0.0, 0.0, 10.0, 10.0], [10.0, 0.0, 20.0, 10.0], [20.0, 0.0, 30.0, 10.0], [30.0, 0.0, 40.0, 10.0],
    [0.0, 0.0, 20.0, 20.0], [20.0, 0.0, 40.0, 20.0],
])
LEVELS = [4, 2]


def assigner(**kw):
    return TASK_UTILS.build(dict(type="ATSSAssigner", topk=2, **kw))


def test_threshold_is_mean_plus_std_of_the_closest_candidates_per_level():
    # gt [0,0,20,20], centre (10,10). Closest 2 per level: A -> priors 0, 1 (distance 7.07 each),
    # B -> priors 4, 5 (0 and 20). IoUs 0.25, 0.25, 1.0, 0.0: mean 0.375, unbiased std 0.433,
    # threshold 0.808 -> only prior 4 (IoU 1, centre inside) is positive.
    res = assigner().assign(PRIORS, LEVELS, torch.tensor([[0.0, 0.0, 20.0, 20.0]]), torch.tensor([2]))
    assert res.gt_inds.tolist() == [0, 0, 0, 0, 1, 0]
    assert res.labels.tolist() == [-1, -1, -1, -1, 2, -1]


def test_a_prior_chosen_by_two_boxes_learns_from_the_one_it_overlaps_most():
    # gt2 [0,0,18,20] (centre (9,10)): candidates 0, 1 (A), 4, 5 (B) with IoUs 0.278, 0.211, 0.9, 0;
    # threshold 0.347 + 0.387 = 0.734 -> prior 4 again. Prior 4 has IoU 1.0 with gt1, 0.9 with gt2 -> gt1.
    gts = torch.tensor([[0.0, 0.0, 18.0, 20.0], [0.0, 0.0, 20.0, 20.0]])
    res = assigner().assign(PRIORS, LEVELS, gts, torch.tensor([0, 1]))
    assert res.gt_inds.tolist() == [0, 0, 0, 0, 2, 0]
    assert res.labels[4] == 1


def test_a_candidate_whose_centre_lies_outside_the_box_is_not_positive():
    # One level, topk 6 (all): gt [0,0,20,9]. Prior 0 [0,0,20,19] (centre y 9.5: outside) and prior 1
    # [0,0,10,10] (centre (5,5)) both have IoU 9/19 = 0.474; four far priors have IoU 0. Mean 0.158 +
    # std 0.245 = 0.402: both pass the IoU test, only prior 1 is inside.
    priors = torch.tensor([[0.0, 0.0, 20.0, 19.0], [0.0, 0.0, 10.0, 10.0]]
                          + [[60.0 + 10 * i, 0.0, 70.0 + 10 * i, 10.0] for i in range(4)])
    res = TASK_UTILS.build(dict(type="ATSSAssigner", topk=6)).assign(
        priors, [6], torch.tensor([[0.0, 0.0, 20.0, 9.0]]), torch.tensor([0]))
    assert res.gt_inds.tolist() == [0, 1, 0, 0, 0, 0]


def test_no_ground_truth_makes_every_prior_negative():
    res = assigner().assign(PRIORS, LEVELS, torch.zeros(0, 4), torch.zeros(0, dtype=torch.long))
    assert res.gt_inds.tolist() == [0] * 6 and res.num_gts == 0


def test_priors_inside_an_ignore_region_are_ignored():
    res = assigner(ignore_iof_thr=0.5).assign(
        PRIORS, LEVELS, torch.tensor([[0.0, 0.0, 20.0, 20.0]]), torch.tensor([0]),
        gt_bboxes_ignore=torch.tensor([[29.0, 0.0, 41.0, 11.0]]))
    assert res.gt_inds.tolist() == [0, 0, 0, -1, 1, 0]  # prior 3 lies wholly in the region, prior 5 half


def test_bad_arguments_are_refused():
    with pytest.raises(NotImplementedError, match="alpha"):
        TASK_UTILS.build(dict(type="ATSSAssigner", topk=9, alpha=0.8))
    with pytest.raises(NotImplementedError, match="BboxOverlaps2D"):
        TASK_UTILS.build(dict(type="ATSSAssigner", topk=9, iou_calculator=dict(type="BboxOverlaps3D")))
    with pytest.raises(ValueError, match="sum to 5"):
        assigner().assign(PRIORS, [4, 1], torch.tensor([[0.0, 0.0, 20.0, 20.0]]))


def atss_head():
    return MODELS.build(dict(
        type="ATSSHead", num_classes=2, in_channels=8, feat_channels=8, stacked_convs=1, norm_cfg=None,
        anchor_generator=dict(type="AnchorGenerator", ratios=[1.0], octave_base_scale=2, scales_per_octave=1,
                              strides=[8]),
        bbox_coder=dict(type="DeltaXYWHBBoxCoder", target_means=[0.0] * 4, target_stds=[0.1, 0.1, 0.2, 0.2]),
        train_cfg=dict(assigner=dict(type="ATSSAssigner", topk=9), allowed_border=-1, pos_weight=-1),
        test_cfg=dict(score_thr=0.05, nms_pre=100, min_bbox_size=0, nms=dict(type="nms", iou_threshold=0.6),
                      max_per_img=10),
    ))


def test_atss_head_losses_have_their_hand_computed_values():
    """4×4 anchors 16×16 centred on (8x, 8y); a gt equal to the anchor of cell (1, 1): [0,0,16,16]."""
    h = atss_head()
    gt, lab = torch.tensor([[0.0, 0.0, 16.0, 16.0]]), torch.tensor([1])
    cls = torch.zeros(1, 2, 4, 4)
    reg = torch.zeros(1, 4, 4, 4)  # zero deltas: each anchor predicts itself
    ctr = torch.zeros(1, 1, 4, 4)
    losses = h.loss_by_feat([cls], [reg], [ctr], [gt], [lab], [dict(img_shape=(32, 32))])
    anchors = h.prior_generator.grid_priors([(4, 4)])[0]
    labels, _, _, num_pos = h.atss_targets([anchors], [gt], [lab])
    pos = (labels[0] < 2).nonzero().flatten().tolist()
    # The 9 closest anchors' IoUs with the gt: 1 (cell (1,1)), 1/3 ×4 (edge neighbours), 1/7 ×4 (corners):
    # mean 0.323, std 0.271 -> threshold 0.594: only the anchor equal to the gt is positive.
    assert pos == [5] and num_pos == 1
    ln2 = math.log(2)
    # focal at p=0.5 over 16 anchors × 2 classes, 1 positive element; / 1 positive
    assert losses["loss_cls"].item() == pytest.approx(0.0625 * ln2 + 31 * 0.1875 * ln2, rel=1e-5)
    assert losses["loss_bbox"].item() == pytest.approx(0.0, abs=1e-5)  # GIoU of identical boxes
    # centerness target 1 (the anchor centre is the gt centre); BCE(0, 1) = ln 2
    assert losses["loss_centerness"].item() == pytest.approx(ln2, rel=1e-5)


def test_atss_head_refuses_options_it_cannot_honour():
    with pytest.raises(NotImplementedError, match="allowed_border=0"):
        MODELS.build(dict(type="ATSSHead", num_classes=2, in_channels=8, feat_channels=8, stacked_convs=1,
                          norm_cfg=None, train_cfg=dict(assigner=dict(type="ATSSAssigner", topk=9),
                                                        allowed_border=0)))
    with pytest.raises(NotImplementedError, match="conv_cfg"):
        MODELS.build(dict(type="ATSSHead", num_classes=2, in_channels=8, conv_cfg=dict(type="DCN")))
