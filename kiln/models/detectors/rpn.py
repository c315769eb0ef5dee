"""Region Proposal Network as a detector: proposals are its results (MMDetection's ``RPN``, Detectron2's
``ProposalNetwork``)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

from kiln.registry import MODELS

from ..backbones.pretrained import pretrained_from_init_cfg
from ..utils import build_neck, cfg_get
from .base import BaseDetector, DetInputs
from .single_stage import build_backbone_with_pretrained
from .two_stage import _section

__all__ = ["RPN"]


@MODELS.register_module()
class RPN(BaseDetector):
    """Backbone + neck + RPN head; eval mode returns each image's proposals as its detections.

    Proposals are evaluated by recall (``CocoMetric(metric='proposal_fast')`` or ``'proposal'``, 2.x
    ``evaluation=dict(metric='proposal_fast')``: ``AR@100``, ``AR@1000``...), and a run's proposals can be
    dumped for a :class:`~kiln.models.detectors.FastRCNN` (``kiln test --out``).

    Args:
        backbone, neck, rpn_head: module configs, as for :class:`TwoStageDetector`.
        train_cfg: ``dict(rpn=dict(assigner, sampler, allowed_border, pos_weight))``; ``None`` for test-only.
        test_cfg: ``dict(rpn=dict(nms_pre, max_per_img, nms, min_bbox_size))``: the proposals returned.
        pretrained, init_cfg, data_preprocessor, pixel_mean, pixel_std, size_divisibility: see
            :class:`TwoStageDetector`.

    Train mode returns ``loss_rpn_cls`` and ``loss_rpn_bbox``. Eval mode returns per image ``boxes``
    (original-image pixels, best first), ``scores`` (objectness) and ``labels`` (all 0: one class, "object").
    """

    uses_gt_labels = False  # objectness only: a 2.x pipeline may collect gt_bboxes without gt_labels

    def __init__(
        self,
        backbone: Mapping[str, Any],
        neck: Mapping[str, Any] | None = None,
        rpn_head: Mapping[str, Any] | None = None,
        train_cfg: Mapping[str, Any] | None = None,
        test_cfg: Mapping[str, Any] | None = None,
        pretrained: str | None = None,
        init_cfg: Any = None,
        pixel_mean: Sequence[float] | None = None,
        pixel_std: Sequence[float] | None = None,
        size_divisibility: int | None = None,
        data_preprocessor: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(pixel_mean, pixel_std, size_divisibility, train_cfg, test_cfg, data_preprocessor)
        self.init_checkpoint = pretrained_from_init_cfg(init_cfg, None, f"model ({type(self).__name__})")
        if rpn_head is None:
            raise ValueError("RPN needs rpn_head=dict(type='RPNHead', ...).")
        self.backbone = build_backbone_with_pretrained(backbone, pretrained)
        self.neck = build_neck(neck, self.backbone)
        head = dict(rpn_head)
        head.update(
            train_cfg=_section(train_cfg, "rpn", "train_cfg"), test_cfg=_section(test_cfg, "rpn", "test_cfg")
        )
        self.rpn_head = MODELS.build(head, cfg_path="model.rpn_head")

    @property
    def num_classes(self) -> int:
        """One class: "object"."""
        return 1

    def init_weights(self) -> None:
        """Re-run every part's own initialisation (backbone pretrained weights included)."""
        for m in (self.backbone, self.neck, self.rpn_head):
            if m is not None and hasattr(m, "init_weights"):
                m.init_weights()
        self.load_init_checkpoint()
        self.pretrained_pending = False

    def extract_feat(self, images: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Backbone (+ neck) features, finest first."""
        x = self.backbone(images)
        if self.neck is not None:
            x = self.neck(x)
        return tuple(x)

    def loss(self, inputs: DetInputs) -> dict[str, torch.Tensor]:
        """Objectness and box-regression losses on sampled anchors."""
        feats = self.extract_feat(inputs.images.tensor)
        cls_scores, bbox_preds = self.rpn_head(feats)
        return dict(
            self.rpn_head.loss(
                cls_scores,
                bbox_preds,
                inputs.gt_bboxes,
                [m["img_shape"] for m in inputs.metas],
                inputs.gt_bboxes_ignore or None,
            )
        )

    def predict(self, inputs: DetInputs) -> list[dict[str, torch.Tensor]]:
        """Per entry the proposals of ``test_cfg.rpn`` in input-image pixels, best first."""
        feats = self.extract_feat(inputs.images.tensor)
        cls_scores, bbox_preds = self.rpn_head(feats)
        proposals = self.rpn_head.get_proposals(
            cls_scores, bbox_preds, [m["img_shape"] for m in inputs.metas]
        )
        return [
            {"boxes": b, "scores": s, "labels": torch.zeros(len(s), dtype=torch.long, device=s.device)}
            for b, s in proposals
        ]

    def postprocess(
        self, results: list[dict[str, torch.Tensor]], inputs: DetInputs
    ) -> list[dict[str, torch.Tensor]]:
        """As :meth:`BaseDetector.postprocess`; augmented views merge with ``test_cfg.rpn``'s ``nms`` and
        ``max_per_img``."""
        full = self.test_cfg
        self.test_cfg = cfg_get(full, "rpn", full)
        try:
            return super().postprocess(results, inputs)
        finally:
            self.test_cfg = full
