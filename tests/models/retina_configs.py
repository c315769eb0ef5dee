"""Small RetinaNet configs shared by the detector tests (not a test module)."""

from __future__ import annotations

import copy

TINY_RETINANET = dict(
    type="RetinaNet",
    backbone=dict(type="ResNet", depth=18, base_channels=16, out_indices=(1, 2, 3), norm_eval=False),
    neck=dict(type="FPN", in_channels=[32, 64, 128], out_channels=32, num_outs=5, add_extra_convs="on_input"),
    bbox_head=dict(
        type="RetinaHead",
        num_classes=3,
        in_channels=32,
        feat_channels=32,
        stacked_convs=2,
        anchor_generator=dict(
            type="AnchorGenerator",
            octave_base_scale=3,
            scales_per_octave=2,
            ratios=[1.0],
            strides=[8, 16, 32, 64, 128],
        ),
        loss_bbox=dict(type="SmoothL1Loss", beta=0.11),
    ),
    train_cfg=dict(assigner=dict(type="MaxIoUAssigner", pos_iou_thr=0.5, neg_iou_thr=0.4, min_pos_iou=0)),
    test_cfg=dict(
        nms_pre=1000,
        min_bbox_size=0,
        score_thr=0.05,
        nms=dict(type="nms", iou_threshold=0.5),
        max_per_img=100,
    ),
)

# The model part of seed 001 (configs/retinanet_r101_fpn_1x.py, MMDetection v1 schema), verbatim.
SEED_MODEL = dict(
    type="RetinaNet",
    pretrained="torchvision://resnet101",
    backbone=dict(
        type="ResNet",
        depth=101,
        num_stages=4,
        out_indices=(0, 1, 2, 3),
        frozen_stages=1,
        norm_cfg=dict(type="BN", requires_grad=True),
        style="pytorch",
    ),
    neck=dict(
        type="FPN",
        in_channels=[256, 512, 1024, 2048],
        out_channels=256,
        start_level=1,
        add_extra_convs=True,
        num_outs=5,
    ),
    bbox_head=dict(
        type="RetinaHead",
        num_classes=81,
        in_channels=256,
        stacked_convs=4,
        feat_channels=256,
        octave_base_scale=4,
        scales_per_octave=3,
        anchor_ratios=[0.5, 1.0, 2.0],
        anchor_strides=[8, 16, 32, 64, 128],
        target_means=[0.0, 0.0, 0.0, 0.0],
        target_stds=[1.0, 1.0, 1.0, 1.0],
        loss_cls=dict(type="FocalLoss", use_sigmoid=True, gamma=2.0, alpha=0.25, loss_weight=1.0),
        loss_bbox=dict(type="SmoothL1Loss", beta=0.11, loss_weight=1.0),
    ),
)
SEED_TRAIN_CFG = dict(
    assigner=dict(type="MaxIoUAssigner", pos_iou_thr=0.5, neg_iou_thr=0.4, min_pos_iou=0, ignore_iof_thr=-1),
    allowed_border=-1,
    pos_weight=-1,
    debug=False,
)
SEED_TEST_CFG = dict(
    nms_pre=1000, min_bbox_size=0, score_thr=0.05, nms=dict(type="nms", iou_thr=0.5), max_per_img=100
)


def tiny(**overrides):
    """A deep copy of TINY_RETINANET with top-level keys replaced."""
    cfg = copy.deepcopy(TINY_RETINANET)
    cfg.update(overrides)
    return cfg
