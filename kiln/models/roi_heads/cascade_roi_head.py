"""Cascade R-CNN's RoI head (Cai & Vasconcelos 2018): box heads in sequence, each trained at a higher IoU."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from kiln.registry import MODELS, TASK_UTILS

from ..utils import nms_iou_threshold, put_scalars, refuse_init_cfg
from .bbox_head import multiclass_nms
from .roi_extractor import bbox2roi

__all__ = ["CascadeRoIHead"]


def _per_stage(value: Any, num_stages: int, what: str) -> list[Any]:
    if isinstance(value, (list, tuple)):
        if len(value) != num_stages:
            raise ValueError(f"roi_head.{what}: {len(value)} entries for num_stages={num_stages}; give "
                             f"one per stage (or a single dict shared by all stages).")
        return list(value)
    return [value] * num_stages


@MODELS.register_module()
class CascadeRoIHead(nn.Module):
    """``num_stages`` box heads; stage ``i+1`` classifies and regresses the boxes refined by stage ``i``.

    Args:
        num_stages: number of stages (3 in the paper).
        stage_loss_weights: weight of each stage's losses (``[1, 0.5, 0.25]``).
        bbox_roi_extractor: one extractor config shared by the stages, or one per stage.
        bbox_head: one box-head config per stage (usually ``reg_class_agnostic=True`` with
            decreasing ``target_stds``), or one shared config.
        train_cfg: ``rcnn`` train settings, one per stage (assigner IoU 0.5 / 0.6 / 0.7).
        test_cfg: ``rcnn`` test settings (``score_thr``, ``nms``, ``max_per_img``, ``mask_thr_binary``).
        mask_roi_extractor, mask_head: Cascade Mask R-CNN: one mask head per stage (or one config shared
            by all stages), each trained on its stage's positive RoIs; ``mask_roi_extractor=None`` pools
            mask features with the stage's box extractor.
        mask_head_per_stage: ``True`` (MMDetection): as above. ``False`` (Detectron2's
            ``CascadeROIHeads``): one ``mask_head`` (and ``mask_roi_extractor``), trained on the positives
            of the first stage's sample (``loss_mask``) and run on the last stage's boxes.

    Training losses are named ``s{i}.loss_cls``, ``s{i}.loss_bbox``, ``s{i}.loss_mask`` (weighted) and
    ``s{i}.acc``. At test time the class scores of all stages are averaged and the last stage's boxes are
    used; the mask probabilities of all stages' mask heads on those boxes are averaged (as MMDetection).
    """

    def __init__(
        self,
        num_stages: int,
        stage_loss_weights: Sequence[float],
        bbox_roi_extractor: Mapping[str, Any] | Sequence[Mapping[str, Any]],
        bbox_head: Mapping[str, Any] | Sequence[Mapping[str, Any]],
        train_cfg: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None = None,
        test_cfg: Mapping[str, Any] | None = None,
        mask_roi_extractor: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None = None,
        mask_head: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None = None,
        shared_head: Any = None,
        init_cfg: Any = None,
        mask_head_per_stage: bool = True,
    ) -> None:
        super().__init__()
        refuse_init_cfg(init_cfg, type(self).__name__)
        if shared_head is not None:
            raise NotImplementedError("roi_head.shared_head: kiln's CascadeRoIHead has no shared head (C4 "
                                      "cascades are not implemented); remove it, or use an FPN cascade.")
        if mask_roi_extractor is not None and mask_head is None:
            raise ValueError("roi_head: mask_roi_extractor is set without a mask_head; add "
                             "mask_head=dict(type='FCNMaskHead', ...) or remove mask_roi_extractor.")
        self.num_stages = int(num_stages)
        self.stage_loss_weights = [float(w) for w in stage_loss_weights]
        if len(self.stage_loss_weights) != self.num_stages:
            raise ValueError(f"roi_head.stage_loss_weights has {len(self.stage_loss_weights)} entries for "
                             f"num_stages={self.num_stages}.")
        self.bbox_roi_extractor = nn.ModuleList(
            MODELS.build(c, cfg_path=f"roi_head.bbox_roi_extractor.{i}")
            for i, c in enumerate(_per_stage(bbox_roi_extractor, self.num_stages, "bbox_roi_extractor")))
        self.bbox_head = nn.ModuleList(
            MODELS.build(c, cfg_path=f"roi_head.bbox_head.{i}")
            for i, c in enumerate(_per_stage(bbox_head, self.num_stages, "bbox_head")))
        self.mask_head_per_stage = bool(mask_head_per_stage)
        if self.mask_head_per_stage:
            self.mask_head = None if mask_head is None else nn.ModuleList(
                MODELS.build(c, cfg_path=f"roi_head.mask_head.{i}")
                for i, c in enumerate(_per_stage(mask_head, self.num_stages, "mask_head")))
            self.mask_roi_extractor = None if mask_roi_extractor is None else nn.ModuleList(
                MODELS.build(c, cfg_path=f"roi_head.mask_roi_extractor.{i}")
                for i, c in enumerate(_per_stage(mask_roi_extractor, self.num_stages, "mask_roi_extractor")))
        else:
            for key, value in (("mask_head", mask_head), ("mask_roi_extractor", mask_roi_extractor)):
                if isinstance(value, (list, tuple)):
                    raise ValueError(f"roi_head.{key}: with mask_head_per_stage=False give one dict (one "
                                     "mask head for all stages, Detectron2's CascadeROIHeads), not a list.")
            self.mask_head = MODELS.build(mask_head, cfg_path="roi_head.mask_head") if mask_head else None
            self.mask_roi_extractor = None
            if mask_roi_extractor is not None:
                self.mask_roi_extractor = MODELS.build(mask_roi_extractor,
                                                       cfg_path="roi_head.mask_roi_extractor")
        self.test_cfg = dict(test_cfg or {})
        self.train_cfg = _per_stage(train_cfg, self.num_stages, "train_cfg") if train_cfg else []
        self.assigners = [TASK_UTILS.build(c["assigner"], cfg_path=f"train_cfg.rcnn.{i}.assigner")
                          for i, c in enumerate(self.train_cfg)]
        self.samplers = [TASK_UTILS.build(c["sampler"], cfg_path=f"train_cfg.rcnn.{i}.sampler")
                         for i, c in enumerate(self.train_cfg)]
        for i, c in enumerate(self.train_cfg):
            if str(c["sampler"].get("type", "")) == "OHEMSampler":
                raise NotImplementedError(
                    f"train_cfg.rcnn.{i}.sampler.type='OHEMSampler': kiln mines hard RoIs in StandardRoIHead "
                    f"(Faster R-CNN) only, not per cascade stage; use type='RandomSampler' here.")

    @property
    def num_classes(self) -> int:
        """Foreground classes (of the last stage's head)."""
        return self.bbox_head[-1].num_classes

    @property
    def with_mask(self) -> bool:
        """Whether the stages segment their detections (Cascade Mask R-CNN)."""
        return self.mask_head is not None

    def _stage_mask_head(self, stage: int) -> nn.Module:
        return self.mask_head[stage] if self.mask_head_per_stage else self.mask_head

    def _mask_forward(self, stage: int, feats: Sequence[torch.Tensor], rois: torch.Tensor) -> torch.Tensor:
        extractors = self.mask_roi_extractor
        if extractors is None:
            ext = self.bbox_roi_extractor[stage]
        else:
            ext = extractors[stage] if self.mask_head_per_stage else extractors
        return self._stage_mask_head(stage)(ext(feats[: ext.num_inputs], rois))

    def _bbox_forward(self, stage: int, feats: Sequence[torch.Tensor], rois: torch.Tensor
                      ) -> tuple[torch.Tensor, torch.Tensor]:
        ext = self.bbox_roi_extractor[stage]
        return self.bbox_head[stage](ext(feats[: ext.num_inputs], rois))

    def forward_train(
        self,
        feats: Sequence[torch.Tensor],
        proposals: Sequence[torch.Tensor],
        gt_bboxes: Sequence[torch.Tensor],
        gt_labels: Sequence[torch.Tensor],
        gt_bboxes_ignore: Sequence[torch.Tensor | None] | None = None,
        gt_masks: Sequence[Any] | None = None,
    ) -> dict[str, torch.Tensor]:
        """Each stage samples (with its own IoU thresholds) the boxes refined by the previous stage; with
        mask heads each stage's mask head trains on its own positives (``gt_masks`` per image)."""
        if self.with_mask and (gt_masks is None or len(gt_masks) != len(gt_bboxes)):
            raise KeyError(
                "roi_head has mask heads but the training batch has no gt masks: load them with "
                "LoadAnnotations(with_mask=True) (2.x: add 'gt_masks' to Collect keys)."
            )
        if not self.assigners:
            raise RuntimeError("CascadeRoIHead needs train_cfg.rcnn (one assigner/sampler per stage) "
                               "to train.")
        losses: dict[str, torch.Tensor] = {}
        boxes = [p.detach() for p in proposals]
        for stage in range(self.num_stages):
            samples = []
            for i, (props, gts, labels) in enumerate(zip(boxes, gt_bboxes, gt_labels)):
                gts = gts.to(props.device, torch.float32)
                labels = labels.to(props.device, torch.long)
                ignore = gt_bboxes_ignore[i] if gt_bboxes_ignore is not None else None
                assign = self.assigners[stage].assign(props, gts, ignore, labels)
                samples.append(self.samplers[stage].sample(assign, props, gts, labels))
            head = self.bbox_head[stage]
            rois = bbox2roi([torch.cat([s.pos_bboxes, s.neg_bboxes]) for s in samples])
            cls_score, bbox_pred = self._bbox_forward(stage, feats, rois)
            targets = head.get_targets(
                [s.pos_bboxes for s in samples], [s.neg_bboxes for s in samples],
                [s.pos_gt_bboxes for s in samples], [s.pos_gt_labels for s in samples],
                pos_weight=float(self.train_cfg[stage].get("pos_weight", -1)))
            w = self.stage_loss_weights[stage]
            stage_losses = head.loss(cls_score, bbox_pred, rois, *targets)
            if self.with_mask and self.mask_head_per_stage:
                stage_losses.update(self._mask_loss(stage, feats, samples, gt_masks))
            elif self.with_mask and stage == 0:  # Detectron2: the first stage's sample, unweighted
                losses.update(self._mask_loss(stage, feats, samples, gt_masks))
            for key, value in stage_losses.items():
                losses[f"s{stage}.{key}"] = value * w if "loss" in key else value
            put_scalars(**{f"s{stage}.num_pos_rois": sum(len(s.pos_inds) for s in samples) / len(samples)})
            if stage + 1 < self.num_stages:
                boxes = self._refine(head, rois, targets[0], cls_score, bbox_pred, samples)
        return losses

    def _mask_loss(self, stage: int, feats: Sequence[torch.Tensor], samples: Sequence[Any],
                   gt_masks: Sequence[Any]) -> dict[str, torch.Tensor]:
        mask_head = self._stage_mask_head(stage)
        logits = self._mask_forward(stage, feats, bbox2roi([s.pos_bboxes for s in samples]))
        mask_size = self.train_cfg[stage].get("mask_size", mask_head.mask_size)
        targets = mask_head.get_targets([s.pos_bboxes for s in samples],
                                        [s.pos_assigned_gt_inds for s in samples], gt_masks, mask_size)
        return mask_head.loss(logits, targets, torch.cat([s.pos_gt_labels for s in samples]))

    def simple_test_mask(
        self,
        feats: Sequence[torch.Tensor],
        det_bboxes: Sequence[torch.Tensor],
        det_labels: Sequence[torch.Tensor],
    ) -> list[torch.Tensor]:
        """Per image, each detection's mask probabilities (N×28×28), averaged over the stages' mask heads
        (the one shared head's with ``mask_head_per_stage=False``)."""
        if not self.with_mask:
            raise RuntimeError("simple_test_mask: this roi_head has no mask_head.")
        rois = bbox2roi(list(det_bboxes)).to(feats[0].device)
        labels = torch.cat(list(det_labels)).to(rois.device)
        if not self.mask_head_per_stage:
            probs = self.mask_head.predict_probs(self._mask_forward(self.num_stages - 1, feats, rois), labels)
            return list(probs.split([len(b) for b in det_bboxes]))
        probs = None
        for stage in range(self.num_stages):
            p = self.mask_head[stage].predict_probs(self._mask_forward(stage, feats, rois), labels)
            probs = p if probs is None else probs + p
        probs = probs / self.num_stages
        return list(probs.split([len(b) for b in det_bboxes]))

    @torch.no_grad()
    def _refine(self, head: nn.Module, rois: torch.Tensor, labels: torch.Tensor, cls_score: torch.Tensor,
                bbox_pred: torch.Tensor, samples: Sequence[Any]) -> list[torch.Tensor]:
        # Positives regress with their gt class, the rest with their predicted class; the ground truths that
        # were added as proposals are dropped (the next stage adds them again).
        labels = torch.where(labels == head.num_classes, cls_score[:, :-1].argmax(1), labels)
        refined = []
        start = 0
        for s in samples:
            n = len(s.pos_inds) + len(s.neg_inds)
            img_rois = rois[start:start + n]
            new = head.regress_by_class(img_rois, labels[start:start + n], bbox_pred[start:start + n],
                                        (10 ** 8, 10 ** 8))
            keep = torch.ones(n, dtype=torch.bool, device=new.device)
            keep[: len(s.pos_inds)] = s.pos_is_gt == 0
            refined.append(new[keep])
            start += n
        return refined

    def simple_test(
        self,
        feats: Sequence[torch.Tensor],
        proposals: Sequence[torch.Tensor],
        img_shapes: Sequence[Sequence[int]],
        cfg: Mapping[str, Any] | None = None,
    ) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        """Per image ``(boxes, scores, labels)`` in input-image pixels."""
        cfg = dict(cfg if cfg is not None else self.test_cfg)
        counts = [len(p) for p in proposals]
        rois = bbox2roi(proposals).to(feats[0].device)
        scores_sum = None
        for stage in range(self.num_stages):
            cls_score, bbox_pred = self._bbox_forward(stage, feats, rois)
            probs = F.softmax(cls_score, dim=1)
            scores_sum = probs if scores_sum is None else scores_sum + probs
            if stage + 1 < self.num_stages:
                head = self.bbox_head[stage]
                labels = cls_score[:, :-1].argmax(1)
                new_rois = []
                per_image = zip(rois.split(counts), labels.split(counts), bbox_pred.split(counts))
                for i, (r, lab, b) in enumerate(per_image):
                    new_rois.append(head.regress_by_class(r, lab, b, img_shapes[i]))
                rois = bbox2roi(new_rois)
        scores = scores_sum / self.num_stages
        last = self.bbox_head[-1]
        results = []
        for i, (r, s, b) in enumerate(zip(rois.split(counts), scores.split(counts), bbox_pred.split(counts))):
            boxes = last.decode(r, b, img_shapes[i])
            results.append(multiclass_nms(boxes, s[:, :-1], float(cfg.get("score_thr", 0.05)),
                                          nms_iou_threshold(cfg.get("nms"), "test_cfg.rcnn.nms"),
                                          int(cfg.get("max_per_img", 100))))
        return results
