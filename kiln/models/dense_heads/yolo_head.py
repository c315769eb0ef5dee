"""``YOLOV3Head``: YOLOv3's per-anchor box, objectness and class predictions, targets, losses and decoding.

MMDetection's YOLOV3Head, with its arguments and module names (``convs_bridge``, ``convs_pred``), so its
checkpoints load strictly. Targets: :class:`GridAssigner` restricted to each object's centre cell on every
level; boxes encoded by :class:`YOLOBBoxCoder`; losses summed (not averaged) over the batch as the
published configs' ``reduction='sum'`` ask.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F
from torchvision.ops import batched_nms

from kiln.registry import MODELS, TASK_UTILS

from ..backbones.darknet import conv_bn_leaky, leaky_slope
from ..task_modules import PseudoSampler
from ..utils import cfg_get, nms_iou_threshold

__all__ = ["YOLOV3Head"]


def _prob_bias(p: float) -> float:
    """The logit whose sigmoid is ``p``."""
    return -math.log((1 - p) / p)


@MODELS.register_module()
class YOLOV3Head(nn.Module):
    """Per level: a 3×3 conv (BN, LeakyReLU) then a 1×1 conv to ``A × (5 + C)`` channels per cell.

    Each anchor predicts ``(tx, ty, tw, th, objectness, class logits…)``; ``tx, ty`` pass through a
    sigmoid before decoding.

    Args:
        num_classes: foreground classes.
        in_channels, out_channels: per level (coarsest first, as YOLOV3Neck returns them).
        anchor_generator, bbox_coder: ``TASK_UTILS`` configs (YOLOAnchorGenerator, YOLOBBoxCoder).
        featmap_strides: stride per level (``[32, 16, 8]``).
        one_hot_smoother: label smoothing of the class targets.
        loss_cls, loss_conf, loss_xy, loss_wh: ``MODELS`` loss configs.
        train_cfg: ``assigner`` (GridAssigner) and optional ``sampler``.
        test_cfg: ``conf_thr`` (objectness threshold), ``score_thr`` (class score threshold), ``nms_pre``,
            ``min_bbox_size``, ``nms``, ``max_per_img``. Final scores are class score × objectness.

    Crowd regions (``gt_bboxes_ignore``) play no part in YOLOv3's targets, as in MMDetection.
    """

    def __init__(
        self,
        num_classes: int,
        in_channels: Sequence[int],
        out_channels: Sequence[int] = (1024, 512, 256),
        anchor_generator: Mapping[str, Any] | None = None,
        bbox_coder: Mapping[str, Any] | None = None,
        featmap_strides: Sequence[int] = (32, 16, 8),
        one_hot_smoother: float = 0.0,
        conv_cfg: Mapping[str, Any] | None = None,
        norm_cfg: Mapping[str, Any] | None = None,
        act_cfg: Mapping[str, Any] | None = None,
        loss_cls: Mapping[str, Any] | None = None,
        loss_conf: Mapping[str, Any] | None = None,
        loss_xy: Mapping[str, Any] | None = None,
        loss_wh: Mapping[str, Any] | None = None,
        train_cfg: Any = None,
        test_cfg: Any = None,
        init_cfg: Any = None,
    ) -> None:
        super().__init__()
        if conv_cfg is not None:
            raise ValueError(f"YOLOV3Head conv_cfg={conv_cfg!r}: only plain convs are supported.")
        if init_cfg is not None:
            raise ValueError(
                f"YOLOV3Head(init_cfg={init_cfg!r}): kiln initialises the head as MMDetection does (normal "
                "std 0.01, objectness/class biases from priors); remove init_cfg."
            )
        if not len(in_channels) == len(out_channels) == len(featmap_strides):
            raise ValueError(
                f"YOLOV3Head: in_channels={list(in_channels)}, out_channels={list(out_channels)} and "
                f"featmap_strides={list(featmap_strides)} need one entry per level."
            )
        self.num_classes = int(num_classes)
        self.in_channels = list(in_channels)
        self.out_channels = list(out_channels)
        self.featmap_strides = list(featmap_strides)
        self.one_hot_smoother = float(one_hot_smoother)
        self.train_cfg = train_cfg
        self.test_cfg = test_cfg
        norm_cfg = dict(norm_cfg) if norm_cfg is not None else dict(type="BN", requires_grad=True)
        slope = leaky_slope(act_cfg, "YOLOV3Head")
        if anchor_generator is None:
            anchor_generator = dict(
                type="YOLOAnchorGenerator",
                base_sizes=[
                    [(116, 90), (156, 198), (373, 326)],
                    [(30, 61), (62, 45), (59, 119)],
                    [(10, 13), (16, 30), (33, 23)],
                ],
                strides=[32, 16, 8],
            )
        self.prior_generator = TASK_UTILS.build(anchor_generator, cfg_path="bbox_head.anchor_generator")
        self.bbox_coder = TASK_UTILS.build(
            bbox_coder or dict(type="YOLOBBoxCoder"), cfg_path="bbox_head.bbox_coder"
        )
        if self.prior_generator.num_levels != len(self.featmap_strides):
            raise ValueError(
                f"YOLOV3Head: the anchor generator has {self.prior_generator.num_levels} levels but "
                f"featmap_strides={self.featmap_strides} has {len(self.featmap_strides)}."
            )
        bce = dict(type="CrossEntropyLoss", use_sigmoid=True, loss_weight=1.0)
        self.loss_cls = MODELS.build(loss_cls or bce, cfg_path="bbox_head.loss_cls")
        self.loss_conf = MODELS.build(loss_conf or bce, cfg_path="bbox_head.loss_conf")
        self.loss_xy = MODELS.build(loss_xy or bce, cfg_path="bbox_head.loss_xy")
        self.loss_wh = MODELS.build(
            loss_wh or dict(type="MSELoss", loss_weight=1.0), cfg_path="bbox_head.loss_wh"
        )
        self.num_base_priors = self.prior_generator.num_base_anchors[0]
        self.assigner = self.sampler = None
        if train_cfg is not None and cfg_get(train_cfg, "assigner") is not None:
            self.assigner = TASK_UTILS.build(cfg_get(train_cfg, "assigner"), cfg_path="train_cfg.assigner")
            sampler = cfg_get(train_cfg, "sampler")
            self.sampler = (
                TASK_UTILS.build(sampler, cfg_path="train_cfg.sampler")
                if sampler is not None
                else PseudoSampler()
            )
        self.convs_bridge = nn.ModuleList()
        self.convs_pred = nn.ModuleList()
        for cin, cout in zip(self.in_channels, self.out_channels):
            self.convs_bridge.append(conv_bn_leaky(cin, cout, 3, norm_cfg=norm_cfg, negative_slope=slope))
            self.convs_pred.append(nn.Conv2d(cout, self.num_base_priors * self.num_attrib, 1))
        self.init_weights()

    @property
    def num_levels(self) -> int:
        """Number of feature levels."""
        return len(self.featmap_strides)

    @property
    def num_attrib(self) -> int:
        """Outputs per anchor: 4 box values, objectness, one logit per class."""
        return 5 + self.num_classes

    def init_weights(self) -> None:
        """Normal(0, 0.01) convs, unit norms; objectness bias for ~8 objects per 608² image, class 0.01."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.normal_(m.weight, std=0.01)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.modules.batchnorm._BatchNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        for conv, stride in zip(self.convs_pred, self.featmap_strides):
            with torch.no_grad():
                bias = conv.bias.view(self.num_base_priors, -1)
                bias[:, 4] = _prob_bias(8 / (608 / stride) ** 2)
                bias[:, 5:] = _prob_bias(0.01)

    def forward(self, feats: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """Per-level prediction maps, N × A·(5+C) × H × W."""
        if len(feats) != self.num_levels:
            raise ValueError(f"YOLOV3Head expects {self.num_levels} feature maps, got {len(feats)}.")
        return [pred(bridge(x)) for x, bridge, pred in zip(feats, self.convs_bridge, self.convs_pred)]

    # ------------------------------------------------------------------ shared
    def _flatten(self, pred_maps: Sequence[torch.Tensor]) -> torch.Tensor:
        """N × (all anchors) × (5+C), levels in order, each level ordered (y, x, anchor)."""
        n = pred_maps[0].shape[0]
        return torch.cat([p.permute(0, 2, 3, 1).reshape(n, -1, self.num_attrib) for p in pred_maps], dim=1)

    def _anchors_and_strides(
        self, pred_maps: Sequence[torch.Tensor]
    ) -> tuple[list[torch.Tensor], torch.Tensor]:
        sizes = [tuple(p.shape[-2:]) for p in pred_maps]
        anchors = self.prior_generator.grid_priors(sizes, pred_maps[0].device)
        strides = torch.cat([a.new_full((len(a),), float(s)) for a, s in zip(anchors, self.featmap_strides)])
        return anchors, strides

    # ------------------------------------------------------------------ training
    def responsible_flags(
        self, featmap_sizes: Sequence[tuple[int, int]], gt_bboxes: torch.Tensor, device: torch.device
    ) -> torch.Tensor:
        """Per anchor (all levels concatenated): does its cell contain some ground truth's centre?"""
        flags = []
        for level, (h, w) in enumerate(featmap_sizes):
            sx, sy = self.prior_generator.strides[level]
            grid = torch.zeros(h * w, dtype=torch.bool, device=device)
            if len(gt_bboxes):
                cx = ((gt_bboxes[:, 0] + gt_bboxes[:, 2]) * 0.5).to(device)
                cy = ((gt_bboxes[:, 1] + gt_bboxes[:, 3]) * 0.5).to(device)
                # A centre on the far image edge belongs to the last cell.
                gx = torch.floor(cx / sx).long().clamp(0, w - 1)
                gy = torch.floor(cy / sy).long().clamp(0, h - 1)
                grid[gy * w + gx] = True
            flags.append(
                grid[:, None].expand(h * w, self.prior_generator.num_base_anchors[level]).reshape(-1)
            )
        return torch.cat(flags)

    def get_targets(
        self,
        pred_maps: Sequence[torch.Tensor],
        gt_bboxes: Sequence[torch.Tensor],
        gt_labels: Sequence[torch.Tensor],
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Target maps (N × anchors × (5+C): encoded box, objectness 1, class one-hot on positives) and
        negative masks (N × anchors) for the batch."""
        if self.assigner is None:
            raise RuntimeError(
                "YOLOV3Head has no train_cfg.assigner; build the detector with train_cfg=dict(assigner=dict("
                "type='GridAssigner', pos_iou_thr=0.5, neg_iou_thr=0.5, min_pos_iou=0))."
            )
        anchors_lvl, strides = self._anchors_and_strides(pred_maps)
        anchors = torch.cat(anchors_lvl)
        sizes = [tuple(p.shape[-2:]) for p in pred_maps]
        targets, negs = [], []
        for gt, labels in zip(gt_bboxes, gt_labels):
            gt = gt.to(anchors)
            labels = labels.to(anchors.device).long()
            flags = self.responsible_flags(sizes, gt, anchors.device)
            assign = self.assigner.assign(anchors, gt, None, labels, responsible_flags=flags)
            res = self.sampler.sample(assign, anchors, gt, labels)
            target = anchors.new_zeros((len(anchors), self.num_attrib))
            pos = res.pos_inds
            if len(pos):
                target[pos, :4] = self.bbox_coder.encode(res.pos_bboxes, res.pos_gt_bboxes, strides[pos])
                target[pos, 4] = 1.0
                onehot = F.one_hot(labels, self.num_classes).to(target)
                if self.one_hot_smoother:
                    onehot = onehot * (1 - self.one_hot_smoother) + self.one_hot_smoother / self.num_classes
                target[pos, 5:] = onehot[res.pos_assigned_gt_inds]
            neg = anchors.new_zeros(len(anchors))
            neg[res.neg_inds] = 1.0
            targets.append(target)
            negs.append(neg)
        return torch.stack(targets), torch.stack(negs)

    def loss(
        self,
        feats: Sequence[torch.Tensor],
        gt_bboxes: Sequence[torch.Tensor],
        gt_labels: Sequence[torch.Tensor],
        metas: Sequence[Mapping[str, Any]],
        gt_bboxes_ignore: Sequence[torch.Tensor | None] | None = None,
    ) -> dict[str, torch.Tensor]:
        """``loss_cls``, ``loss_conf``, ``loss_xy``, ``loss_wh`` of this batch."""
        return self.loss_by_feat(self(feats), gt_bboxes, gt_labels)

    def loss_by_feat(
        self,
        pred_maps: Sequence[torch.Tensor],
        gt_bboxes: Sequence[torch.Tensor],
        gt_labels: Sequence[torch.Tensor],
    ) -> dict[str, torch.Tensor]:
        """Losses from the prediction maps: classes, xy and wh on positives; objectness on positives and
        negatives (anchors that are neither, the ignored ones, do not count)."""
        pred = self._flatten(pred_maps)
        target, neg = self.get_targets(pred_maps, gt_bboxes, gt_labels)
        pos = target[..., 4]
        pos_and_neg = (pos + neg).clamp(max=1.0)
        pos_w = pos[..., None]
        return {
            "loss_cls": self.loss_cls(pred[..., 5:], target[..., 5:], weight=pos_w),
            "loss_conf": self.loss_conf(pred[..., 4], target[..., 4], weight=pos_and_neg),
            "loss_xy": self.loss_xy(pred[..., :2], target[..., :2], weight=pos_w),
            "loss_wh": self.loss_wh(pred[..., 2:4], target[..., 2:4], weight=pos_w),
        }

    # ------------------------------------------------------------------ inference
    def predict(
        self, feats: Sequence[torch.Tensor], metas: Sequence[Mapping[str, Any]]
    ) -> list[dict[str, torch.Tensor]]:
        """Per-image ``{'boxes', 'scores', 'labels'}`` in input-image pixels."""
        return self.predict_by_feat(self(feats), metas)

    def predict_by_feat(
        self, pred_maps: Sequence[torch.Tensor], metas: Sequence[Mapping[str, Any]], cfg: Any = None
    ) -> list[dict[str, torch.Tensor]]:
        """Decode, keep anchors with objectness ≥ ``conf_thr`` and class scores > ``score_thr`` (top
        ``nms_pre``), score = class score × objectness, drop boxes not wider/taller than ``min_bbox_size``,
        NMS per class, keep ``max_per_img``."""
        cfg = cfg if cfg is not None else self.test_cfg
        conf_thr = float(cfg_get(cfg, "conf_thr", -1))
        score_thr = float(cfg_get(cfg, "score_thr", 0.0))
        nms_pre = int(cfg_get(cfg, "nms_pre", -1))
        min_size = float(cfg_get(cfg, "min_bbox_size", -1))
        max_per_img = int(cfg_get(cfg, "max_per_img", 100))
        iou = nms_iou_threshold(cfg_get(cfg, "nms"))
        anchors_lvl, strides = self._anchors_and_strides(pred_maps)
        pred = self._flatten(pred_maps)
        boxes_all = self.bbox_coder.decode(
            torch.cat(anchors_lvl), torch.cat([pred[..., :2].sigmoid(), pred[..., 2:4]], -1), strides[:, None]
        )
        objectness_all = pred[..., 4].sigmoid()
        scores_all = pred[..., 5:].sigmoid()
        results = []
        for boxes, scores, objectness in zip(boxes_all, scores_all, objectness_all):
            if conf_thr > 0:
                keep = objectness >= conf_thr
                boxes, scores, objectness = boxes[keep], scores[keep], objectness[keep]
            cand = torch.nonzero(scores > score_thr)
            cand_scores = scores[cand[:, 0], cand[:, 1]]
            order = cand_scores.argsort(descending=True)
            if nms_pre > 0:
                order = order[:nms_pre]
            idx, labels = cand[order].unbind(1)
            boxes = boxes[idx]
            scores = cand_scores[order] * objectness[idx]
            if min_size >= 0:
                wh = boxes[:, 2:] - boxes[:, :2]
                ok = (wh[:, 0] > min_size) & (wh[:, 1] > min_size)
                boxes, scores, labels = boxes[ok], scores[ok], labels[ok]
            keep = batched_nms(boxes, scores, labels, iou)[:max_per_img]
            results.append({"boxes": boxes[keep], "scores": scores[keep], "labels": labels[keep]})
        return results
