"""Detectron2 ``MODEL.META_ARCHITECTURE: FCOS`` / ``ATSS`` -> kiln's FCOS / ATSS model dicts.

Detectron2's yaml schema has no FCOS or ATSS node; its own FCOS (a LazyConfig model) is derived from the
RetinaNet model, and so are these: the head reads ``MODEL.RETINANET`` (classes, input levels, tower depth,
norm, focal-loss parameters, test thresholds) and ``TEST.DETECTIONS_PER_IMAGE``, the FPN makes P6 from P5
(Detectron2's FCOS ``top_block.in_feature = 'p5'``). The networks are kiln's (MMDetection's) FCOS with centre
sampling, stride-normalised distances, centerness on the regression branch and GIoU (the variant
Detectron2's and torchvision's FCOS implement), and MMDetection's ATSS. Their training and test rules are
MMDetection's: losses divided by the positives of the batch (box loss weighted by centerness), and
``SCORE_THRESH_TEST`` thresholds the class probability before the centerness factor. RetinaNet keys
these heads do not read are reported when set (anchors for FCOS, IoU thresholds, box-regression options).
"""

from __future__ import annotations

from typing import Any

from .d2_backbone import anchor_generator, feature_levels
from .d2_check import refuse, warn_unread

__all__ = ["DENSE_META_ARCHITECTURES", "dense_dicts"]

#: Meta-architectures translated here.
DENSE_META_ARCHITECTURES = ("FCOS", "ATSS")


def dense_dicts(d2: Any, levels: dict[str, tuple[int, int]], neck: dict) -> tuple[dict, dict, dict]:
    """(bbox_head, train_cfg, test_cfg) of ``MODEL.META_ARCHITECTURE`` FCOS or ATSS; ``neck`` (the FPN dict
    of a RetinaNet backbone) is switched to P6 from P5 in place."""
    arch = d2.MODEL.META_ARCHITECTURE
    r = d2.MODEL.RETINANET
    feats = feature_levels(d2, "MODEL.RETINANET.IN_FEATURES", levels, whole=True)
    if r.NORM not in ("", "GN"):
        raise refuse("MODEL.RETINANET.NORM", r.NORM, f"kiln's {arch} head takes '' or 'GN'")
    if abs(float(r.PRIOR_PROB) - 0.01) > 1e-12:
        raise refuse("MODEL.RETINANET.PRIOR_PROB", float(r.PRIOR_PROB),
                     f"kiln's {arch} head starts at 0.01 (its default)")
    neck.update(add_extra_convs="on_output", relu_before_extra_convs=True)
    channels = feats[0][0]
    head: dict[str, Any] = dict(
        num_classes=int(r.NUM_CLASSES),
        in_channels=channels,
        feat_channels=channels,
        stacked_convs=int(r.NUM_CONVS),
        norm_cfg=dict(type="GN", num_groups=32, requires_grad=True) if r.NORM == "GN" else None,
        loss_cls=dict(type="FocalLoss", use_sigmoid=True, gamma=float(r.FOCAL_LOSS_GAMMA),
                      alpha=float(r.FOCAL_LOSS_ALPHA), loss_weight=1.0),
    )
    for key, why in (
        ("MODEL.RETINANET.IOU_THRESHOLDS", f"{arch} assigns by its own rule, not by IoU thresholds"),
        ("MODEL.RETINANET.IOU_LABELS", f"{arch} assigns by its own rule, not by IoU thresholds"),
        ("MODEL.RETINANET.BBOX_REG_WEIGHTS", f"{arch} regresses with its own box coding"),
        ("MODEL.RETINANET.BBOX_REG_LOSS_TYPE", f"{arch} uses a GIoU box loss"),
        ("MODEL.RETINANET.SMOOTH_L1_LOSS_BETA", f"{arch} uses a GIoU box loss"),
    ):
        warn_unread(d2, key, f"not read by META_ARCHITECTURE {arch}: {why}")
    strides = [s for _, s in feats]
    if arch == "FCOS":
        for key in ("SIZES", "ASPECT_RATIOS", "OFFSET", "ANGLES"):
            warn_unread(d2, f"MODEL.ANCHOR_GENERATOR.{key}",
                        "FCOS has one prior point per location, no anchors")
        head.update(
            type="FCOSHead", strides=strides, center_sampling=True, center_sample_radius=1.5,
            norm_on_bbox=True, centerness_on_reg=True, conv_bias=True,
            loss_bbox=dict(type="GIoULoss", loss_weight=1.0),
        )
        train: dict[str, Any] = {}
    else:
        head.update(type="ATSSHead", anchor_generator=anchor_generator(d2, strides),
                    loss_bbox=dict(type="GIoULoss", loss_weight=2.0))
        train = dict(assigner=dict(type="ATSSAssigner", topk=9), allowed_border=-1, pos_weight=-1)
    test = dict(
        nms_pre=int(r.TOPK_CANDIDATES_TEST),
        min_bbox_size=0,
        score_thr=float(r.SCORE_THRESH_TEST),
        nms=dict(type="nms", iou_threshold=float(r.NMS_THRESH_TEST)),
        max_per_img=int(d2.TEST.DETECTIONS_PER_IMAGE),
    )
    return head, train, test
