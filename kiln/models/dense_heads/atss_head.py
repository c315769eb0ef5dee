"""``ATSSHead``: RetinaNet-style towers with one anchor per location, a centerness branch and the ATSS
assignment (Zhang et al., CVPR 2020), with MMDetection's options and state-dict names."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn as nn

from kiln.registry import MODELS

from ..layers import ConvNormAct
from ..scale import Scale
from ..task_modules.distance_point_coder import bbox2distance
from ..utils import cfg_get, put_scalars
from .anchor_free_head import refuse_head_options
from .anchor_head import AnchorHead
from .dense_predict import predict_dense, reduce_mean
from .fcos_head import centerness_target

__all__ = ["ATSSHead"]


@MODELS.register_module()
class ATSSHead(AnchorHead):
    """ATSS head: ``cls_convs``/``reg_convs`` towers (GN by default), ``atss_cls``, ``atss_reg``,
    ``atss_centerness`` and one learnable ``Scale`` per level on the box branch.

    Training assigns anchors with ``train_cfg.assigner`` (``ATSSAssigner``); boxes are regressed decoded
    (``reg_decoded_bbox=True``: the GIoU loss compares boxes), weighted by each positive's centerness
    target and divided by the sum of those targets; classification (focal) and centerness (BCE) losses are
    divided by the number of positives. At test time class scores are multiplied by the centerness.

    Args:
        pred_kernel_size: kernel of the three prediction convs.
        stacked_convs: convs per tower.
        conv_cfg: refused unless ``None`` (plain convs only).
        norm_cfg: tower norm (default ``dict(type='GN', num_groups=32)``).
        loss_centerness: the centerness loss (sigmoid cross-entropy).
        Other arguments: see :class:`AnchorHead`.
    """

    def __init__(
        self,
        num_classes: int,
        in_channels: int,
        pred_kernel_size: int = 3,
        stacked_convs: int = 4,
        conv_cfg: Mapping[str, Any] | None = None,
        norm_cfg: Mapping[str, Any] | None = dict(type="GN", num_groups=32, requires_grad=True),  # noqa: B006
        reg_decoded_bbox: bool = True,
        loss_centerness: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        refuse_head_options("ATSSHead", conv_cfg=conv_cfg)
        if kwargs.get("loss_normalizer_momentum") is not None:
            raise ValueError(
                "ATSSHead(loss_normalizer_momentum=...): ATSS divides its losses by this batch's positives "
                "(and centerness sum), not by a moving average; remove loss_normalizer_momentum."
            )
        self.pred_kernel_size = int(pred_kernel_size)
        self.stacked_convs = int(stacked_convs)
        self.norm_cfg = dict(norm_cfg) if norm_cfg is not None else None
        if kwargs.get("loss_cls") is None:
            kwargs["loss_cls"] = dict(
                type="FocalLoss", use_sigmoid=True, gamma=2.0, alpha=0.25, loss_weight=1.0
            )
        if kwargs.get("loss_bbox") is None:
            kwargs["loss_bbox"] = dict(type="GIoULoss", loss_weight=2.0)
        if kwargs.get("anchor_generator") is None:
            kwargs["anchor_generator"] = dict(
                type="AnchorGenerator", ratios=[1.0], octave_base_scale=8, scales_per_octave=1,
                strides=[8, 16, 32, 64, 128],
            )
        super().__init__(num_classes, in_channels, reg_decoded_bbox=reg_decoded_bbox, **kwargs)
        self.loss_centerness = MODELS.build(
            dict(loss_centerness) if loss_centerness is not None
            else dict(type="CrossEntropyLoss", use_sigmoid=True, loss_weight=1.0),
            cfg_path="bbox_head.loss_centerness",
        )
        border = cfg_get(self.train_cfg, "allowed_border", -1)
        if border is not None and border >= 0:
            raise NotImplementedError(
                f"ATSSHead: train_cfg.allowed_border={border} is not supported; ATSS assigns among all "
                "anchors (allowed_border=-1, as MMDetection's ATSS configs set)."
            )

    def _init_layers(self) -> None:
        def tower() -> nn.ModuleList:
            return nn.ModuleList(
                ConvNormAct(self.in_channels if i == 0 else self.feat_channels, self.feat_channels, 3,
                            padding=1, norm_cfg=self.norm_cfg)
                for i in range(self.stacked_convs)
            )

        self.cls_convs = tower()
        self.reg_convs = tower()
        cin = self.feat_channels if self.stacked_convs else self.in_channels
        k, pad = self.pred_kernel_size, self.pred_kernel_size // 2
        self.atss_cls = nn.Conv2d(cin, self.num_anchors * self.cls_out_channels, k, padding=pad)
        self.atss_reg = nn.Conv2d(cin, self.num_anchors * 4, k, padding=pad)
        self.atss_centerness = nn.Conv2d(cin, self.num_anchors, k, padding=pad)
        self.scales = nn.ModuleList(Scale(1.0) for _ in self.prior_generator.strides)

    def init_weights(self) -> None:
        """Normal(0, 0.01) convs with zero bias, class bias ``-log(99)``, level scales 1."""
        super().init_weights()
        nn.init.constant_(self.atss_cls.bias, -math.log((1 - 0.01) / 0.01))
        for s in self.scales:
            nn.init.ones_(s.scale)

    def forward(
        self, feats: Sequence[torch.Tensor]
    ) -> tuple[list[torch.Tensor], list[torch.Tensor], list[torch.Tensor]]:
        """Per-level class logits, box deltas and centerness logits."""
        cls_scores, bbox_preds, centernesses = [], [], []
        for x, scale in zip(feats, self.scales):
            c = x
            for conv in self.cls_convs:
                c = conv(c)
            r = x
            for conv in self.reg_convs:
                r = conv(r)
            cls_scores.append(self.atss_cls(c))
            bbox_preds.append(scale(self.atss_reg(r)).float())
            centernesses.append(self.atss_centerness(r))
        return cls_scores, bbox_preds, centernesses

    # ------------------------------------------------------------------ training
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

    def atss_targets(
        self,
        anchors_lvl: Sequence[torch.Tensor],
        gt_bboxes: Sequence[torch.Tensor],
        gt_labels: Sequence[torch.Tensor],
        gt_bboxes_ignore: Sequence[torch.Tensor | None] | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, int]:
        """Per image (stacked): labels (N×A, background = ``num_classes``), label weights (ignored anchors
        0), box targets (N×A×4, ground-truth boxes of positives), and the number of positives."""
        if self.assigner is None:
            raise RuntimeError(
                "ATSSHead has no train_cfg.assigner; build the detector with "
                "train_cfg=dict(assigner=dict(type='ATSSAssigner', topk=9))."
            )
        num_level = [len(a) for a in anchors_lvl]
        anchors = torch.cat(anchors_lvl)
        pos_weight = cfg_get(self.train_cfg, "pos_weight", -1)
        labels_all, weights_all, targets_all, num_pos = [], [], [], 0
        for i, (gt, lab) in enumerate(zip(gt_bboxes, gt_labels)):
            ignore = gt_bboxes_ignore[i] if gt_bboxes_ignore else None
            res = self.assigner.assign(anchors, num_level, gt.to(anchors), lab, ignore)
            labels = anchors.new_full((len(anchors),), self.num_classes, dtype=torch.long)
            weights = anchors.new_zeros(len(anchors))
            targets = anchors.new_zeros((len(anchors), 4))
            pos = torch.nonzero(res.gt_inds > 0).flatten()
            if len(pos):
                matched = res.gt_inds[pos] - 1
                targets[pos] = gt.to(anchors)[matched] if self.reg_decoded_bbox else self.bbox_coder.encode(
                    anchors[pos], gt.to(anchors)[matched]
                )
                labels[pos] = lab[matched]
                weights[pos] = 1.0 if pos_weight is None or pos_weight <= 0 else float(pos_weight)
            weights[res.gt_inds == 0] = 1.0
            num_pos += len(pos)
            labels_all.append(labels)
            weights_all.append(weights)
            targets_all.append(targets)
        return torch.stack(labels_all), torch.stack(weights_all), torch.stack(targets_all), num_pos

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
        """``{'loss_cls', 'loss_bbox', 'loss_centerness'}`` from head outputs (MMDetection's sums over
        levels)."""
        n = cls_scores[0].shape[0]
        sizes = [c.shape[-2:] for c in cls_scores]
        anchors_lvl = self.prior_generator.grid_priors(sizes, cls_scores[0].device)
        labels, weights, targets, num_pos = self.atss_targets(
            anchors_lvl, gt_bboxes, gt_labels, gt_bboxes_ignore
        )
        anchors = torch.cat(anchors_lvl)[None].expand(n, -1, -1)
        cls = self._flatten(cls_scores, self.cls_out_channels)
        reg = self._flatten(bbox_preds, 4)
        ctr = self._flatten(centernesses, 1)[..., 0]
        avg_factor = max(float(reduce_mean(cls.new_tensor(float(num_pos)))), 1.0)
        loss_cls = self.loss_cls(
            cls.reshape(-1, self.cls_out_channels),
            labels.reshape(-1),
            weights.reshape(-1),
            avg_factor=avg_factor,
        )
        pos = (labels >= 0) & (labels < self.num_classes)
        pos_anchors, pos_targets = anchors[pos], targets[pos]
        if self.reg_decoded_bbox:
            pos_gt = pos_targets
        else:
            pos_gt = self.bbox_coder.decode(pos_anchors, pos_targets)
        anchor_ctr = (pos_anchors[:, :2] + pos_anchors[:, 2:]) / 2
        ctr_targets = centerness_target(bbox2distance(anchor_ctr, pos_gt))
        ctr_sum = max(float(reduce_mean(ctr_targets.sum().detach())), 1.0)
        if pos.any():
            pred_boxes = self.bbox_coder.decode(pos_anchors, reg[pos])
            loss_bbox = self.loss_bbox(pred_boxes, pos_gt, weight=ctr_targets, avg_factor=1.0) / ctr_sum
            loss_centerness = self.loss_centerness(ctr[pos], ctr_targets, avg_factor=avg_factor)
        else:  # zero losses that keep every output in the graph (DDP)
            loss_bbox = reg.sum() * 0.0
            loss_centerness = ctr.sum() * 0.0
        put_scalars(head_num_pos_anchors=num_pos / max(n, 1))
        return {"loss_cls": loss_cls, "loss_bbox": loss_bbox, "loss_centerness": loss_centerness}

    # ------------------------------------------------------------------ inference
    def predict_by_feat(  # type: ignore[override]
        self,
        cls_scores: Sequence[torch.Tensor],
        bbox_preds: Sequence[torch.Tensor],
        score_factors: Sequence[torch.Tensor] | None = None,
        metas: Sequence[Mapping[str, Any]] = (),
        cfg: Any = None,
    ) -> list[dict[str, torch.Tensor]]:
        """Decode deltas from the anchors, scores times centerness, then NMS (see :func:`predict_dense`)."""
        anchors = self.prior_generator.grid_priors([c.shape[-2:] for c in cls_scores], cls_scores[0].device)
        return predict_dense(
            cls_scores,
            bbox_preds,
            score_factors,
            anchors,
            lambda a, d, shape: self.bbox_coder.decode(a, d, max_shape=shape),
            metas,
            cfg if cfg is not None else self.test_cfg,
            self.use_sigmoid_cls,
        )

    def predict(
        self, feats: Sequence[torch.Tensor], metas: Sequence[Mapping[str, Any]]
    ) -> list[dict[str, torch.Tensor]]:
        """Per-image ``{'boxes', 'scores', 'labels'}`` in input-image pixels."""
        cls_scores, bbox_preds, centernesses = self(feats)
        return self.predict_by_feat(cls_scores, bbox_preds, centernesses, metas)
