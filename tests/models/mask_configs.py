"""A small Mask R-CNN config shared by the mask tests."""

from __future__ import annotations

from twostage_configs import faster_rcnn_cfg


def mask_rcnn_cfg(num_classes: int = 3, fpn: int = 16, class_agnostic: bool = False) -> dict:
    """The small Faster R-CNN of the two-stage tests with MMDetection's mask branch (14×14 → 28×28)."""
    cfg = faster_rcnn_cfg(num_classes=num_classes, fpn=fpn)
    cfg["type"] = "MaskRCNN"
    cfg["roi_head"]["mask_roi_extractor"] = dict(
        type="SingleRoIExtractor", roi_layer=dict(type="RoIAlign", output_size=14, sampling_ratio=0),
        out_channels=fpn, featmap_strides=[4, 8, 16, 32])
    cfg["roi_head"]["mask_head"] = dict(
        type="FCNMaskHead", num_convs=2, in_channels=fpn, conv_out_channels=fpn, num_classes=num_classes,
        class_agnostic=class_agnostic,
        loss_mask=dict(type="CrossEntropyLoss", use_mask=True, loss_weight=1.0))
    cfg["train_cfg"]["rcnn"]["mask_size"] = 28
    cfg["test_cfg"]["rcnn"].update(mask_thr_binary=0.5, score_thr=0.0)
    return cfg
