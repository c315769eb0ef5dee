"""AnchorHead targets and test_cfg post-processing on hand-made head outputs."""

from __future__ import annotations

import math

import torch

from kiln.models import build_head


def _head(test_cfg=None, train_cfg=None, num_classes=2):
    return build_head(
        dict(
            type="AnchorHead",
            num_classes=num_classes,
            in_channels=4,
            anchor_generator=dict(type="AnchorGenerator", scales=[2], ratios=[1.0], strides=[8]),
            loss_cls=dict(type="FocalLoss"),
            train_cfg=train_cfg,
            test_cfg=test_cfg,
        )
    )


def _logit(p):
    return math.log(p / (1 - p))


def _outputs(probs):
    """One level of 2x2 locations, 1 anchor, 2 classes; zero deltas (boxes = anchors)."""
    cls = torch.full((1, 2, 2, 2), -20.0)
    for (y, x, c), p in probs.items():
        cls[0, c, y, x] = _logit(p)
    return [cls], [torch.zeros(1, 4, 2, 2)]


META = [dict(img_shape=(16, 16))]


def test_score_threshold_nms_pre_and_max_per_img():
    probs = {(0, 0, 0): 0.9, (0, 1, 0): 0.8, (1, 0, 1): 0.7, (1, 1, 1): 0.04}
    cfg = dict(nms_pre=10, score_thr=0.05, nms=dict(type="nms", iou_threshold=0.5), max_per_img=10)
    res = _head(cfg).predict_by_feat(*_outputs(probs), META)[0]
    assert torch.allclose(res["scores"], torch.tensor([0.9, 0.8, 0.7]))
    assert res["labels"].tolist() == [0, 0, 1]
    # anchor (y=0, x=1): 16x16 box centred on (8, 0), clipped to the 16x16 image
    assert res["boxes"][1].tolist() == [0.0, 0.0, 16.0, 8.0]
    top1 = _head(dict(cfg, nms_pre=1)).predict_by_feat(*_outputs(probs), META)[0]
    assert top1["scores"].tolist() == [torch.tensor(0.9).item()]
    two = _head(dict(cfg, max_per_img=2)).predict_by_feat(*_outputs(probs), META)[0]
    assert len(two["scores"]) == 2


def test_nms_removes_overlapping_boxes_of_the_same_class_only():
    probs = {(0, 0, 0): 0.9, (0, 0, 1): 0.6}  # same box, two classes
    cls, reg = _outputs(probs)
    cls[0][0, 0, 0, 1] = _logit(0.8)  # neighbour of class 0: IoU 0.5 with (0, 0) after clipping
    cfg = dict(score_thr=0.05, nms=dict(type="nms", iou_thr=0.3), max_per_img=10)
    res = _head(cfg).predict_by_feat(cls, reg, META)[0]
    assert sorted(zip(res["labels"].tolist(), [round(s, 2) for s in res["scores"].tolist()])) == [
        (0, 0.9),
        (1, 0.6),
    ]


def test_min_bbox_size_drops_small_boxes():
    probs = {(0, 0, 0): 0.9, (1, 1, 0): 0.8}
    cfg = dict(score_thr=0.05, min_bbox_size=9, nms=dict(type="nms", iou_threshold=0.5))
    res = _head(cfg).predict_by_feat(*_outputs(probs), META)[0]
    # (0,0) is clipped to 8x8 and dropped; (1,1) is 16x16
    assert res["scores"].tolist() == [torch.tensor(0.8).item()]


def test_allowed_border_excludes_anchors_outside_the_image_from_the_loss():
    train_cfg = dict(assigner=dict(type="MaxIoUAssigner", pos_iou_thr=0.5, neg_iou_thr=0.4), allowed_border=0)
    head = _head(train_cfg=train_cfg)
    anchors = torch.cat(head.prior_generator.grid_priors([(2, 2)]))
    labels, label_w, _, box_w, num_pos, num_neg = head.get_targets(
        anchors, [torch.tensor([[2.0, 2.0, 14.0, 14.0]])], [torch.tensor([1])], [dict(img_shape=(24, 24))]
    )
    # only anchor (1, 1) = [0, 0, 16, 16] lies inside the 24x24 image; it matches the object
    assert label_w[0].tolist() == [0.0, 0.0, 0.0, 1.0] and labels[0].tolist() == [2, 2, 2, 1]
    assert (num_pos, num_neg) == (1, 0) and box_w[0, 3].tolist() == [1.0] * 4


def test_a_sampler_limits_the_anchors_that_get_a_loss_and_sets_the_normaliser():
    torch.manual_seed(0)
    train_cfg = dict(assigner=dict(type="MaxIoUAssigner", pos_iou_thr=0.5, neg_iou_thr=0.4),
                     sampler=dict(type="RandomSampler", num=3, pos_fraction=0.5, add_gt_as_proposals=False))
    head = build_head(dict(
        type="AnchorHead", num_classes=2, in_channels=4,
        anchor_generator=dict(type="AnchorGenerator", scales=[2], ratios=[1.0], strides=[8]),
        loss_cls=dict(type="CrossEntropyLoss", use_sigmoid=True, reduction="mean"), train_cfg=train_cfg))
    gt, labels = [torch.tensor([[0.0, 0.0, 8.0, 8.0]])], [torch.tensor([0])]
    anchors = torch.cat(head.prior_generator.grid_priors([(4, 4)]))
    _, label_w, _, _, num_pos, num_neg = head.get_targets(anchors, gt, labels, [dict(img_shape=(32, 32))])
    assert (num_pos, num_neg) == (1, 2) and int((label_w > 0).sum()) == 3
    cls = [torch.zeros(1, 2, 4, 4)]  # every logit 0: BCE of log(2) per class and anchor
    losses = head.loss_by_feat(cls, [torch.zeros(1, 4, 4, 4)], gt, labels, [dict(img_shape=(32, 32))])
    # summed over the 3 sampled anchors x 2 classes, divided by avg_factor = pos + neg = 3
    assert torch.allclose(losses["loss_cls"], torch.tensor(2 * math.log(2)), atol=1e-5)
