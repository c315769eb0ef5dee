"""SSD's anchor sizes, and SSDHead's loss (hard negative mining) on a case computed by hand."""

from __future__ import annotations

import math

import pytest
import torch

from kiln.models.dense_heads import SSDHead
from kiln.models.task_modules import SSDAnchorGenerator


def test_ssd300_and_ssd512_anchor_sizes_are_the_published_ones():
    g300 = SSDAnchorGenerator(strides=[8, 16, 32, 64, 100, 300],
                              ratios=[[2], [2, 3], [2, 3], [2, 3], [2], [2]],
                              basesize_ratio_range=(0.15, 0.9), input_size=300)
    assert g300.min_sizes == [21, 45, 99, 153, 207, 261]
    assert g300.max_sizes == [45, 99, 153, 207, 261, 315]
    assert g300.num_base_anchors == [4, 6, 6, 6, 4, 4]
    g512 = SSDAnchorGenerator(strides=[8, 16, 32, 64, 128, 256, 512],
                              ratios=[[2], [2, 3], [2, 3], [2, 3], [2, 3], [2], [2]],
                              basesize_ratio_range=(0.1, 0.9), input_size=512)
    assert g512.min_sizes == [20, 51, 133, 215, 296, 378, 460]
    assert g512.max_sizes == [51, 133, 215, 296, 378, 460, 542]


def test_ssd_anchor_order_is_small_square_big_square_then_wide_and_tall():
    g = SSDAnchorGenerator(strides=[16], ratios=[[2]], min_sizes=[16], max_sizes=[64])
    w = (g.base_anchors[0][:, 2] - g.base_anchors[0][:, 0]).tolist()
    h = (g.base_anchors[0][:, 3] - g.base_anchors[0][:, 1]).tolist()
    r2 = math.sqrt(2)
    assert w == pytest.approx([16, 32, 16 * r2, 16 / r2])
    assert h == pytest.approx([16, 32, 16 / r2, 16 * r2])
    # centred on the cell centre
    a = g.grid_priors([(1, 1)])[0]
    assert ((a[:, :2] + a[:, 2:]) / 2).flatten().tolist() == pytest.approx([8.0] * 8)


def test_ssd_anchor_generator_refuses_an_unpublished_input_size():
    with pytest.raises(ValueError, match="min_sizes and max_sizes"):
        SSDAnchorGenerator(strides=[8, 16, 32], ratios=[[2]] * 3, input_size=320)


def _head():
    # One level, stride 16, on a 1×2 grid: 4 anchors per cell (16 px square, 22.6 px square, wide, tall).
    return SSDHead(
        num_classes=2, in_channels=(4,),
        anchor_generator=dict(type="SSDAnchorGenerator", strides=[16], ratios=[[2]], min_sizes=[16],
                              max_sizes=[32]),
        bbox_coder=dict(type="DeltaXYWHBBoxCoder", target_stds=[0.1, 0.1, 0.2, 0.2]),
        train_cfg=dict(assigner=dict(type="MaxIoUAssigner", pos_iou_thr=0.6, neg_iou_thr=0.6,
                                     min_pos_iou=0.0),
                       smoothl1_beta=1.0, allowed_border=-1, pos_weight=-1, neg_pos_ratio=3),
        test_cfg=dict(nms_pre=1000, nms=dict(type="nms", iou_threshold=0.45), min_bbox_size=0, score_thr=0.02,
                      max_per_img=200),
    )


def test_ssd_loss_mines_the_three_hardest_negatives_per_positive():
    head = _head()
    # The object is exactly anchor 0 (the 16 px square of cell 0): the only positive. The other anchors
    # overlap it below 0.6 (0.5, 0.55, 0.55 in cell 0; nothing in cell 1) and are negatives.
    gt = torch.tensor([[0.0, 0, 16, 16]])
    cls = torch.zeros(1, 4 * 3, 1, 2)  # channel a·3 + j; background is j = 2
    for a, k in enumerate([1.0, 2.0, 3.0, 4.0]):  # cell 1: growing "class 0" logits → harder negatives
        cls[0, a * 3 + 0, 0, 1] = k
    reg = torch.zeros(1, 4 * 4, 1, 2)
    reg[0, 0, 0, 0] = 0.1  # anchor 0's dx; its target is 0
    losses = head.loss_by_feat([cls], [reg], [gt], [torch.tensor([0])], [dict(img_shape=(16, 32, 3))])
    # positive: zero logits → log 3; the 3 hardest negatives are cell 1's k = 4, 3, 2 with
    # CE = log(e^k + 2); the rest (log 3 in cell 0, k = 1) are not counted. One positive: avg_factor 1.
    expected = math.log(3) + sum(math.log(math.exp(k) + 2) for k in (4, 3, 2))
    assert losses["loss_cls"].item() == pytest.approx(expected, rel=1e-5)
    assert losses["loss_bbox"].item() == pytest.approx(0.5 * 0.1**2, rel=1e-4)


def test_ssd_loss_without_objects_counts_no_negatives():
    head = _head()
    cls = torch.randn(1, 12, 1, 2)
    losses = head.loss_by_feat([cls], [torch.randn(1, 16, 1, 2)], [torch.zeros((0, 4))],
                               [torch.zeros(0, dtype=torch.long)], [dict(img_shape=(16, 32, 3))])
    assert losses["loss_cls"].item() == 0.0
    assert losses["loss_bbox"].item() == 0.0


def test_ssd_head_refuses_ssdlite_options():
    with pytest.raises(ValueError, match="SSDLite"):
        SSDHead(num_classes=2, in_channels=(4,), use_depthwise=True)


def test_ssd_batches_are_not_padded_past_their_300_px_input():
    from kiln.models import build_detector

    model = build_detector(dict(
        type="SSD",
        backbone=dict(type="SSDVGG", depth=16, widen_factor=0.125),
        neck=dict(type="SSDNeck", in_channels=(64, 128), out_channels=(64, 128, 64, 32, 32, 32),
                  level_strides=(2, 2, 1, 1), level_paddings=(1, 1, 0, 0)),
        bbox_head=dict(type="SSDHead", num_classes=2, in_channels=(64, 128, 64, 32, 32, 32),
                       anchor_generator=dict(type="SSDAnchorGenerator", input_size=300,
                                             basesize_ratio_range=(0.15, 0.9),
                                             strides=[8, 16, 32, 64, 100, 300],
                                             ratios=[[2], [2, 3], [2, 3], [2, 3], [2], [2]])),
    ))
    batch = [dict(img=torch.zeros(3, 300, 300), img_metas=dict(img_shape=(300, 300, 3)))]
    assert model.preprocess(batch).images.tensor.shape[-2:] == (300, 300)
    feats = model.extract_feat(model.preprocess(batch).images.tensor)
    assert [f.shape[-1] for f in feats] == [38, 19, 10, 5, 3, 1]  # SSD300's published map sizes
