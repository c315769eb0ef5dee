"""Two-stage detectors: backbone → neck → RPN proposals → RoI head (Faster R-CNN)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from kiln.registry import MODELS

from ..backbones.pretrained import pretrained_from_init_cfg
from ..utils import build_neck, cfg_get
from .base import BaseDetector, DetInputs
from .single_stage import build_backbone_with_pretrained

__all__ = ["TwoStageDetector", "FasterRCNN", "CascadeRCNN", "MaskRCNN"]


def _section(cfg: Any, key: str, where: str) -> Any:
    value = cfg_get(cfg, key)
    if cfg is not None and value is None:
        raise KeyError(
            f"{where} has no '{key}' section; a two-stage detector needs {where}.{key} "
            f"(keys present: {sorted(cfg) if isinstance(cfg, Mapping) else cfg!r})."
        )
    return value


@MODELS.register_module()
class TwoStageDetector(BaseDetector):
    """Backbone + neck + RPN head + RoI head.

    Args:
        backbone, neck, rpn_head, roi_head: module configs (``roi_head=dict(type='StandardRoIHead',
            bbox_roi_extractor=..., bbox_head=...)``). MMDetection v1 configs that put
            ``bbox_roi_extractor`` and ``bbox_head`` at the detector level are accepted too.
        train_cfg: ``dict(rpn=dict(assigner, sampler, ...), rpn_proposal=dict(nms_pre, max_per_img,
            nms, min_bbox_size), rcnn=dict(assigner, sampler, pos_weight))``; ``None`` for test-only.
        test_cfg: ``dict(rpn=dict(nms_pre, max_per_img, nms, min_bbox_size), rcnn=dict(score_thr,
            nms, max_per_img))``.
        pretrained: backbone weights (local file or ``torchvision://resnet50``; never downloaded),
            loaded when training starts (:meth:`init_weights`), never at build time.
        init_cfg: ``dict(type='Pretrained', checkpoint=...)``: weights of the whole detector, loaded
            (non-strictly, as MMEngine does) by :meth:`init_weights` after the parts' own initialisation.
        data_preprocessor: MMDetection 3.x ``DetDataPreprocessor`` config; see :class:`BaseDetector`.
        pixel_mean, pixel_std, size_divisibility: see :class:`BaseDetector`.

    Train mode returns ``loss_rpn_cls``, ``loss_rpn_bbox``, ``loss_cls``, ``loss_bbox`` and the
    logged ``acc``; eval mode returns per-image ``boxes``/``scores``/``labels`` in original pixels.
    With a ``roi_head.mask_head`` (Mask R-CNN) training adds ``loss_mask`` (the batch must carry gt masks)
    and eval adds ``masks``: N×H×W bool at the original image size.
    With ``keep_proposals`` set, training leaves the batch's RPN proposals in ``last_proposals``.
    """

    # Set by ProposalVisualizationHook: keep the last training batch's proposals, per image
    # (boxes K×4 in input pixels, scores K), best first.
    keep_proposals: bool = False
    last_proposals: list[tuple[torch.Tensor, torch.Tensor]] | None = None

    def __init__(
        self,
        backbone: Mapping[str, Any],
        neck: Mapping[str, Any] | None = None,
        rpn_head: Mapping[str, Any] | None = None,
        roi_head: Mapping[str, Any] | None = None,
        train_cfg: Mapping[str, Any] | None = None,
        test_cfg: Mapping[str, Any] | None = None,
        pretrained: str | None = None,
        init_cfg: Any = None,
        bbox_roi_extractor: Mapping[str, Any] | None = None,
        bbox_head: Mapping[str, Any] | None = None,
        pixel_mean: Any = None,
        pixel_std: Any = None,
        size_divisibility: int | None = None,
        data_preprocessor: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(
            pixel_mean=pixel_mean,
            pixel_std=pixel_std,
            size_divisibility=size_divisibility,
            train_cfg=train_cfg,
            test_cfg=test_cfg,
            data_preprocessor=data_preprocessor,
        )
        # Detector-level init_cfg=dict(type='Pretrained', checkpoint=...) is a whole-detector checkpoint
        # (MMDetection 3.x), read by init_weights(); detector-level `pretrained` is the backbone's (2.x).
        self.init_checkpoint = pretrained_from_init_cfg(init_cfg, None, f"model ({type(self).__name__})")
        if roi_head is None:
            if bbox_roi_extractor is None or bbox_head is None:
                raise ValueError(
                    f"{type(self).__name__} needs roi_head=dict(type='StandardRoIHead', "
                    f"bbox_roi_extractor=..., bbox_head=...)."
                )
            roi_head = dict(
                type="StandardRoIHead", bbox_roi_extractor=bbox_roi_extractor, bbox_head=bbox_head
            )
        elif bbox_roi_extractor is not None or bbox_head is not None:
            raise ValueError(
                "give bbox_roi_extractor/bbox_head inside roi_head=dict(...) (v2) or at the "
                "detector level (v1), not both."
            )
        self.backbone = build_backbone_with_pretrained(backbone, pretrained)
        self.neck = build_neck(neck, self.backbone)
        self.rpn_head = self._build_rpn_head(rpn_head, train_cfg, test_cfg)
        roi_cfg = dict(roi_head)
        roi_cfg.update(
            train_cfg=_section(train_cfg, "rcnn", "train_cfg"),
            test_cfg=_section(test_cfg, "rcnn", "test_cfg"),
        )
        self.roi_head = MODELS.build(roi_cfg, cfg_path="model.roi_head")

    def _build_rpn_head(self, rpn_head: Mapping[str, Any] | None, train_cfg: Any, test_cfg: Any
                        ) -> torch.nn.Module | None:
        """The proposal generator, with ``train_cfg.rpn``/``test_cfg.rpn`` (``train_cfg.rpn_proposal`` is
        kept as ``self.rpn_proposal_cfg``). :class:`FastRCNN` has none: its proposals come with the data."""
        if rpn_head is None:
            raise ValueError(f"{type(self).__name__} needs rpn_head=dict(type='RPNHead', ...) (a model whose "
                             "proposals come precomputed with the data is type='FastRCNN').")
        rpn_train = _section(train_cfg, "rpn", "train_cfg")
        self.rpn_proposal_cfg = _section(train_cfg, "rpn_proposal", "train_cfg")
        rpn_test = _section(test_cfg, "rpn", "test_cfg")
        rpn_cfg = dict(rpn_head)
        rpn_cfg.update(train_cfg=rpn_train, test_cfg=rpn_test)
        return MODELS.build(rpn_cfg, cfg_path="model.rpn_head")

    def init_weights(self) -> None:
        """Re-initialise every part (the backbone loads its ``pretrained`` weights when set)."""
        for part in (self.backbone, self.neck, self.rpn_head, self.roi_head):
            if part is None:
                continue
            if part is self.backbone:
                part.init_weights()
                continue
            for m in part.modules():
                if m is not part and hasattr(m, "init_weights"):
                    m.init_weights()
            if hasattr(part, "init_weights"):
                part.init_weights()
        self.load_init_checkpoint()
        self.pretrained_pending = False

    @property
    def num_classes(self) -> int:
        """Foreground classes."""
        return self.roi_head.num_classes

    def extract_feat(self, images: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Backbone (+ neck) features, finest first."""
        x = self.backbone(images)
        if self.neck is not None:
            x = self.neck(x)
        return tuple(x)

    def train_proposals(self, feats: tuple[torch.Tensor, ...], inputs: DetInputs
                        ) -> tuple[list[torch.Tensor], dict[str, torch.Tensor]]:
        """Per-image proposals for the RoI head in training, and the RPN's losses on this batch."""
        img_shapes = [m["img_shape"] for m in inputs.metas]
        cls_scores, bbox_preds = self.rpn_head(feats)
        losses = dict(self.rpn_head.loss(cls_scores, bbox_preds, inputs.gt_bboxes, img_shapes,
                                         inputs.gt_bboxes_ignore or None))
        proposals = self.rpn_head.get_proposals(cls_scores, bbox_preds, img_shapes, self.rpn_proposal_cfg)
        if self.keep_proposals:  # for ProposalVisualizationHook (Detectron2's VIS_PERIOD)
            self.last_proposals = [(p.detach(), s.detach()) for p, s in proposals]
        return [p for p, _ in proposals], losses

    def test_proposals(self, feats: tuple[torch.Tensor, ...], inputs: DetInputs) -> list[torch.Tensor]:
        """Per-entry proposals for the RoI head at test time (``test_cfg.rpn``)."""
        cls_scores, bbox_preds = self.rpn_head(feats)
        img_shapes = [m["img_shape"] for m in inputs.metas]
        proposals = self.rpn_head.get_proposals(cls_scores, bbox_preds, img_shapes)
        return [p for p, _ in proposals]

    def loss(self, inputs: DetInputs) -> dict[str, torch.Tensor]:
        """RPN losses on sampled anchors + RoI head losses on sampled proposals."""
        feats = self.extract_feat(inputs.images.tensor)
        ignore = inputs.gt_bboxes_ignore or None
        proposals, losses = self.train_proposals(feats, inputs)
        extra = {"gt_masks": inputs.gt_masks} if getattr(self.roi_head, "with_mask", False) else {}
        roi_losses = self.roi_head.forward_train(feats, proposals, inputs.gt_bboxes, inputs.gt_labels, ignore,
                                                 **extra)
        for key, value in roi_losses.items():
            if key in losses:
                raise KeyError(f"loss name '{key}' is produced by both the RPN and the RoI head.")
            losses[key] = value
        return losses

    def postprocess(self, results: list[dict[str, torch.Tensor]], inputs: DetInputs
                    ) -> list[dict[str, torch.Tensor]]:
        """As :meth:`BaseDetector.postprocess`; test-time-augmented views merge with ``test_cfg.rcnn``'s
        ``nms`` and ``max_per_img`` (the base class reads them from the top level of ``test_cfg``)."""
        full = self.test_cfg
        self.test_cfg = cfg_get(full, "rcnn", full)
        try:
            return super().postprocess(results, inputs)
        finally:
            self.test_cfg = full

    def predict(self, inputs: DetInputs) -> list[dict[str, torch.Tensor]]:
        """Proposals, then RoI-head detections, per image in input-image pixels."""
        feats = self.extract_feat(inputs.images.tensor)
        img_shapes = [m["img_shape"] for m in inputs.metas]
        dets = self.roi_head.simple_test(feats, self.test_proposals(feats, inputs), img_shapes)
        results = [{"boxes": b, "scores": s, "labels": lab} for b, s, lab in dets]
        if getattr(self.roi_head, "with_mask", False):
            # Per-box mask probabilities; BaseDetector.postprocess pastes them into the original image.
            probs = self.roi_head.simple_test_mask(feats, [r["boxes"] for r in results],
                                                   [r["labels"] for r in results])
            for r, p in zip(results, probs):
                r["mask_probs"] = p
        return results


@MODELS.register_module()
class FasterRCNN(TwoStageDetector):
    """Faster R-CNN (Ren et al. 2015) with FPN: a :class:`TwoStageDetector` with the standard RoI head."""


@MODELS.register_module()
class CascadeRCNN(TwoStageDetector):
    """Cascade R-CNN (Cai & Vasconcelos 2018): a :class:`TwoStageDetector` whose ``roi_head`` is a
    ``CascadeRoIHead`` and whose ``train_cfg.rcnn`` is a list with one assigner/sampler per stage."""


@MODELS.register_module()
class MaskRCNN(TwoStageDetector):
    """Mask R-CNN (He et al. 2017): Faster R-CNN whose ``roi_head`` has a ``mask_head`` (``FCNMaskHead``)
    segmenting each detection; eval outputs carry ``masks`` (N×H×W bool, original pixels)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if not getattr(self.roi_head, "with_mask", False):
            raise ValueError("MaskRCNN needs roi_head.mask_head (e.g. dict(type='FCNMaskHead', num_convs=4, "
                             "in_channels=256, conv_out_channels=256, num_classes=80)); a box-only model is "
                             "type='FasterRCNN'.")
