"""Detectron2 detector checkpoints (``model_final_*.pkl`` with numpy arrays) give kiln the same detections.

A kiln detector with random weights is written with Detectron2's module names and anchor order (a
size-major enumeration, unlike kiln's ratio-major one), loaded into a fresh kiln detector and both are
run on the same image.
"""

from __future__ import annotations

import torch
from zoo_publishers import (
    kiln_to_detectron1,
    kiln_to_detectron2,
    model_anchor_slots,
    randomize_bn,
    write_pickle,
)

from kiln.checkpoint_convert import load_into
from kiln.models import build_detector

NMS = dict(type="nms", iou_threshold=0.5)


def _retinanet() -> dict:
    return dict(
        type="RetinaNet",
        backbone=dict(type="ResNet", depth=18, base_channels=8, out_indices=(1, 2, 3)),
        neck=dict(type="FPN", in_channels=[16, 32, 64], out_channels=16, num_outs=5,
                  add_extra_convs="on_input"),
        bbox_head=dict(type="RetinaHead", num_classes=3, in_channels=16, feat_channels=16, stacked_convs=2,
                       anchor_generator=dict(type="AnchorGenerator", octave_base_scale=4, scales_per_octave=3,
                                             ratios=[0.5, 1.0, 2.0], strides=[8, 16, 32, 64, 128])),
        test_cfg=dict(nms_pre=200, score_thr=0.05, nms=NMS, max_per_img=50))


def _faster_rcnn() -> dict:
    return dict(
        type="FasterRCNN",
        backbone=dict(type="ResNet", depth=18, base_channels=8, out_indices=(0, 1, 2, 3)),
        neck=dict(type="FPN", in_channels=[8, 16, 32, 64], out_channels=16, num_outs=5),
        rpn_head=dict(type="RPNHead", in_channels=16, feat_channels=16,
                      anchor_generator=dict(type="AnchorGenerator", scales=[8], ratios=[0.5, 1.0, 2.0],
                                            strides=[4, 8, 16, 32, 64])),
        roi_head=dict(
            type="StandardRoIHead",
            bbox_roi_extractor=dict(type="SingleRoIExtractor", roi_layer=dict(type="RoIAlign", output_size=7),
                                    out_channels=16, featmap_strides=[4, 8, 16, 32]),
            bbox_head=dict(type="Shared2FCBBoxHead", in_channels=16, fc_out_channels=32, roi_feat_size=7,
                           num_classes=3)),
        test_cfg=dict(rpn=dict(nms_pre=200, max_per_img=100, nms=dict(type="nms", iou_threshold=0.7)),
                      rcnn=dict(score_thr=0.05, nms=NMS, max_per_img=50)))


def _image():
    return torch.randint(0, 256, (3, 96, 128), generator=torch.Generator().manual_seed(5), dtype=torch.uint8)


def _roundtrip(cfg: dict, first_level: int, tmp_path):
    torch.manual_seed(0)
    src = build_detector(cfg)
    randomize_bn(src)
    with torch.no_grad():
        for name, p in src.named_parameters():
            if name.endswith("bias"):
                p.copy_(torch.randn_like(p) * 0.1)
    src.eval()
    d2 = kiln_to_detectron2(src.state_dict(), first_level, model_anchor_slots(src))
    path = tmp_path / "model_final_280758.pkl"
    write_pickle({"model": d2, "__author__": "Detectron2 Model Zoo", "matching_heuristics": True}, str(path))
    dst = build_detector(cfg).eval()
    report = load_into(dst, path)
    batch = [dict(image=_image(), height=96, width=128, image_id=1)]
    with torch.no_grad():
        return report, src(batch)[0], dst(batch)[0]


def _assert_same(a: dict, b: dict) -> None:
    assert len(a["scores"]) > 0
    for key in ("boxes", "scores", "labels"):
        torch.testing.assert_close(b[key], a[key])


def test_detectron2_retinanet_pkl_gives_the_same_detections(tmp_path):
    report, expected, got = _roundtrip(_retinanet(), 3, tmp_path)
    assert report.layout == "detectron2" and report.missing == [] and report.unexpected == []
    assert any("anchors reordered" in n for n in report.notes)
    _assert_same(expected, got)


def test_detectron2_faster_rcnn_pkl_gives_the_same_detections(tmp_path):
    report, expected, got = _roundtrip(_faster_rcnn(), 2, tmp_path)
    assert report.layout == "detectron2" and report.missing == [] and report.unexpected == []
    _assert_same(expected, got)


def test_detectron1_caffe2_faster_rcnn_blobs_give_the_same_detections(tmp_path):
    """Detectron1 blob names (``fpn_inner_res5_1_sum``, ``conv_rpn_fpn2``, ``fc6``, background-first
    ``cls_score``) with BatchNorm folded into scale and bias, as Detectron1's model_final.pkl stores them."""
    torch.manual_seed(0)
    cfg = _faster_rcnn()
    src = build_detector(cfg)
    randomize_bn(src)
    with torch.no_grad():
        for name, p in src.named_parameters():
            if name.endswith("bias"):
                p.copy_(torch.randn_like(p) * 0.1)
    src.eval()
    blobs = kiln_to_detectron1(src.state_dict())
    assert "fpn_inner_res5_1_sum_lateral_w" in blobs and "res_conv1_bn_s" in blobs
    path = tmp_path / "model_final.pkl"
    write_pickle({"blobs": blobs}, str(path))
    dst = build_detector(cfg).eval()
    report = load_into(dst, path)
    assert report.layout == "caffe2" and report.missing == [] and report.unexpected == []
    assert any("background class moved" in n for n in report.notes)
    batch = [dict(image=_image(), height=96, width=128, image_id=1)]
    with torch.no_grad():
        expected, got = src(batch)[0], dst(batch)[0]
    assert len(expected["scores"]) > 0
    torch.testing.assert_close(got["scores"], expected["scores"], atol=1e-4, rtol=1e-4)  # BN folded
    torch.testing.assert_close(got["boxes"], expected["boxes"], atol=1e-3, rtol=1e-4)
    assert torch.equal(got["labels"], expected["labels"])
