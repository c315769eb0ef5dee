"""Mask R-CNN against torchvision's ``maskrcnn_resnet50_fpn`` with mapped weights.

torchvision's model is built with random weights (``weights=None``), its BatchNorm statistics and biases
randomised, saved as torchvision saves it and loaded into kiln's Mask R-CNN R50-FPN through
:mod:`kiln.checkpoint_convert` (91 slots with background 0 → COCO's 80 classes). On the same image and
boxes the RoI mask features, the mask logits and the mask probabilities of each detection's class agree
within float tolerance.

Pasting differs by design: torchvision pads each 28×28 mask by one pixel, grows the box to match and
resizes into the box rounded to whole pixels; MMDetection and Detectron2 (and kiln) sample each image
pixel centre inside the exact box. The pasted masks therefore agree up to a one-pixel band along the box
borders, which the last test bounds; the exact paste is checked against Detectron2 in
test_mask_paste_reference.py.
"""

from __future__ import annotations

import pytest
import torch
from torchvision.models.detection import maskrcnn_resnet50_fpn
from torchvision.models.detection.roi_heads import paste_masks_in_image as tv_paste

from kiln.checkpoint_convert import load_into
from kiln.models import build_detector
from kiln.models.roi_heads import bbox2roi, paste_masks_in_image

COCO_IDS = [i for i in range(1, 91) if i not in (12, 26, 29, 30, 45, 66, 68, 69, 71, 83)]
NMS = dict(type="nms", iou_threshold=0.5)


def _tv_style_extractor(size: int) -> dict:
    # torchvision's MultiScaleRoIAlign: sampling_ratio 2, not half-pixel aligned, level = 4 + log2(s/224)
    return dict(type="SingleRoIExtractor",
                roi_layer=dict(type="RoIAlign", output_size=size, sampling_ratio=2, aligned=False),
                out_channels=256, featmap_strides=[4, 8, 16, 32], canonical_box_size=224, canonical_level=4)


def mask_rcnn_tv_cfg() -> dict:
    """kiln's spelling of torchvision's maskrcnn_resnet50_fpn."""
    return dict(
        type="MaskRCNN",
        backbone=dict(type="ResNet", depth=50, out_indices=(0, 1, 2, 3), norm_eval=True, frozen_stages=1),
        neck=dict(type="FPN", in_channels=[256, 512, 1024, 2048], out_channels=256, num_outs=5),
        rpn_head=dict(type="RPNHead", in_channels=256, feat_channels=256,
                      anchor_generator=dict(type="AnchorGenerator", scales=[8], ratios=[0.5, 1.0, 2.0],
                                            strides=[4, 8, 16, 32, 64])),
        roi_head=dict(
            type="StandardRoIHead",
            bbox_roi_extractor=_tv_style_extractor(7),
            bbox_head=dict(type="Shared2FCBBoxHead", in_channels=256, fc_out_channels=1024, roi_feat_size=7,
                           num_classes=80),
            mask_roi_extractor=_tv_style_extractor(14),
            mask_head=dict(type="FCNMaskHead", num_convs=4, in_channels=256, conv_out_channels=256,
                           num_classes=80)),
        test_cfg=dict(rpn=dict(nms_pre=1000, max_per_img=1000, nms=dict(type="nms", iou_threshold=0.7)),
                      rcnn=dict(score_thr=0.05, nms=NMS, max_per_img=100, mask_thr_binary=0.5)))


def _randomize(model: torch.nn.Module) -> None:
    """Non-trivial frozen-BN statistics and distinct biases (torchvision initialises them to constants)."""
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for m in model.modules():
            if hasattr(m, "running_var") and getattr(m, "weight", None) is not None:
                n = m.running_var.numel()
                m.running_mean.copy_(torch.randn(n, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
                m.weight.copy_(torch.rand(n, generator=g) + 0.5)
                m.bias.copy_(torch.randn(n, generator=g) * 0.1)
        for name, p in model.named_parameters():
            if name.endswith("bias"):
                p.copy_(torch.randn(p.shape, generator=g) * 0.1)


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    tv = maskrcnn_resnet50_fpn(weights=None, weights_backbone=None).eval()
    _randomize(tv)
    path = tmp_path_factory.mktemp("tv") / "maskrcnn_resnet50_fpn_coco-bf2d0c1e.pth"
    torch.save(tv.state_dict(), path)
    kiln = build_detector(mask_rcnn_tv_cfg()).eval()
    report = load_into(kiln, str(path))
    x = torch.randn(1, 3, 128, 160, generator=torch.Generator().manual_seed(3))
    boxes = torch.tensor([[10.0, 12.0, 90.0, 100.0], [0.5, 0.0, 40.2, 30.7], [50.0, 20.0, 150.0, 120.0],
                          [100.3, 60.1, 159.0, 127.0]])
    labels = torch.tensor([0, 17, 79, 45])  # kiln's contiguous classes
    with torch.no_grad():
        tv_feats = tv.backbone(x)
        kiln_feats = kiln.extract_feat(x)
    return tv, kiln, report, x, tv_feats, kiln_feats, boxes, labels


def test_the_torchvision_checkpoint_loads_completely(pair):
    _, kiln, report, *_ = pair
    assert report.layout == "torchvision_detection"
    assert report.missing == [] and report.unexpected == [] and report.shape_mismatch == []
    assert kiln.roi_head.mask_head.conv_logits.out_channels == 80


def test_mask_features_and_logits_match_torchvision(pair):
    tv, kiln, _, x, tv_feats, kiln_feats, boxes, _ = pair
    with torch.no_grad():
        for a, b in zip(list(tv_feats.values())[:4], kiln_feats[:4]):
            torch.testing.assert_close(b, a, atol=1e-4, rtol=1e-4)
        tv_pooled = tv.roi_heads.mask_roi_pool(tv_feats, [boxes], [tuple(x.shape[-2:])])
        kiln_pooled = kiln.roi_head.mask_roi_extractor(kiln_feats[:4], bbox2roi([boxes]))
        torch.testing.assert_close(kiln_pooled, tv_pooled, atol=1e-4, rtol=1e-4)
        tv_logits = tv.roi_heads.mask_predictor(tv.roi_heads.mask_head(tv_pooled))
        kiln_logits = kiln.roi_head.mask_head(tv_pooled)
    assert tv_logits.shape == (4, 91, 28, 28) and kiln_logits.shape == (4, 80, 28, 28)
    torch.testing.assert_close(kiln_logits, tv_logits[:, COCO_IDS], atol=1e-4, rtol=1e-4)


def test_mask_probabilities_of_detections_match_torchvision(pair):
    from torchvision.models.detection.roi_heads import maskrcnn_inference

    tv, kiln, _, x, tv_feats, kiln_feats, boxes, labels = pair
    with torch.no_grad():
        tv_pooled = tv.roi_heads.mask_roi_pool(tv_feats, [boxes], [tuple(x.shape[-2:])])
        tv_logits = tv.roi_heads.mask_predictor(tv.roi_heads.mask_head(tv_pooled))
        tv_probs = maskrcnn_inference(tv_logits, [torch.tensor(COCO_IDS)[labels]])[0][:, 0]
        kiln_probs = kiln.roi_head.simple_test_mask(kiln_feats, [boxes], [labels])[0]
    torch.testing.assert_close(kiln_probs, tv_probs, atol=1e-5, rtol=1e-4)


def test_pasted_masks_agree_with_torchvision_up_to_the_box_border(pair):
    *_, boxes, _ = pair
    # Smooth object-like masks: discs of several radii, off-centre, as a trained head predicts them.
    yy, xx = torch.meshgrid(torch.arange(28.0) + 0.5, torch.arange(28.0) + 0.5, indexing="ij")
    probs = torch.stack([torch.sigmoid((r - ((xx - cx) ** 2 + (yy - cy) ** 2).sqrt()) / 1.5)
                         for r, cx, cy in ((12, 14, 14), (9, 11, 16), (13, 15, 13), (7, 14, 12))])
    ours = paste_masks_in_image(probs, boxes, (128, 160))
    theirs = tv_paste(probs[:, None], boxes, (128, 160))[:, 0] >= 0.5
    for a, b in zip(ours, theirs):
        # the masks differ only in a thin band along their outline (at most ~1 pixel wide)
        edge = (a ^ torch.roll(a, 1, 0)) | (a ^ torch.roll(a, 1, 1)) | (a ^ torch.roll(a, -1, 0)) | (
            a ^ torch.roll(a, -1, 1))
        assert ((a != b) & ~edge).sum() <= 2
        assert (a & b).sum() / (a | b).sum() > 0.9
