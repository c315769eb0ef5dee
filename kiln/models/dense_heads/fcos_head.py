"""``FCOSHead``: Tian et al., "FCOS: Fully Convolutional One-Stage Object Detection" (ICCV 2019).

Every point inside a ground-truth box (or, with ``center_sampling``, inside a radius around its centre)
whose largest side distance falls in its level's regress range predicts that box's class and its four
side distances; a centerness branch learns how central the point is, and multiplies the class scores
at test time so off-centre boxes rank lower in NMS.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn as nn

from kiln.registry import MODELS

from ..scale import Scale
from ..utils import put_scalars
from .anchor_free_head import INF, AnchorFreeHead
from .dense_predict import reduce_mean

__all__ = ["FCOSHead", "centerness_target"]


def centerness_target(distances: torch.Tensor) -> torch.Tensor:
    """``sqrt(min(l, r)/max(l, r) · min(t, b)/max(t, b))`` of N×4 ``(l, t, r, b)`` distances (1 at a box's
    centre, 0 on its border)."""
    if len(distances) == 0:
        return distances[:, 0]
    lr = distances[:, [0, 2]]
    tb = distances[:, [1, 3]]
    ratio = (lr.min(-1).values / lr.max(-1).values) * (tb.min(-1).values / tb.max(-1).values)
    return ratio.sqrt()


@MODELS.register_module()
class FCOSHead(AnchorFreeHead):
    """FCOS head (MMDetection's options and state-dict names).

    Args:
        regress_ranges: per level, the ``(min, max]`` range of a point's largest side distance it may
            learn (``-1`` / ``1e8`` for open ends).
        center_sampling: positives only within ``center_sample_radius · stride`` of the box centre.
        norm_on_bbox: regress distances divided by the level stride, through a ReLU (instead of ``exp``).
        centerness_on_reg: the centerness conv reads the regression tower (else the class tower).
        loss_centerness: ``CrossEntropyLoss(use_sigmoid=True)`` on the centerness logit.
        norm_cfg: default ``GN`` with 32 groups (as MMDetection).
        cls_predictor_cfg: MMDetection's normalized-conv classifier; not implemented (refused).
        Other arguments: see :class:`AnchorFreeHead`.

    Losses: focal loss over all points / #positives, IoU (or GIoU) loss of positives weighted by their
    centerness target / sum of those targets, centerness BCE / #positives (counts averaged over ranks).
    """

    def __init__(
        self,
        num_classes: int,
        in_channels: int,
        regress_ranges: Sequence[Sequence[float]] = ((-1, 64), (64, 128), (128, 256), (256, 512), (512, INF)),
        center_sampling: bool = False,
        center_sample_radius: float = 1.5,
        norm_on_bbox: bool = False,
        centerness_on_reg: bool = False,
        loss_cls: Mapping[str, Any] | None = None,
        loss_bbox: Mapping[str, Any] | None = None,
        loss_centerness: Mapping[str, Any] | None = None,
        norm_cfg: Mapping[str, Any] | None = dict(type="GN", num_groups=32, requires_grad=True),  # noqa: B006
        cls_predictor_cfg: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        if cls_predictor_cfg is not None:
            raise NotImplementedError(
                f"model.bbox_head (FCOSHead): cls_predictor_cfg={cls_predictor_cfg!r} is not supported: "
                "the normalized-conv classifier (NormedConv2d) is not implemented; remove cls_predictor_cfg."
            )
        self.regress_ranges = [tuple(float(v) for v in r) for r in regress_ranges]
        self.center_sampling = bool(center_sampling)
        self.center_sample_radius = float(center_sample_radius)
        self.norm_on_bbox = bool(norm_on_bbox)
        self.centerness_on_reg = bool(centerness_on_reg)
        super().__init__(num_classes, in_channels, loss_cls=loss_cls, loss_bbox=loss_bbox, norm_cfg=norm_cfg,
                         **kwargs)
        if len(self.regress_ranges) != len(self.strides):
            raise ValueError(
                f"FCOSHead: {len(self.regress_ranges)} regress_ranges for {len(self.strides)} strides "
                f"{self.strides}; give one (min, max) range per level."
            )
        self.loss_centerness = MODELS.build(
            dict(loss_centerness) if loss_centerness is not None
            else dict(type="CrossEntropyLoss", use_sigmoid=True, loss_weight=1.0),
            cfg_path="bbox_head.loss_centerness",
        )

    def _init_layers(self) -> None:
        super()._init_layers()
        cin = self.feat_channels if self.stacked_convs else self.in_channels
        self.conv_centerness = nn.Conv2d(cin, 1, 3, padding=1)
        self.scales = nn.ModuleList(Scale(1.0) for _ in self.strides)

    def init_weights(self) -> None:
        """See :meth:`AnchorFreeHead.init_weights`; the level scales start at 1."""
        super().init_weights()
        if hasattr(self, "scales"):
            for s in self.scales:
                nn.init.ones_(s.scale)

    def forward(
        self, feats: Sequence[torch.Tensor]
    ) -> tuple[list[torch.Tensor], list[torch.Tensor], list[torch.Tensor]]:
        """Per-level class logits, box distances and centerness logits."""
        cls_scores, bbox_preds, centernesses = [], [], []
        for x, scale, stride in zip(feats, self.scales, self.strides):
            c, b, ctr = self.forward_single_level(x, scale, stride)
            cls_scores.append(c)
            bbox_preds.append(b)
            centernesses.append(ctr)
        return cls_scores, bbox_preds, centernesses

    def forward_single_level(
        self, x: torch.Tensor, scale: Scale, stride: Any
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One level. Distances are positive: ``exp`` of the scaled output, or with ``norm_on_bbox`` a ReLU
        of it in stride units (multiplied back to pixels outside training)."""
        cls_score, bbox_pred, cls_feat, reg_feat = self.forward_single(x)
        centerness = self.conv_centerness(reg_feat if self.centerness_on_reg else cls_feat)
        bbox_pred = scale(bbox_pred).float()
        if self.norm_on_bbox:
            bbox_pred = bbox_pred.clamp(min=0)
            if not self.training:
                bbox_pred = bbox_pred * (stride if isinstance(stride, (int, float)) else stride[0])
        else:
            bbox_pred = bbox_pred.exp()
        return cls_score, bbox_pred, centerness

    # ------------------------------------------------------------------ targets
    def get_targets(
        self,
        points: Sequence[torch.Tensor],
        gt_bboxes: Sequence[torch.Tensor],
        gt_labels: Sequence[torch.Tensor],
    ) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Per level, the labels (N·P_l) and distance targets (N·P_l×4, divided by the stride with
        ``norm_on_bbox``) of all images, image-major within each level."""
        num_per_level = [len(p) for p in points]
        all_points = torch.cat(points)
        ranges = torch.cat(
            [p.new_tensor(r)[None].expand(len(p), 2) for p, r in zip(points, self.regress_ranges)]
        )
        radius = torch.cat(
            [p.new_full((len(p),), self._stride(i) * self.center_sample_radius) for i, p in enumerate(points)]
        )
        labels_img, targets_img = [], []
        for boxes, labels in zip(gt_bboxes, gt_labels):
            lab, tgt = self._targets_single(all_points, boxes.to(all_points), labels, ranges, radius)
            labels_img.append(lab.split(num_per_level))
            targets_img.append(tgt.split(num_per_level))
        labels_lvl, targets_lvl = [], []
        for lvl in range(len(points)):
            labels_lvl.append(torch.cat([lab[lvl] for lab in labels_img]))
            t = torch.cat([tgt[lvl] for tgt in targets_img])
            if self.norm_on_bbox:
                t = t / self._stride(lvl)
            targets_lvl.append(t)
        return labels_lvl, targets_lvl

    def _stride(self, lvl: int) -> float:
        s = self.strides[lvl]
        return float(s if isinstance(s, (int, float)) else s[0])

    def _targets_single(
        self,
        points: torch.Tensor,
        gt_bboxes: torch.Tensor,
        gt_labels: torch.Tensor,
        ranges: torch.Tensor,
        radius: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        xs, ys = points[:, 0, None], points[:, 1, None]  # P×1
        if len(gt_bboxes):
            dist = torch.stack(
                [xs - gt_bboxes[:, 0], ys - gt_bboxes[:, 1], gt_bboxes[:, 2] - xs, gt_bboxes[:, 3] - ys], -1
            )  # P×G×4
            if self.center_sampling:
                # The box's centre region (radius · stride on this point's level), clipped to the box.
                cx = (gt_bboxes[:, 0] + gt_bboxes[:, 2]) / 2
                cy = (gt_bboxes[:, 1] + gt_bboxes[:, 3]) / 2
                r = radius[:, None]
                x1 = torch.maximum(cx - r, gt_bboxes[:, 0])
                y1 = torch.maximum(cy - r, gt_bboxes[:, 1])
                x2 = torch.minimum(cx + r, gt_bboxes[:, 2])
                y2 = torch.minimum(cy + r, gt_bboxes[:, 3])
                inside = torch.stack([xs - x1, ys - y1, x2 - xs, y2 - ys], -1).min(-1).values > 0
            else:
                inside = dist.min(-1).values > 0
            max_dist = dist.max(-1).values
            in_range = (max_dist >= ranges[:, 0, None]) & (max_dist <= ranges[:, 1, None])
        else:
            inside = in_range = points.new_zeros((len(points), 0), dtype=torch.bool)
        return self.point_targets(points, gt_bboxes, gt_labels, inside, in_range)

    # ------------------------------------------------------------------ losses
    def loss(
        self,
        feats: Sequence[torch.Tensor],
        gt_bboxes: Sequence[torch.Tensor],
        gt_labels: Sequence[torch.Tensor],
        metas: Sequence[Mapping[str, Any]],
        gt_bboxes_ignore: Sequence[torch.Tensor | None] | None = None,
    ) -> dict[str, torch.Tensor]:
        """``{'loss_cls', 'loss_bbox', 'loss_centerness'}`` of this batch."""
        return self.loss_by_feat(*self(feats), gt_bboxes, gt_labels, metas, gt_bboxes_ignore)

    def loss_by_feat(
        self,
        cls_scores: Sequence[torch.Tensor],
        bbox_preds: Sequence[torch.Tensor],
        centernesses: Sequence[torch.Tensor],
        gt_bboxes: Sequence[torch.Tensor],
        gt_labels: Sequence[torch.Tensor],
        metas: Sequence[Mapping[str, Any]],
        gt_bboxes_ignore: Sequence[torch.Tensor | None] | None = None,
    ) -> dict[str, torch.Tensor]:
        """Losses from head outputs.

        ``gt_bboxes_ignore`` (crowd regions) take no part, as in MMDetection's FCOS: points inside them are
        negatives like any other point outside the ground truth.
        """
        n = cls_scores[0].shape[0]
        points = self.points([c.shape[-2:] for c in cls_scores], bbox_preds[0])
        labels_lvl, targets_lvl = self.get_targets(points, gt_bboxes, gt_labels)
        # Level-major, image-minor: the same order get_targets returns.
        flat_cls = torch.cat([c.permute(0, 2, 3, 1).reshape(-1, self.cls_out_channels) for c in cls_scores])
        flat_reg = torch.cat([b.permute(0, 2, 3, 1).reshape(-1, 4) for b in bbox_preds])
        flat_ctr = torch.cat([c.permute(0, 2, 3, 1).reshape(-1) for c in centernesses])
        flat_labels = torch.cat(labels_lvl)
        flat_targets = torch.cat(targets_lvl)
        flat_points = torch.cat([p.repeat(n, 1) for p in points])

        pos = torch.nonzero((flat_labels >= 0) & (flat_labels < self.num_classes)).flatten()
        num_pos = max(float(reduce_mean(flat_cls.new_tensor(float(len(pos))))), 1.0)
        loss_cls = self.loss_cls(flat_cls, flat_labels, avg_factor=num_pos)

        pos_reg, pos_ctr, pos_targets = flat_reg[pos], flat_ctr[pos], flat_targets[pos]
        ctr_targets = centerness_target(pos_targets)
        ctr_denorm = max(float(reduce_mean(ctr_targets.sum().detach())), 1e-6)
        if len(pos):
            pos_points = flat_points[pos]
            loss_bbox = self.loss_bbox(
                self.bbox_coder.decode(pos_points, pos_reg),
                self.bbox_coder.decode(pos_points, pos_targets),
                weight=ctr_targets,
                avg_factor=ctr_denorm,
            )
            loss_centerness = self.loss_centerness(pos_ctr, ctr_targets, avg_factor=num_pos)
        else:  # keep every output in the graph (DDP) with zero loss
            loss_bbox = pos_reg.sum()
            loss_centerness = pos_ctr.sum()
        put_scalars(head_num_pos_points=len(pos) / max(n, 1))
        return {"loss_cls": loss_cls, "loss_bbox": loss_bbox, "loss_centerness": loss_centerness}
