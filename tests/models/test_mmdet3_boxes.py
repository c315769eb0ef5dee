"""Zero-area boxes never survive: RPN proposals and final detections keep only w > 0 and h > 0
whatever ``min_bbox_size`` says (MMDetection's filter with ``min_bbox_size=0``)."""

from __future__ import annotations

import torch

from kiln.models.roi_heads import multiclass_nms
from kiln.registry import MODELS

NMS = dict(type="nms", iou_threshold=0.7)


def _rpn() -> torch.nn.Module:
    return MODELS.build(dict(
        type="RPNHead", in_channels=4, feat_channels=4,
        anchor_generator=dict(type="AnchorGenerator", scales=[2], ratios=[1.0], strides=[8])))


def _degenerate(boxes: torch.Tensor) -> torch.Tensor:
    return ((boxes[:, 2] - boxes[:, 0]) <= 0) | ((boxes[:, 3] - boxes[:, 1]) <= 0)


def test_rpn_proposals_drop_boxes_clipped_to_zero_area_even_with_min_bbox_size_zero():
    # A 16×16 image in a batch padded to 64×64: anchors centred in the padding clip to zero width or
    # height at the image border, and with equal scores they are not suppressed by NMS first.
    head = _rpn()
    cls = [torch.zeros(1, 1, 8, 8)]
    reg = [torch.zeros(1, 4, 8, 8)]
    anchors = head.anchor_generator.grid_priors([(8, 8)], device="cpu")[0]
    raw = head.bbox_coder.decode(anchors, torch.zeros(64, 4), max_shape=(16, 16))
    assert int(_degenerate(raw).sum()) > 20  # the case really produces degenerate boxes
    for cfg in (dict(nms=NMS, nms_pre=1000, max_per_img=1000, min_bbox_size=0),
                dict(nms=NMS, nms_pre=1000, max_per_img=1000, min_bbox_size=-1),
                dict(nms=dict(type="nms", iou_threshold=1.0), nms_pre=1000, max_per_img=1000)):
        boxes, scores = head.get_proposals(cls, reg, [(16, 16)], cfg)[0]
        assert len(boxes) > 0 and not _degenerate(boxes).any(), cfg


def test_rpn_min_bbox_size_above_zero_still_drops_small_boxes():
    head = _rpn()
    cls, reg = [torch.zeros(1, 1, 8, 8)], [torch.zeros(1, 4, 8, 8)]
    cfg = dict(nms=dict(type="nms", iou_threshold=1.0), nms_pre=1000, max_per_img=1000, min_bbox_size=12)
    boxes, _ = head.get_proposals(cls, reg, [(64, 64)], cfg)[0]
    wh = boxes[:, 2:] - boxes[:, :2]
    assert len(boxes) > 0 and bool((wh > 12).all())


def test_final_detections_drop_zero_area_boxes():
    boxes = torch.tensor([[0.0, 0.0, 10.0, 10.0], [5.0, 5.0, 5.0, 20.0], [30.0, 8.0, 40.0, 8.0]])
    scores = torch.tensor([[0.6], [0.9], [0.8]])
    out_boxes, out_scores, labels = multiclass_nms(boxes, scores, 0.05, 0.5, 100)
    assert out_boxes.tolist() == [[0.0, 0.0, 10.0, 10.0]]
    assert out_scores.tolist() == [0.6000000238418579] and labels.tolist() == [0]


def test_single_stage_detections_drop_zero_area_boxes():
    head = MODELS.build(dict(
        type="RetinaHead", num_classes=2, in_channels=4, feat_channels=4, stacked_convs=1,
        anchor_generator=dict(type="AnchorGenerator", octave_base_scale=2, scales_per_octave=1,
                              ratios=[1.0], strides=[8]),
        test_cfg=dict(nms_pre=1000, min_bbox_size=0, score_thr=0.0, nms=dict(type="nms", iou_threshold=1.0),
                      max_per_img=1000)))
    cls, reg = [torch.zeros(1, 2, 8, 8)], [torch.zeros(1, 4, 8, 8)]
    meta = dict(img_shape=(16, 16))
    dets = head.predict_by_feat(cls, reg, [meta])[0]
    assert len(dets["boxes"]) > 0 and not _degenerate(dets["boxes"]).any()
