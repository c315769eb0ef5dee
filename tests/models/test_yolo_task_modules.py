"""YOLOv3's anchors, box coder, grid assigner and losses on small cases computed by hand.

The layout used throughout: one level of stride 32 on a 1×2 grid with two anchor sizes per cell, 32×32 and
64×32, so the anchors are (cell 0) p0 = [0, 0, 32, 32], p1 = [-16, 0, 48, 32] and (cell 1)
p2 = [32, 0, 64, 32], p3 = [16, 0, 80, 32].
"""

from __future__ import annotations

import math

import pytest
import torch

from kiln.models.dense_heads import YOLOV3Head
from kiln.models.task_modules import GridAssigner, YOLOAnchorGenerator, YOLOBBoxCoder

SIZES = [[(32, 32), (64, 32)]]
ANCHORS = torch.tensor([[0.0, 0, 32, 32], [-16, 0, 48, 32], [32, 0, 64, 32], [16, 0, 80, 32]])


def _assign(gt, flags):
    assigner = GridAssigner(pos_iou_thr=0.5, neg_iou_thr=0.5, min_pos_iou=0)
    return assigner.assign(ANCHORS, torch.tensor([gt]), None, torch.tensor([1]),
                           responsible_flags=torch.tensor(flags, dtype=torch.bool))


def test_yolo_anchors_are_centred_on_cells_in_y_x_anchor_order():
    g = YOLOAnchorGenerator(strides=[32], base_sizes=SIZES)
    assert torch.equal(g.grid_priors([(1, 2)])[0], ANCHORS)
    assert g.num_base_anchors == [2]


def test_yolo_anchor_generator_refuses_uneven_levels():
    with pytest.raises(ValueError, match="same number of anchors"):
        YOLOAnchorGenerator(strides=[32, 16], base_sizes=[[(1, 2), (3, 4)], [(5, 6)]])


def test_yolo_coder_encodes_cell_offset_and_log_size():
    coder = YOLOBBoxCoder()
    # anchor centre (48, 16), 32×32; gt [30, 0, 62, 32]: centre (46, 16), 32×32 → tx = -2/32 + 0.5
    # gt [40, 8, 104, 24]: centre (72, 16), 64×16 → tx = 24/32 + 0.5 clamps to 1 - eps,
    # tw = log 2, th = log 1/2
    anchors = ANCHORS[[2, 2]]
    gts = torch.tensor([[30.0, 0, 62, 32], [40, 8, 104, 24]])
    t = coder.encode(anchors, gts, torch.tensor([32.0, 32.0]))
    expected = torch.tensor([[0.4375, 0.5, 0.0, 0.0], [1 - 1e-6, 0.5, math.log(2), math.log(0.5)]])
    assert torch.allclose(t, expected, atol=1e-6)


def test_yolo_coder_decodes_sigmoid_offsets_and_exp_sizes():
    coder = YOLOBBoxCoder()
    # (0.75 - 0.5) · 32 = +8 px in x; size × e^log2 = 64 wide, × e^0 = 32 tall, around (56, 16)
    out = coder.decode(ANCHORS[2:3], torch.tensor([[0.75, 0.5, math.log(2), 0.0]]), 32)
    assert torch.allclose(out, torch.tensor([[24.0, 0, 88, 32]]))


def test_grid_assigner_takes_positives_only_in_the_centre_cell_and_counts_iou_half_as_negative():
    # gt [30, 0, 62, 32] has its centre in cell 1. IoUs: p0 64/1984, p1 576/2496, p2 960/1088 = 0.88,
    # p3 1024/2048 = 0.5 exactly: negative, as MMDetection's `<=` neg_iou_thr says.
    r = _assign([30.0, 0, 62, 32], [0, 0, 1, 1])
    assert r.gt_inds.tolist() == [0, 0, 1, 0]
    assert r.labels.tolist() == [-1, -1, 1, -1]


def test_grid_assigner_ignores_good_anchors_outside_the_centre_cell():
    # gt [0, 0, 66, 32], centre x = 33 → cell 1. p1 (cell 0) has IoU 1536/2624 = 0.585 > 0.5: not a
    # negative, and not responsible, so ignored (-1). p3 (cell 1): 1600/2560 = 0.625 → positive.
    r = _assign([0.0, 0, 66, 32], [0, 0, 1, 1])
    assert r.gt_inds.tolist() == [0, -1, 0, 1]


def test_grid_assigner_gives_every_object_its_best_responsible_anchor():
    # A small gt [40, 0, 56, 12] overlaps nothing above 0.5; its best responsible anchor p2 (IoU 0.1875)
    # becomes positive anyway (min_pos_iou=0).
    r = _assign([40.0, 0, 56, 12], [0, 0, 1, 1])
    assert r.gt_inds.tolist() == [0, 0, 1, 0]


def test_grid_assigner_with_no_objects_makes_everything_negative():
    assigner = GridAssigner(pos_iou_thr=0.5, neg_iou_thr=0.5)
    r = assigner.assign(ANCHORS, torch.zeros((0, 4)), None, torch.zeros(0, dtype=torch.long),
                        responsible_flags=torch.zeros(4, dtype=torch.bool))
    assert r.gt_inds.tolist() == [0, 0, 0, 0]


def _head(**kw):
    return YOLOV3Head(
        num_classes=2, in_channels=[4], out_channels=[4],
        anchor_generator=dict(type="YOLOAnchorGenerator", strides=[32], base_sizes=SIZES),
        featmap_strides=[32],
        loss_cls=dict(type="CrossEntropyLoss", use_sigmoid=True, loss_weight=1.0, reduction="sum"),
        loss_conf=dict(type="CrossEntropyLoss", use_sigmoid=True, loss_weight=1.0, reduction="sum"),
        loss_xy=dict(type="CrossEntropyLoss", use_sigmoid=True, loss_weight=2.0, reduction="sum"),
        loss_wh=dict(type="MSELoss", loss_weight=2.0, reduction="sum"),
        train_cfg=dict(assigner=dict(type="GridAssigner", pos_iou_thr=0.5, neg_iou_thr=0.5, min_pos_iou=0)),
        test_cfg=dict(nms_pre=1000, min_bbox_size=0, score_thr=0.05, conf_thr=0.005,
                      nms=dict(type="nms", iou_threshold=0.45), max_per_img=100),
        **kw,
    )


def test_responsible_flags_mark_the_anchors_of_each_centre_cell():
    head = _head()
    flags = head.responsible_flags([(1, 2)], torch.tensor([[30.0, 0, 62, 32]]), torch.device("cpu"))
    assert flags.tolist() == [False, False, True, True]


def test_yolo_losses_on_a_hand_computed_case():
    head = _head()
    # Channels per cell: anchor-major, 7 attributes (tx, ty, tw, th, obj, cls0, cls1). Everything is a zero
    # logit except p2 (cell 1, anchor 0): tx logit 1, tw 0.5, th -1.
    pred = torch.zeros(1, 14, 1, 2)
    pred[0, 0, 0, 1] = 1.0
    pred[0, 2, 0, 1] = 0.5
    pred[0, 3, 0, 1] = -1.0
    losses = head.loss_by_feat([pred], [torch.tensor([[30.0, 0, 62, 32]])], [torch.tensor([1])])
    log2 = math.log(2)  # BCE of a zero logit, whatever the target
    s = 1 / (1 + math.exp(-1))
    bce_tx = -(0.4375 * math.log(s) + 0.5625 * math.log(1 - s))  # target tx = 0.4375 (see the coder test)
    # p2 is the only positive; p0, p1, p3 are negatives, so objectness counts all four anchors.
    assert losses["loss_cls"].item() == pytest.approx(2 * log2, rel=1e-5)
    assert losses["loss_conf"].item() == pytest.approx(4 * log2, rel=1e-5)
    assert losses["loss_xy"].item() == pytest.approx(2.0 * (bce_tx + log2), rel=1e-5)
    assert losses["loss_wh"].item() == pytest.approx(2.0 * (0.5**2 + 1.0**2), rel=1e-5)


def test_label_smoothing_moves_class_targets_off_zero_and_one():
    head = _head(one_hot_smoother=0.1)
    target, neg = head.get_targets([torch.zeros(1, 14, 1, 2)], [torch.tensor([[30.0, 0, 62, 32]])],
                                   [torch.tensor([1])])
    assert target[0, 2, 5:].tolist() == pytest.approx([0.05, 0.95])
    assert neg[0].tolist() == [1, 1, 0, 1]


def test_yolo_prediction_scores_are_class_times_objectness():
    head = _head().eval()
    pred = torch.full((1, 14, 1, 2), -20.0)
    # p2: centre offsets at the sigmoid's midpoint, sizes as the anchor → exactly anchor p2;
    # objectness logit 2, class-1 logit 1.
    pred[0, 0:4, 0, 1] = 0.0
    pred[0, 4, 0, 1] = 2.0
    pred[0, 6, 0, 1] = 1.0
    meta = dict(img_shape=(32, 64, 3))
    (res,) = head.predict_by_feat([pred], [meta])
    sig = torch.sigmoid
    assert res["boxes"].tolist() == [[32.0, 0.0, 64.0, 32.0]]
    assert res["labels"].tolist() == [1]
    assert res["scores"].item() == pytest.approx((sig(torch.tensor(1.0)) * sig(torch.tensor(2.0))).item())


def test_yolo_head_refuses_an_unknown_activation():
    with pytest.raises(ValueError, match="LeakyReLU"):
        _head(act_cfg=dict(type="ReLU"))
