"""Small Faster R-CNN configs (MMDetection v2 schema) shared by the two-stage tests."""

from __future__ import annotations

import copy

import pytest
import torch


@pytest.fixture
def one_thread():
    """Run a test with one torch thread: the suite runs two test processes on two cores, where more
    threads only contend (convolutions measured ~10× slower with 2 threads under that load)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def rpn_train_cfg() -> dict:
    """train_cfg.rpn of MMDetection's faster_rcnn_r50_fpn_1x."""
    return dict(
        assigner=dict(type="MaxIoUAssigner", pos_iou_thr=0.7, neg_iou_thr=0.3, min_pos_iou=0.3,
                      match_low_quality=True, ignore_iof_thr=-1),
        sampler=dict(type="RandomSampler", num=256, pos_fraction=0.5, neg_pos_ub=-1,
                     add_gt_as_proposals=False),
        allowed_border=-1, pos_weight=-1, debug=False)


def rpn_head_cfg(in_channels: int = 16, scales=(4,), strides=(4, 8, 16, 32, 64)) -> dict:
    """A v2 RPNHead config."""
    return dict(
        type="RPNHead", in_channels=in_channels, feat_channels=in_channels,
        anchor_generator=dict(type="AnchorGenerator", scales=list(scales), ratios=[0.5, 1.0, 2.0],
                              strides=list(strides)),
        bbox_coder=dict(type="DeltaXYWHBBoxCoder", target_means=[0.0] * 4, target_stds=[1.0] * 4),
        loss_cls=dict(type="CrossEntropyLoss", use_sigmoid=True, loss_weight=1.0),
        loss_bbox=dict(type="L1Loss", loss_weight=1.0))


def faster_rcnn_cfg(num_classes: int = 3, base: int = 8, fpn: int = 16, fc: int = 64,
                    rcnn_samples: int = 128, reg_class_agnostic: bool = False) -> dict:
    """Faster R-CNN R-18-FPN with reduced widths, sized for ~128 px images."""
    return dict(
        type="FasterRCNN",
        backbone=dict(type="ResNet", depth=18, num_stages=4, out_indices=(0, 1, 2, 3), frozen_stages=-1,
                      norm_cfg=dict(type="BN", requires_grad=True), norm_eval=False, base_channels=base,
                      style="pytorch"),
        neck=dict(type="FPN", in_channels=[base, base * 2, base * 4, base * 8], out_channels=fpn, num_outs=5),
        rpn_head=rpn_head_cfg(fpn),
        roi_head=dict(
            type="StandardRoIHead",
            bbox_roi_extractor=dict(type="SingleRoIExtractor",
                                    roi_layer=dict(type="RoIAlign", output_size=7, sampling_ratio=0),
                                    out_channels=fpn, featmap_strides=[4, 8, 16, 32]),
            bbox_head=dict(
                type="Shared2FCBBoxHead", in_channels=fpn, fc_out_channels=fc, roi_feat_size=7,
                num_classes=num_classes,
                bbox_coder=dict(type="DeltaXYWHBBoxCoder", target_means=[0.0] * 4,
                                target_stds=[0.1, 0.1, 0.2, 0.2]),
                reg_class_agnostic=reg_class_agnostic,
                loss_cls=dict(type="CrossEntropyLoss", use_sigmoid=False, loss_weight=1.0),
                loss_bbox=dict(type="L1Loss", loss_weight=1.0))),
        train_cfg=dict(
            rpn=rpn_train_cfg(),
            rpn_proposal=dict(nms_pre=500, max_per_img=300, nms=dict(type="nms", iou_threshold=0.7),
                              min_bbox_size=0),
            rcnn=dict(assigner=dict(type="MaxIoUAssigner", pos_iou_thr=0.5, neg_iou_thr=0.5, min_pos_iou=0.5,
                                    match_low_quality=False, ignore_iof_thr=-1),
                      sampler=dict(type="RandomSampler", num=rcnn_samples, pos_fraction=0.25, neg_pos_ub=-1,
                                   add_gt_as_proposals=True),
                      pos_weight=-1, debug=False)),
        test_cfg=dict(
            rpn=dict(nms_pre=500, max_per_img=300, nms=dict(type="nms", iou_threshold=0.7), min_bbox_size=0),
            rcnn=dict(score_thr=0.05, nms=dict(type="nms", iou_threshold=0.5), max_per_img=100)))


def split_train_test_cfg(cfg: dict) -> tuple[dict, dict, dict]:
    """The same config in the seed-001 layout: (model without train/test cfg, train_cfg, test_cfg)."""
    cfg = copy.deepcopy(cfg)
    return cfg, cfg.pop("train_cfg"), cfg.pop("test_cfg")
