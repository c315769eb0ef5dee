"""torchvision's RetinaNet and Faster R-CNN checkpoints in kiln: same features, same head outputs.

The torchvision models are built with random weights (``weights=None``), their BatchNorm statistics
randomised, saved as torchvision saves them, loaded into the equivalent kiln detector, and every stage
compared: FPN features, RetinaNet class/box outputs per anchor, RPN outputs and the box head on the same
pooled features. torchvision's COCO heads have 91 slots (0 = background); kiln's 80 classes are COCO's ids.
"""

from __future__ import annotations

import pytest
import torch
import torchvision
from torchvision.models.detection import fasterrcnn_resnet50_fpn, retinanet_resnet50_fpn
from zoo_publishers import randomize_bn

from kiln.checkpoint_convert import load_into
from kiln.models import build_detector

COCO_IDS = [i for i in range(1, 91) if i not in (12, 26, 29, 30, 45, 66, 68, 69, 71, 83)]
NMS = dict(type="nms", iou_threshold=0.5)


def _retinanet_cfg() -> dict:
    """kiln's spelling of torchvision's retinanet_resnet50_fpn (P6 from P5, ReLU before P7)."""
    return dict(
        type="RetinaNet",
        backbone=dict(type="ResNet", depth=50, out_indices=(1, 2, 3), norm_eval=True, frozen_stages=1),
        neck=dict(type="FPN", in_channels=[512, 1024, 2048], out_channels=256, num_outs=5,
                  add_extra_convs="on_output", relu_before_extra_convs=True),
        bbox_head=dict(type="RetinaHead", num_classes=80, in_channels=256, feat_channels=256, stacked_convs=4,
                       anchor_generator=dict(type="AnchorGenerator", octave_base_scale=4, scales_per_octave=3,
                                             ratios=[0.5, 1.0, 2.0], strides=[8, 16, 32, 64, 128])),
        test_cfg=dict(nms_pre=1000, score_thr=0.05, nms=NMS, max_per_img=100))


def _faster_rcnn_cfg() -> dict:
    """kiln's spelling of torchvision's fasterrcnn_resnet50_fpn."""
    return dict(
        type="FasterRCNN",
        backbone=dict(type="ResNet", depth=50, out_indices=(0, 1, 2, 3), norm_eval=True, frozen_stages=1),
        neck=dict(type="FPN", in_channels=[256, 512, 1024, 2048], out_channels=256, num_outs=5),
        rpn_head=dict(type="RPNHead", in_channels=256, feat_channels=256,
                      anchor_generator=dict(type="AnchorGenerator", scales=[8], ratios=[0.5, 1.0, 2.0],
                                            strides=[4, 8, 16, 32, 64])),
        roi_head=dict(
            type="StandardRoIHead",
            bbox_roi_extractor=dict(type="SingleRoIExtractor", roi_layer=dict(type="RoIAlign", output_size=7),
                                    out_channels=256, featmap_strides=[4, 8, 16, 32]),
            bbox_head=dict(type="Shared2FCBBoxHead", in_channels=256, fc_out_channels=1024, roi_feat_size=7,
                           num_classes=80)),
        test_cfg=dict(rpn=dict(nms_pre=1000, max_per_img=1000, nms=dict(type="nms", iou_threshold=0.7)),
                      rcnn=dict(score_thr=0.05, nms=NMS, max_per_img=100)))


def _saved(model: torch.nn.Module, path) -> str:
    torch.manual_seed(0)
    randomize_bn(model)
    with torch.no_grad():  # torchvision initialises predictor biases to constants: make them distinct
        for name, p in model.named_parameters():
            if name.endswith("bias"):
                p.copy_(torch.randn_like(p) * 0.1)
    torch.save(model.state_dict(), path)
    return str(path)


def _x() -> torch.Tensor:
    return torch.randn(1, 3, 128, 160, generator=torch.Generator().manual_seed(3))


@pytest.fixture(scope="module")
def retinanet_pair(tmp_path_factory):
    tv = retinanet_resnet50_fpn(weights=None, weights_backbone=None).eval()
    path = _saved(tv, tmp_path_factory.mktemp("tv") / "retinanet_resnet50_fpn_coco-eeacb38b.pth")
    kiln = build_detector(_retinanet_cfg()).eval()
    report = load_into(kiln, path)
    return tv, kiln, report


def test_retinanet_checkpoint_loads_completely(retinanet_pair):
    _, _, report = retinanet_pair
    assert report.layout == "torchvision_detection"
    assert report.missing == [] and report.unexpected == [] and report.shape_mismatch == []


def test_retinanet_features_and_per_anchor_outputs_match_torchvision(retinanet_pair):
    tv, kiln, _ = retinanet_pair
    x = _x()
    with torch.no_grad():
        tv_feats = list(tv.backbone(x).values())
        kiln_feats = kiln.extract_feat(x)
        for a, b in zip(tv_feats, kiln_feats):
            torch.testing.assert_close(b, a, atol=1e-4, rtol=1e-4)
        tv_out = tv.head(tv_feats)
        cls_scores, bbox_preds = kiln.bbox_head(kiln_feats)
    # Pair anchor slots by geometry: kiln's anchor j at a location is torchvision's slot perm[j].
    from torchvision.models.detection.image_list import ImageList

    num = 9
    tv_anchors = tv.anchor_generator(ImageList(x, [tuple(x.shape[-2:])]), tv_feats)[0][:num]
    kiln_anchors = kiln.bbox_head.anchor_generator.grid_priors([f.shape[-2:] for f in kiln_feats])[0][:num]
    dist = torch.cdist(kiln_anchors, tv_anchors, p=1)
    perm = dist.argmin(1)
    assert sorted(perm.tolist()) == list(range(num)) and dist.min(1).values.max() < 4  # rounding of sizes
    tv_cls = tv_out["cls_logits"].reshape(1, -1, num, 91)[..., perm, :][..., COCO_IDS]
    tv_reg = tv_out["bbox_regression"].reshape(1, -1, num, 4)[..., perm, :]
    kiln_cls = torch.cat([c.permute(0, 2, 3, 1).reshape(1, -1, num, 80) for c in cls_scores], 1)
    kiln_reg = torch.cat([r.permute(0, 2, 3, 1).reshape(1, -1, num, 4) for r in bbox_preds], 1)
    torch.testing.assert_close(kiln_cls, tv_cls, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(kiln_reg, tv_reg, atol=1e-4, rtol=1e-4)


def test_faster_rcnn_checkpoint_matches_torchvision_stage_by_stage(tmp_path):
    tv = fasterrcnn_resnet50_fpn(weights=None, weights_backbone=None).eval()
    path = _saved(tv, tmp_path / "fasterrcnn_resnet50_fpn_coco-258fb6c6.pth")
    kiln = build_detector(_faster_rcnn_cfg()).eval()
    report = load_into(kiln, path)
    assert report.missing == [] and report.unexpected == [] and report.shape_mismatch == []
    x = _x()
    with torch.no_grad():
        tv_feats = list(tv.backbone(x).values())
        kiln_feats = kiln.extract_feat(x)
        for a, b in zip(tv_feats, kiln_feats):
            torch.testing.assert_close(b, a, atol=1e-4, rtol=1e-4)
        tv_obj, tv_deltas = tv.rpn.head(tv_feats)
        kiln_obj, kiln_deltas = kiln.rpn_head(kiln_feats)
        for a, b in zip(tv_obj + tv_deltas, kiln_obj + kiln_deltas):
            torch.testing.assert_close(b, a, atol=1e-4, rtol=1e-4)
        boxes = torch.tensor([[10.0, 12.0, 90.0, 100.0], [0.0, 0.0, 40.0, 30.0], [50.0, 20.0, 150.0, 120.0]])
        pooled = tv.roi_heads.box_roi_pool(dict(zip(["0", "1", "2", "3"], tv_feats[:4])), [boxes],
                                           [tuple(x.shape[-2:])])
        tv_cls, tv_reg = tv.roi_heads.box_predictor(tv.roi_heads.box_head(pooled))
        kiln_cls, kiln_reg = kiln.roi_head.bbox_head(pooled)
    torch.testing.assert_close(kiln_cls[:, :80], tv_cls[:, COCO_IDS], atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(kiln_cls[:, 80], tv_cls[:, 0], atol=1e-4, rtol=1e-4)  # background last
    torch.testing.assert_close(kiln_reg.reshape(3, 80, 4), tv_reg.reshape(3, 91, 4)[:, COCO_IDS],
                               atol=1e-4, rtol=1e-4)


del torchvision  # imported for its detection builders only
