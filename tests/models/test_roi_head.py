"""Shared2FCBBoxHead and StandardRoIHead: targets, class-aware/agnostic losses, post-processing."""

from __future__ import annotations

import pytest
import torch
from torchvision.ops import nms
from twostage_configs import faster_rcnn_cfg, one_thread  # noqa: F401  (fixture)

import kiln.models  # noqa: F401
from kiln.models.roi_heads import Shared2FCBBoxHead, bbox2roi, multiclass_nms
from kiln.registry import MODELS

pytestmark = pytest.mark.usefixtures("one_thread")


def bbox_head(agnostic: bool = False, num_classes: int = 3) -> Shared2FCBBoxHead:
    torch.manual_seed(0)
    return MODELS.build(dict(type="Shared2FCBBoxHead", in_channels=4, fc_out_channels=16, roi_feat_size=7,
                             num_classes=num_classes, reg_class_agnostic=agnostic))


def test_output_sizes_for_class_aware_and_agnostic_regression():
    x = torch.randn(5, 4, 7, 7)
    cls, reg = bbox_head(False)(x)
    assert cls.shape == (5, 4) and reg.shape == (5, 12)  # num_classes + background; 4 per class
    cls, reg = bbox_head(True)(x)
    assert reg.shape == (5, 4)


def test_targets_label_negatives_as_background_and_encode_positives():
    head = bbox_head()
    pos = torch.tensor([[0.0, 0, 10, 10], [5, 5, 20, 25]])
    gt = torch.tensor([[1.0, 1, 11, 12], [4, 6, 22, 24]])
    neg = torch.tensor([[30.0, 30, 40, 40]])
    labels, label_w, targets, target_w = head.get_targets([pos], [neg], [gt], [torch.tensor([2, 0])])
    assert labels.tolist() == [2, 0, 3] and label_w.tolist() == [1, 1, 1]
    torch.testing.assert_close(targets[:2], head.bbox_coder.encode(pos, gt))
    assert target_w[:2].eq(1).all() and target_w[2].eq(0).all()


def test_class_aware_loss_uses_only_the_gt_class_deltas():
    head = bbox_head()
    rois = bbox2roi([torch.tensor([[0.0, 0, 10, 10], [30, 30, 40, 40]])])
    labels = torch.tensor([1, 3])  # one positive of class 1, one background
    label_w = torch.ones(2)
    targets = torch.tensor([[0.5, -0.5, 0.2, 0.1], [0.0, 0, 0, 0]])
    target_w = torch.tensor([[1.0] * 4, [0.0] * 4])
    bbox_pred = torch.randn(2, 12)
    bbox_pred[0, 4:8] = targets[0]  # class 1's slice is exact; the other slices are noise
    losses = head.loss(torch.randn(2, 4), bbox_pred, rois, labels, label_w, targets, target_w)
    assert losses["loss_bbox"].item() == pytest.approx(0.0, abs=1e-7)
    bbox_pred[0, 4] += 1.0
    losses = head.loss(torch.randn(2, 4), bbox_pred, rois, labels, label_w, targets, target_w)
    assert losses["loss_bbox"].item() == pytest.approx(1.0 / 2)  # |1| over 2 sampled RoIs


def test_classification_loss_is_softmax_cross_entropy_over_samples():
    head = bbox_head()
    cls = torch.randn(4, 4)
    labels = torch.tensor([0, 3, 2, 3])
    losses = head.loss(cls, torch.zeros(4, 12), bbox2roi([torch.zeros(4, 4)]), labels, torch.ones(4),
                       torch.zeros(4, 4), torch.zeros(4, 4))
    torch.testing.assert_close(losses["loss_cls"], torch.nn.functional.cross_entropy(cls, labels))
    assert losses["loss_bbox"].item() == 0.0  # no positives, graph still connected
    assert "acc" in losses and "loss" not in "acc"


def test_multiclass_nms_equals_per_class_torchvision_nms():
    g = torch.Generator().manual_seed(0)
    xy = torch.rand(40, 2, generator=g) * 50
    boxes = torch.cat([xy, xy + 10 + torch.rand(40, 2, generator=g) * 20], 1)
    scores = torch.rand(40, 3, generator=g)
    out_boxes, out_scores, out_labels = multiclass_nms(boxes, scores, 0.3, 0.5, max_per_img=1000)
    expected = set()
    for c in range(3):
        keep = scores[:, c] > 0.3
        kept = nms(boxes[keep], scores[keep, c], 0.5)
        expected |= {(c, round(float(s), 6)) for s in scores[keep, c][kept]}
    got = {(int(lab), round(float(s), 6)) for lab, s in zip(out_labels, out_scores)}
    assert got == expected
    assert torch.all(out_scores[:-1] >= out_scores[1:])
    _, capped, _ = multiclass_nms(boxes, scores, 0.3, 0.5, max_per_img=5)
    assert len(capped) == 5


def test_get_bboxes_decodes_per_class_and_clips_to_the_image():
    head = bbox_head()
    rois = bbox2roi([torch.tensor([[10.0, 10, 50, 40]])])
    cls = torch.tensor([[-5.0, 5.0, -5.0, -5.0]])  # confident class 1
    deltas = torch.zeros(1, 12)
    deltas[0, 4:8] = torch.tensor([0.0, 0.0, 2.0, 0.0])  # class 1 box grows wide: exp(0.2·2)
    boxes, scores, labels = head.get_bboxes(rois, cls, deltas, (60, 60),
                                            dict(score_thr=0.05, nms=dict(type="nms", iou_threshold=0.5),
                                                 max_per_img=10))
    assert labels.tolist() == [1]
    assert boxes[0, 0] >= 0 and boxes[0, 2] <= 60
    assert (boxes[0, 2] - boxes[0, 0]) > 40  # wider than the RoI


def roi_head():
    cfg = faster_rcnn_cfg(num_classes=2)
    roi = dict(cfg["roi_head"], train_cfg=cfg["train_cfg"]["rcnn"], test_cfg=cfg["test_cfg"]["rcnn"])
    torch.manual_seed(0)
    return MODELS.build(roi)


def pyramid(batch: int = 2) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return [torch.randn(batch, 16, 64 // s, 64 // s, generator=g) for s in (4, 8, 16, 32, 64)]


def test_standard_roi_head_trains_from_proposals_with_gt_added():
    head = roi_head()
    gts = [torch.tensor([[5.0, 5, 30, 30]]), torch.zeros(0, 4)]
    labels = [torch.tensor([1]), torch.zeros(0, dtype=torch.long)]
    proposals = [torch.tensor([[40.0, 40, 60, 60]]), torch.tensor([[0.0, 0, 20, 20]])]
    samples = head.sample_proposals(proposals, gts, labels)
    assert samples[0].pos_is_gt.tolist() == [1]  # the gt itself is the only positive
    losses = head.forward_train(pyramid(), proposals, gts, labels)
    assert {"loss_cls", "loss_bbox", "acc"} <= set(losses)
    (losses["loss_cls"] + losses["loss_bbox"]).backward()
    assert head.bbox_head.fc_cls.weight.grad.abs().sum() > 0


def test_standard_roi_head_test_returns_per_image_detections():
    head = roi_head().eval()
    proposals = [torch.tensor([[5.0, 5, 30, 30], [10, 10, 50, 60]]), torch.zeros(0, 4)]
    with torch.no_grad():
        dets = head.simple_test(pyramid(), proposals, [(64, 64), (64, 64)],
                                dict(score_thr=0.0, nms=dict(type="nms", iou_threshold=0.5), max_per_img=3))
    assert len(dets) == 2
    assert len(dets[0][0]) == 3 and dets[0][2].max() < 2
    assert len(dets[1][0]) == 0


def test_roi_head_without_train_cfg_cannot_train():
    cfg = faster_rcnn_cfg()
    head = MODELS.build(dict(cfg["roi_head"], test_cfg=cfg["test_cfg"]["rcnn"]))
    with pytest.raises(RuntimeError, match="train_cfg.rcnn"):
        head.forward_train(pyramid(1), [torch.zeros(0, 4)], [torch.zeros(0, 4)], [torch.zeros(0)])


def test_a_mask_roi_extractor_without_a_mask_head_is_rejected_clearly():
    cfg = faster_rcnn_cfg()
    extractor = cfg["roi_head"]["bbox_roi_extractor"]
    with pytest.raises(ValueError, match="mask_roi_extractor is set without a mask_head"):
        MODELS.build(dict(cfg["roi_head"], mask_roi_extractor=extractor))


def test_ohem_sampler_keeps_the_rois_the_box_head_finds_hardest():
    """train_cfg.rcnn.sampler=OHEMSampler (MMDetection's faster_rcnn_r50_fpn_ohem config): the sampled
    negatives are the candidates with the highest classification loss under the current box head."""
    import torch

    from kiln.registry import MODELS

    torch.manual_seed(0)
    head = MODELS.build(dict(
        type="StandardRoIHead",
        bbox_roi_extractor=dict(type="SingleRoIExtractor", roi_layer=dict(type="RoIAlign", output_size=7,
                                                                          sampling_ratio=0),
                                out_channels=4, featmap_strides=[4]),
        bbox_head=dict(type="Shared2FCBBoxHead", in_channels=4, fc_out_channels=8, roi_feat_size=7,
                       num_classes=2),
        train_cfg=dict(assigner=dict(type="MaxIoUAssigner", pos_iou_thr=0.5, neg_iou_thr=0.5,
                                     min_pos_iou=0.5),
                       sampler=dict(type="OHEMSampler", num=4, pos_fraction=0.25, neg_pos_ub=-1,
                                    add_gt_as_proposals=False),
                       pos_weight=-1)))
    feats = [torch.randn(1, 4, 32, 32)]
    gts = [torch.tensor([[0.0, 0, 40, 40]])]
    props = [torch.tensor([[0.0, 0, 40, 40]] + [[x, 60.0, x + 30, 90] for x in range(0, 90, 10)])]
    sample = head.sample_proposals(props, gts, [torch.tensor([1])], feats=feats)[0]
    negs = props[0][1:]
    rois = torch.cat([torch.zeros(len(negs), 1), negs], dim=1)
    with torch.no_grad():
        cls_score, _ = head.bbox_head(head.bbox_roi_extractor(feats, rois))
    losses = torch.nn.functional.cross_entropy(cls_score, torch.full((len(negs),), 2), reduction="none")
    expected = set((losses.topk(3).indices + 1).tolist())  # 3 negatives (background) fill num=4
    assert set(sample.neg_inds.tolist()) == expected and sample.pos_inds.tolist() == [0]
