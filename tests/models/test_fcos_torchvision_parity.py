"""kiln's FCOS against torchvision's ``fcos_resnet50_fpn`` (random init, weights mapped across): same
inputs give the same head outputs, the same foreground assignment, the same classification and
centerness losses, and the same post-processed boxes.

torchvision's FCOS is MMDetection's ``center-normbbox-centeronreg-giou`` variant with the prior points at
the top-left corner of each cell (``prior_offset=0``), no per-level Scale (kiln's start at 1) and convs
with bias before GroupNorm (``conv_bias=True``). Where the definitions differ the test says so: the box
loss (torchvision: plain GIoU sum / #fg; MMDetection: weighted by centerness targets) and the test score
(torchvision: ``sqrt(cls·ctr)``, MMDetection: ``cls·ctr``, a monotone change, so NMS keeps the same boxes).
"""

from __future__ import annotations

import re

import pytest
import torch
from torchvision.models.detection import fcos_resnet50_fpn

from kiln.models import build_detector

NUM_CLASSES = 3
SIZE = 256


def kiln_fcos(**test_cfg):
    return build_detector(dict(
        type="FCOS",
        backbone=dict(type="ResNet", depth=50, out_indices=(0, 1, 2, 3), frozen_stages=-1, norm_eval=False,
                      norm_cfg=dict(type="BN", requires_grad=True), style="pytorch"),
        neck=dict(type="FPN", in_channels=[256, 512, 1024, 2048], out_channels=256, start_level=1,
                  add_extra_convs="on_output", num_outs=5, relu_before_extra_convs=True),
        bbox_head=dict(type="FCOSHead", num_classes=NUM_CLASSES, in_channels=256, feat_channels=256,
                       strides=[8, 16, 32, 64, 128], norm_on_bbox=True, centerness_on_reg=True,
                       center_sampling=True, center_sample_radius=1.5, conv_bias=True, prior_offset=0.0,
                       loss_bbox=dict(type="GIoULoss", loss_weight=1.0)),
        test_cfg=dict(nms_pre=100000, score_thr=0.0, min_bbox_size=-1,
                      nms=dict(type="nms", iou_threshold=0.6), max_per_img=100, **test_cfg),
    ))


def tv_to_kiln(state):
    """torchvision FCOS names -> MMDetection's (the head's Sequential is conv, GN, ReLU per layer)."""
    out = {}
    for key, value in state.items():
        k = key
        if k.startswith("backbone.body."):
            k = "backbone." + k[len("backbone.body."):]
        elif m := re.match(r"backbone\.fpn\.(inner|layer)_blocks\.(\d)\.0\.(\w+)$", k):
            kind = "lateral_convs" if m.group(1) == "inner" else "fpn_convs"
            k = f"neck.{kind}.{m.group(2)}.conv.{m.group(3)}"
        elif m := re.match(r"backbone\.fpn\.extra_blocks\.p([67])\.(\w+)$", k):
            k = f"neck.fpn_convs.{int(m.group(1)) - 3}.conv.{m.group(2)}"
        elif m := re.match(r"head\.(classification|regression)_head\.conv\.(\d+)\.(\w+)$", k):
            tower = "cls_convs" if m.group(1) == "classification" else "reg_convs"
            idx = int(m.group(2))
            k = f"bbox_head.{tower}.{idx // 3}.{'conv' if idx % 3 == 0 else 'gn'}.{m.group(3)}"
        else:
            k = {
                "head.classification_head.cls_logits": "bbox_head.conv_cls",
                "head.regression_head.bbox_reg": "bbox_head.conv_reg",
                "head.regression_head.bbox_ctrness": "bbox_head.conv_centerness",
            }[k.rsplit(".", 1)[0]] + "." + k.rsplit(".", 1)[1]
        out[k] = value
    return out


@pytest.fixture(scope="module")
def pair():
    torch.manual_seed(0)
    tv = fcos_resnet50_fpn(weights=None, weights_backbone=None, num_classes=NUM_CLASSES, min_size=SIZE,
                           max_size=SIZE, image_mean=[0.0, 0.0, 0.0], image_std=[1.0, 1.0, 1.0],
                           score_thresh=0.0, topk_candidates=100000, nms_thresh=0.6, detections_per_img=100)
    # Non-trivial predictor biases so the outputs are not near-constant.
    for conv in (tv.head.classification_head.cls_logits, tv.head.regression_head.bbox_reg,
                 tv.head.regression_head.bbox_ctrness):
        torch.nn.init.normal_(conv.weight, std=0.02)
        torch.nn.init.normal_(conv.bias, std=0.5)
    model = kiln_fcos()
    missing, unexpected = model.load_state_dict(tv_to_kiln(tv.state_dict()), strict=False)
    assert unexpected == [] and sorted(missing) == [f"bbox_head.scales.{i}.scale" for i in range(5)]
    g = torch.Generator().manual_seed(1)
    images = [torch.rand(3, SIZE, SIZE, generator=g) * 2 - 1 for _ in range(2)]
    # Float boxes of distinct areas (ties in the smallest-area rule would be broken by index order).
    boxes = [torch.tensor([[20.3, 30.1, 90.7, 120.2], [100.2, 60.4, 230.9, 200.3],
                           [40.5, 150.8, 70.1, 190.6]]),
             torch.tensor([[10.1, 10.2, 250.3, 240.7], [120.6, 130.3, 180.2, 170.9]])]
    labels = [torch.tensor([0, 2, 1]), torch.tensor([1, 0])]
    return tv, model, images, boxes, labels


def kiln_batch(images, boxes=None, labels=None):
    batch = []
    for i, img in enumerate(images):
        meta = dict(ori_shape=(SIZE, SIZE, 3), img_shape=(SIZE, SIZE, 3), pad_shape=(SIZE, SIZE, 3),
                    scale_factor=torch.ones(4).numpy(), flip=False)
        item = {"img": img, "img_metas": meta}
        if boxes is not None:
            item.update(gt_bboxes=boxes[i], gt_labels=labels[i])
        batch.append(item)
    return batch


def test_head_outputs_match(pair):
    tv, model, images, _, _ = pair
    tv.eval()
    model.eval()
    x = torch.stack(images)
    with torch.no_grad():
        feats_tv = list(tv.backbone(x).values())
        feats = model.extract_feat(x)
        assert len(feats) == len(feats_tv) == 5
        for a, b in zip(feats, feats_tv):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)
        out_tv = tv.head(feats_tv)
        cls, reg, ctr = model.bbox_head(feats)
    flat = lambda maps, c: torch.cat([m.permute(0, 2, 3, 1).reshape(2, -1, c) for m in maps], 1)  # noqa: E731
    torch.testing.assert_close(flat(cls, NUM_CLASSES), out_tv["cls_logits"], rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(flat(ctr, 1), out_tv["bbox_ctrness"], rtol=1e-4, atol=1e-4)
    # kiln's eval-mode distances are in pixels; torchvision's are in units of the anchor size (= stride).
    strides = torch.cat([torch.full((m.shape[-2] * m.shape[-1],), s)
                         for m, s in zip(reg, [8, 16, 32, 64, 128])])
    torch.testing.assert_close(flat(reg, 4) / strides[None, :, None], out_tv["bbox_regression"],
                               rtol=1e-4, atol=1e-4)


def test_foreground_and_losses_match_where_defined_alike(pair):
    tv, model, images, boxes, labels = pair
    tv.train()
    model.train()
    captured = {}
    compute_loss = tv.head.compute_loss

    def capture(targets, head_outputs, anchors, matched_idxs):
        captured["matched"] = torch.stack(matched_idxs)
        return compute_loss(targets, head_outputs, anchors, matched_idxs)

    tv.head.compute_loss = capture
    torch.manual_seed(0)
    losses_tv = tv(images, [{"boxes": b, "labels": lab} for b, lab in zip(boxes, labels)])
    torch.manual_seed(0)
    losses = model(kiln_batch(images, boxes, labels))

    # Foreground: the same points learn the same classes (kiln's targets are level-major, image-minor).
    sizes = [(SIZE // s, SIZE // s) for s in (8, 16, 32, 64, 128)]
    pts = model.bbox_head.points(sizes, images[0])
    lab_lvl, _ = model.bbox_head.get_targets(pts, boxes, labels)
    per_img = [torch.cat([lab.view(2, -1)[i] for lab in lab_lvl]) for i in range(2)]
    matched = captured["matched"]
    for i in range(2):
        expected = torch.where(matched[i] >= 0, labels[i][matched[i].clamp(min=0)], NUM_CLASSES)
        assert torch.equal(per_img[i], expected)
    assert (matched >= 0).sum() > 20  # the case exercises many positives on several levels

    torch.testing.assert_close(losses["loss_cls"], losses_tv["classification"], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(losses["loss_centerness"], losses_tv["bbox_ctrness"], rtol=1e-4, atol=1e-5)
    # Box loss: both are GIoU over the same positives; MMDetection weights each by its centerness target.
    assert torch.isfinite(losses["loss_bbox"]) and losses["loss_bbox"] > 0


def test_post_processed_boxes_match(pair):
    tv, model, images, _, _ = pair
    tv.eval()
    model.eval()
    with torch.no_grad():
        dets_tv = tv(images)
        dets = model(kiln_batch(images))
    for d, t in zip(dets, dets_tv):
        assert len(d["boxes"]) == len(t["boxes"]) == 100
        torch.testing.assert_close(d["boxes"], t["boxes"], rtol=1e-4, atol=1e-3)
        assert torch.equal(d["labels"], t["labels"])
        torch.testing.assert_close(d["scores"], t["scores"] ** 2, rtol=1e-4, atol=1e-6)


def test_torchvision_fcos_checkpoints_convert_and_load_into_the_shipped_config():
    from kiln.checkpoint_convert import to_kiln_names
    from kiln.checkpoint_convert.torchvision import COCO91_TO_80

    tv = fcos_resnet50_fpn(weights=None, weights_backbone=None, num_classes=91)  # torchvision's COCO layout
    state, layout, notes = to_kiln_names(tv.state_dict())
    assert layout == "torchvision_detection" and any("prior_offset=0" in n for n in notes)
    from kiln.config import Config

    cfg = Config.fromfile("kiln::torchvision/fcos_resnet50_fpn_coco.py").model  # the shipped spelling
    model = build_detector(cfg)
    missing, unexpected = model.load_state_dict(state, strict=False)
    assert unexpected == [] and sorted(missing) == [f"bbox_head.scales.{i}.scale" for i in range(5)]
    cls = tv.head.classification_head.cls_logits
    assert torch.equal(model.bbox_head.conv_cls.weight, cls.weight[list(COCO91_TO_80)])
    assert torch.equal(model.bbox_head.cls_convs[2].gn.weight, tv.head.classification_head.conv[7].weight)
    assert torch.equal(model.bbox_head.conv_centerness.bias, tv.head.regression_head.bbox_ctrness.bias)
