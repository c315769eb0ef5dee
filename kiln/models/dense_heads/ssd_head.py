"""``SSDHead``: SSD's per-level 3×3 class/box convs, trained with hard negative mining (Liu et al. 2016).

MMDetection's SSDHead: module names ``cls_convs.<level>.0`` / ``reg_convs.<level>.0`` (so its checkpoints
load strictly), softmax over ``num_classes + 1`` outputs with background **last**, anchors from
:class:`SSDAnchorGenerator` (4 or 6 per location). Targets, decoding and post-processing are
:class:`AnchorHead`'s; only the losses differ.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from kiln.registry import MODELS

from ..utils import cfg_get, put_scalars
from .anchor_head import AnchorHead

__all__ = ["SSDHead"]

_DEFAULT_INIT = {"type": "Xavier", "layer": "Conv2d", "distribution": "uniform", "bias": 0}


@MODELS.register_module()
class SSDHead(AnchorHead):
    """One 3×3 conv per level for ``A·(C+1)`` class logits and one for ``A·4`` box deltas.

    Loss (per image, then summed over the batch): softmax cross-entropy on all positive anchors plus on
    the ``neg_pos_ratio ×`` (``train_cfg.neg_pos_ratio``, 3) negatives with the highest loss (hard
    negative mining), and smooth L1 (``train_cfg.smoothl1_beta``) on the positives' deltas, both divided by
    the number of positive anchors in the batch.

    Args:
        num_classes: foreground classes.
        in_channels: channels of each level (SSD300: ``(512, 1024, 512, 256, 256, 256)``).
        anchor_generator, bbox_coder: ``TASK_UTILS`` configs (published: SSDAnchorGenerator and
            DeltaXYWHBBoxCoder with ``target_stds=[0.1, 0.1, 0.2, 0.2]``).
        stacked_convs, use_depthwise, conv_cfg, norm_cfg, act_cfg: SSDLite's options; only the plain SSD
            head (``stacked_convs=0``) is implemented.
        train_cfg: ``assigner`` (MaxIoUAssigner), ``neg_pos_ratio``, ``smoothl1_beta``, ``allowed_border``,
            ``pos_weight``.
        test_cfg: as :class:`AnchorHead`.
    """

    same_anchors_per_level = False

    def __init__(
        self,
        num_classes: int = 80,
        in_channels: Sequence[int] = (512, 1024, 512, 256, 256, 256),
        stacked_convs: int = 0,
        feat_channels: int = 256,
        use_depthwise: bool = False,
        conv_cfg: Mapping[str, Any] | None = None,
        norm_cfg: Mapping[str, Any] | None = None,
        act_cfg: Mapping[str, Any] | None = None,
        anchor_generator: Mapping[str, Any] | None = None,
        bbox_coder: Mapping[str, Any] | None = None,
        reg_decoded_bbox: bool = False,
        train_cfg: Any = None,
        test_cfg: Any = None,
        init_cfg: Any = None,
    ) -> None:
        if (
            stacked_convs
            or use_depthwise
            or conv_cfg is not None
            or norm_cfg is not None
            or act_cfg is not None
        ):
            raise ValueError(
                "SSDHead: stacked_convs/use_depthwise/conv_cfg/norm_cfg/act_cfg (SSDLite's head) are not "
                "implemented in kiln; the SSD300/SSD512 head has stacked_convs=0 and none of them."
            )
        if init_cfg is not None and dict(init_cfg) != _DEFAULT_INIT:
            raise ValueError(
                f"SSDHead(init_cfg={init_cfg!r}): kiln initialises SSDHead as MMDetection's default "
                f"({_DEFAULT_INIT}) and implements no other; remove init_cfg."
            )
        if anchor_generator is None:
            anchor_generator = dict(
                type="SSDAnchorGenerator",
                scale_major=False,
                input_size=300,
                strides=[8, 16, 32, 64, 100, 300],
                ratios=([2], [2, 3], [2, 3], [2, 3], [2], [2]),
                basesize_ratio_range=(0.1, 0.9),
            )
        self.level_channels = [int(c) for c in in_channels]
        self.neg_pos_ratio = float(cfg_get(train_cfg, "neg_pos_ratio", 3)) if train_cfg is not None else 3.0
        beta = float(cfg_get(train_cfg, "smoothl1_beta", 1.0)) if train_cfg is not None else 1.0
        super().__init__(
            num_classes,
            in_channels=self.level_channels[0],
            feat_channels=feat_channels,
            anchor_generator=anchor_generator,
            bbox_coder=bbox_coder,
            reg_decoded_bbox=reg_decoded_bbox,
            loss_cls=dict(type="CrossEntropyLoss", use_sigmoid=False),
            loss_bbox=dict(type="SmoothL1Loss", beta=beta),
            train_cfg=train_cfg,
            test_cfg=test_cfg,
        )
        self.in_channels = self.level_channels

    def _init_layers(self) -> None:
        counts = self.prior_generator.num_base_anchors
        if len(counts) != len(self.level_channels):
            raise ValueError(
                f"SSDHead: in_channels has {len(self.level_channels)} levels but the anchor generator "
                f"{len(counts)}; give one entry per level."
            )
        self.cls_convs = nn.ModuleList()
        self.reg_convs = nn.ModuleList()
        for cin, a in zip(self.level_channels, counts):
            self.cls_convs.append(nn.Sequential(nn.Conv2d(cin, a * self.cls_out_channels, 3, padding=1)))
            self.reg_convs.append(nn.Sequential(nn.Conv2d(cin, a * 4, 3, padding=1)))

    def init_weights(self) -> None:
        """Xavier-uniform convs with zero bias (MMDetection's default for SSDHead)."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, feats: Sequence[torch.Tensor]) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Per-level class logits (N × A·(C+1) × H × W) and box deltas (N × A·4 × H × W)."""
        if len(feats) != len(self.cls_convs):
            raise ValueError(f"SSDHead expects {len(self.cls_convs)} feature maps, got {len(feats)}.")
        return [c(x) for c, x in zip(self.cls_convs, feats)], [r(x) for r, x in zip(self.reg_convs, feats)]

    def loss_by_feat(
        self,
        cls_scores: Sequence[torch.Tensor],
        bbox_preds: Sequence[torch.Tensor],
        gt_bboxes: Sequence[torch.Tensor],
        gt_labels: Sequence[torch.Tensor],
        metas: Sequence[Mapping[str, Any]],
        gt_bboxes_ignore: Sequence[torch.Tensor | None] | None = None,
    ) -> dict[str, torch.Tensor]:
        """``loss_cls`` (positives + mined hard negatives) and ``loss_bbox``, over the batch's positives."""
        device = cls_scores[0].device
        sizes = [tuple(c.shape[-2:]) for c in cls_scores]
        anchors = torch.cat(self.prior_generator.grid_priors(sizes, device))
        cls = self._flatten(cls_scores, self.cls_out_channels)
        reg = self._flatten(bbox_preds, 4)
        labels, label_weights, targets, box_weights, num_pos, _ = self.get_targets(
            anchors, gt_bboxes, gt_labels, metas, gt_bboxes_ignore
        )
        avg_factor = max(num_pos, 1)
        loss_all = F.cross_entropy(cls.flatten(0, 1), labels.flatten(), reduction="none").view_as(labels)
        loss_all = loss_all * label_weights
        loss_cls = cls.new_zeros(())
        num_hard = 0
        for loss_img, labels_img in zip(loss_all, labels):
            pos = labels_img < self.num_classes
            neg_losses = loss_img[labels_img == self.num_classes]
            k = min(int(self.neg_pos_ratio * int(pos.sum())), len(neg_losses))
            num_hard += k
            loss_cls = loss_cls + loss_img[pos].sum() + neg_losses.topk(k).values.sum()
        if self.reg_decoded_bbox:
            reg = self.bbox_coder.decode(anchors.expand(len(metas), -1, -1), reg)
        loss_bbox = self.loss_bbox(reg, targets, box_weights, avg_factor=avg_factor)
        put_scalars(
            head_num_pos_anchors=num_pos / max(len(metas), 1),
            head_num_hard_negatives=num_hard / max(len(metas), 1),
        )
        return {"loss_cls": loss_cls / avg_factor, "loss_bbox": loss_bbox}
