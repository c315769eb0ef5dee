"""The standard RoI head: sample proposals, pool their features, classify and refine them (and, with a
mask head, segment them: Mask R-CNN)."""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn as nn

from kiln.registry import MODELS, TASK_UTILS

from ..task_modules import OHEMSampler
from ..utils import put_scalars, refuse_init_cfg
from .roi_extractor import bbox2roi

__all__ = ["StandardRoIHead"]


@MODELS.register_module()
class StandardRoIHead(nn.Module):
    """Second stage of Faster R-CNN: RoIAlign over FPN levels + a box head (MMDetection's StandardRoIHead).

    Args:
        bbox_roi_extractor: e.g. ``dict(type='SingleRoIExtractor', roi_layer=dict(type='RoIAlign',
            output_size=7, sampling_ratio=0), out_channels=256, featmap_strides=[4, 8, 16, 32])``.
        bbox_head: e.g. ``dict(type='Shared2FCBBoxHead', in_channels=256, fc_out_channels=1024,
            roi_feat_size=7, num_classes=80, ...)``.
        train_cfg: the ``rcnn`` train settings: ``assigner``, ``sampler``, ``pos_weight`` (and
            ``mask_size`` with a mask head: 28).
        test_cfg: the ``rcnn`` test settings: ``score_thr``, ``nms``, ``max_per_img`` (and
            ``mask_thr_binary`` with a mask head: 0.5).
        shared_head: layers run on every pooled RoI before the box head, e.g. the C4 res5 stage
            ``dict(type='ResLayer', depth=50, stage=3, stride=2, style='caffe')`` (Detectron2's
            ``Res5ROIHeads``: 14×14 RoIAlign at stride 16 → res5 → 7×7, then a ``BBoxHead`` with
            ``with_avg_pool=True``).
        mask_roi_extractor: RoI pooling for the mask head (``output_size=14``); ``None`` shares the box
            head's extractor (C4 Mask R-CNN, MMDetection's ``share_roi_extractor``).
        mask_head: e.g. ``dict(type='FCNMaskHead', num_convs=4, in_channels=256, conv_out_channels=256,
            num_classes=80, loss_mask=dict(type='CrossEntropyLoss', use_mask=True, loss_weight=1.0))``.
            The mask head trains on the positive RoIs of the box head's sample (``loss_mask``) and at test
            time predicts a mask for each detected box (:meth:`simple_test_mask`).
    """

    def __init__(
        self,
        bbox_roi_extractor: Mapping[str, Any],
        bbox_head: Mapping[str, Any],
        train_cfg: Mapping[str, Any] | None = None,
        test_cfg: Mapping[str, Any] | None = None,
        shared_head: Mapping[str, Any] | None = None,
        mask_roi_extractor: Mapping[str, Any] | None = None,
        mask_head: Mapping[str, Any] | None = None,
        init_cfg: Any = None,
    ) -> None:
        super().__init__()
        refuse_init_cfg(init_cfg, type(self).__name__)
        if mask_roi_extractor is not None and mask_head is None:
            raise ValueError("roi_head: mask_roi_extractor is set without a mask_head; add "
                             "mask_head=dict(type='FCNMaskHead', ...) or remove mask_roi_extractor.")
        self.bbox_roi_extractor = MODELS.build(bbox_roi_extractor, cfg_path="roi_head.bbox_roi_extractor")
        self.shared_head = (
            MODELS.build(shared_head, cfg_path="roi_head.shared_head") if shared_head is not None else None
        )
        self.bbox_head = MODELS.build(bbox_head, cfg_path="roi_head.bbox_head")
        self.mask_roi_extractor = (MODELS.build(mask_roi_extractor, cfg_path="roi_head.mask_roi_extractor")
                                   if mask_roi_extractor is not None else None)
        self.mask_head = (MODELS.build(mask_head, cfg_path="roi_head.mask_head")
                          if mask_head is not None else None)
        self.train_cfg = dict(train_cfg or {})
        self.test_cfg = dict(test_cfg or {})
        self.bbox_assigner = self.bbox_sampler = None
        if self.train_cfg:
            self.bbox_assigner = TASK_UTILS.build(
                self.train_cfg["assigner"], cfg_path="train_cfg.rcnn.assigner"
            )
            self.bbox_sampler = TASK_UTILS.build(self.train_cfg["sampler"], cfg_path="train_cfg.rcnn.sampler")

    @property
    def num_classes(self) -> int:
        """Foreground classes of the box head."""
        return self.bbox_head.num_classes

    @property
    def with_mask(self) -> bool:
        """Whether the head segments its detections (Mask R-CNN)."""
        return self.mask_head is not None

    def _mask_forward(self, feats: Sequence[torch.Tensor], rois: torch.Tensor) -> torch.Tensor:
        """Mask logits of ``rois`` (K×5): pooled by the mask extractor (or the box one), then the head."""
        extractor = self.mask_roi_extractor
        if extractor is None:
            extractor = self.bbox_roi_extractor
        roi_feats = extractor(feats[: extractor.num_inputs], rois)
        if self.shared_head is not None:
            roi_feats = self.shared_head(roi_feats)
        return self.mask_head(roi_feats)

    def _mask_loss(self, feats: Sequence[torch.Tensor], samples: Sequence[Any], gt_masks: Sequence[Any]
                   ) -> dict[str, torch.Tensor]:
        """``loss_mask`` of the mask head on the positive RoIs of ``samples``."""
        if gt_masks is None or len(gt_masks) != len(samples):
            raise KeyError(
                "roi_head has a mask_head but the training batch has no gt masks: load them with "
                "LoadAnnotations(with_mask=True) (MMDetection; 2.x: add 'gt_masks' to Collect keys) or "
                "MODEL.MASK_ON with INPUT.MASK_FORMAT (Detectron2)."
            )
        pos_rois = bbox2roi([s.pos_bboxes for s in samples])
        logits = self._mask_forward(feats, pos_rois)
        mask_size = self.train_cfg.get("mask_size", self.mask_head.mask_size)
        targets = self.mask_head.get_targets([s.pos_bboxes for s in samples],
                                             [s.pos_assigned_gt_inds for s in samples], gt_masks, mask_size)
        labels = torch.cat([s.pos_gt_labels for s in samples]) if samples else logits.new_zeros(0)
        return self.mask_head.loss(logits, targets, labels)

    def _bbox_forward(
        self, feats: Sequence[torch.Tensor], rois: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        roi_feats = self.bbox_roi_extractor(feats[: self.bbox_roi_extractor.num_inputs], rois)
        if self.shared_head is not None:
            roi_feats = self.shared_head(roi_feats)
        return self.bbox_head(roi_feats)

    def sample_proposals(
        self,
        proposals: Sequence[torch.Tensor],
        gt_bboxes: Sequence[torch.Tensor],
        gt_labels: Sequence[torch.Tensor],
        gt_bboxes_ignore: Sequence[torch.Tensor | None] | None = None,
        feats: Sequence[torch.Tensor] | None = None,
    ) -> list[Any]:
        """Assign each image's proposals to ground truths and sample them (gts added as proposals).

        An ``OHEMSampler`` (``train_cfg.rcnn.sampler``) ranks candidates by the box head's current
        classification loss on them, computed from ``feats`` (the image's slice of each level), as
        MMDetection's does.
        """
        if self.bbox_assigner is None:
            raise RuntimeError(
                "StandardRoIHead needs train_cfg.rcnn (assigner, sampler) to train; give the "
                "detector train_cfg=dict(rpn=..., rpn_proposal=..., rcnn=...)."
            )
        results = []
        for i, (props, gts, labels) in enumerate(zip(proposals, gt_bboxes, gt_labels)):
            gts = gts.to(props.device, torch.float32)
            labels = labels.to(props.device, torch.long)
            ignore = gt_bboxes_ignore[i] if gt_bboxes_ignore is not None else None
            assign = self.bbox_assigner.assign(props, gts, ignore, labels)
            extra = {}
            if isinstance(self.bbox_sampler, OHEMSampler):
                if feats is None:
                    raise ValueError("OHEMSampler ranks RoIs by the box head's loss: sample_proposals "
                                     "needs feats.")
                extra["loss_fn"] = functools.partial(self._ohem_loss, [f[i: i + 1] for f in feats])
            results.append(self.bbox_sampler.sample(assign, props, gts, labels, **extra))
        return results

    def _ohem_loss(self, image_feats: Sequence[torch.Tensor], bboxes: torch.Tensor,
                   labels: torch.Tensor) -> torch.Tensor:
        """Per-RoI classification loss of the current box head (negatives: the background class)."""
        rois = bbox2roi([bboxes])
        cls_score, _ = self._bbox_forward(image_feats, rois)
        labels = torch.where(labels < 0, torch.full_like(labels, self.num_classes), labels)
        return self.bbox_head.loss_cls(cls_score, labels, reduction_override="none")

    def forward_train(
        self,
        feats: Sequence[torch.Tensor],
        proposals: Sequence[torch.Tensor],
        gt_bboxes: Sequence[torch.Tensor],
        gt_labels: Sequence[torch.Tensor],
        gt_bboxes_ignore: Sequence[torch.Tensor | None] | None = None,
        gt_masks: Sequence[Any] | None = None,
    ) -> dict[str, torch.Tensor]:
        """``loss_cls``, ``loss_bbox`` (and the logged ``acc``) of the box head on sampled RoIs, and
        ``loss_mask`` of the mask head on their positives (``gt_masks``: per image ``BitmapMasks`` or
        ``PolygonMasks``)."""
        proposals = [p.detach() for p in proposals]
        samples = self.sample_proposals(proposals, gt_bboxes, gt_labels, gt_bboxes_ignore, feats=feats)
        losses = self._bbox_loss(feats, samples)
        if self.with_mask:
            losses.update(self._mask_loss(feats, samples, gt_masks))
        return losses

    def _bbox_loss(self, feats: Sequence[torch.Tensor], samples: Sequence[Any]) -> dict[str, torch.Tensor]:
        rois = bbox2roi([torch.cat([s.pos_bboxes, s.neg_bboxes]) for s in samples])
        cls_score, bbox_pred = self._bbox_forward(feats, rois)
        targets = self.bbox_head.get_targets(
            [s.pos_bboxes for s in samples],
            [s.neg_bboxes for s in samples],
            [s.pos_gt_bboxes for s in samples],
            [s.pos_gt_labels for s in samples],
            pos_weight=float(self.train_cfg.get("pos_weight", -1)),
        )
        losses = self.bbox_head.loss(cls_score, bbox_pred, rois, *targets)
        put_scalars(
            rcnn_num_pos_rois=sum(len(s.pos_inds) for s in samples) / max(len(samples), 1),
            rcnn_num_neg_rois=sum(len(s.neg_inds) for s in samples) / max(len(samples), 1),
        )
        return losses

    def simple_test(
        self,
        feats: Sequence[torch.Tensor],
        proposals: Sequence[torch.Tensor],
        img_shapes: Sequence[Sequence[int]],
        cfg: Mapping[str, Any] | None = None,
    ) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        """Per image ``(boxes, scores, labels)`` in input-image pixels (not yet rescaled)."""
        cfg = dict(cfg if cfg is not None else self.test_cfg)
        rois = bbox2roi(proposals).to(feats[0].device)
        cls_score, bbox_pred = self._bbox_forward(feats, rois)
        counts = [len(p) for p in proposals]
        results = []
        per_image = zip(rois.split(counts), cls_score.split(counts), bbox_pred.split(counts))
        for i, (r, c, b) in enumerate(per_image):
            results.append(self.bbox_head.get_bboxes(r, c, b, img_shapes[i], cfg))
        return results

    def simple_test_mask(
        self,
        feats: Sequence[torch.Tensor],
        det_bboxes: Sequence[torch.Tensor],
        det_labels: Sequence[torch.Tensor],
    ) -> list[torch.Tensor]:
        """Per image, the mask probabilities (N×28×28) of each detection's class, covering its box.

        ``det_bboxes`` are the detections in input-image pixels; pasting into the original image is the
        detector's postprocessing (:func:`~kiln.models.roi_heads.mask_paste.paste_masks_in_image`).
        """
        if not self.with_mask:
            raise RuntimeError("simple_test_mask: this roi_head has no mask_head.")
        rois = bbox2roi(list(det_bboxes)).to(feats[0].device)
        logits = self._mask_forward(feats, rois)
        probs = self.mask_head.predict_probs(logits, torch.cat(list(det_labels)).to(logits.device))
        return list(probs.split([len(b) for b in det_bboxes]))
