"""Single-stage detectors: backbone → (neck) → dense head, and RetinaNet."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

from kiln.registry import MODELS

from ..backbones.pretrained import pretrained_from_init_cfg
from ..utils import build_neck
from .base import BaseDetector, DetInputs

__all__ = ["SingleStageDetector", "RetinaNet", "build_backbone_with_pretrained"]


def build_backbone_with_pretrained(backbone: Mapping[str, Any], pretrained: str | None) -> torch.nn.Module:
    """Build ``backbone``; a detector-level ``pretrained`` (seed-001 layout) goes to the backbone."""
    cfg = dict(backbone)
    if pretrained is not None:
        if cfg.get("pretrained") not in (None, pretrained):
            raise ValueError(
                f"model.pretrained={pretrained!r} conflicts with model.backbone.pretrained="
                f"{cfg['pretrained']!r}; keep one of them."
            )
        cfg["pretrained"] = pretrained
    return MODELS.build(cfg, cfg_path="model.backbone")


@MODELS.register_module()
class SingleStageDetector(BaseDetector):
    """Backbone, optional neck and one dense head that predicts boxes directly.

    Args:
        backbone, neck, bbox_head: ``MODELS`` configs. ``train_cfg``/``test_cfg`` are passed to the head.
        pretrained: backbone weights (local file or ``torchvision://NAME``); see ``ResNet``. Loaded
            when training starts (:meth:`init_weights`), never at build time.
        init_cfg: ``dict(type='Pretrained', checkpoint=...)``: weights of the whole detector, loaded
            (non-strictly, as MMEngine does) by :meth:`init_weights` after the parts' own initialisation.
        data_preprocessor: MMDetection 3.x ``DetDataPreprocessor`` config; see :class:`BaseDetector`.
        pixel_mean, pixel_std, size_divisibility: see :class:`BaseDetector`.
    """

    def __init__(
        self,
        backbone: Mapping[str, Any],
        neck: Mapping[str, Any] | None = None,
        bbox_head: Mapping[str, Any] | None = None,
        train_cfg: Any = None,
        test_cfg: Any = None,
        pretrained: str | None = None,
        init_cfg: Any = None,
        pixel_mean: Sequence[float] | None = None,
        pixel_std: Sequence[float] | None = None,
        size_divisibility: int | None = None,
        data_preprocessor: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(pixel_mean, pixel_std, size_divisibility, train_cfg, test_cfg, data_preprocessor)
        # Detector-level init_cfg=dict(type='Pretrained', checkpoint=...) is a whole-detector checkpoint
        # (MMDetection 3.x), read by init_weights(); detector-level `pretrained` is the backbone's (2.x).
        self.init_checkpoint = pretrained_from_init_cfg(init_cfg, None, f"model ({type(self).__name__})")
        if bbox_head is None:
            raise KeyError(f"{type(self).__name__} needs bbox_head=dict(type=...), e.g. type='RetinaHead'.")
        self.backbone = build_backbone_with_pretrained(backbone, pretrained)
        self.neck = build_neck(neck, self.backbone)
        head = dict(bbox_head)
        head.setdefault("train_cfg", train_cfg)
        head.setdefault("test_cfg", test_cfg)
        self.bbox_head = MODELS.build(head, cfg_path="model.bbox_head")

    def extract_feat(self, images: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Backbone (+ neck) features, finest first."""
        feats = self.backbone(images)
        if isinstance(feats, Mapping):  # Detectron2-style backbones return {name: tensor}
            feats = tuple(feats.values())
        if self.neck is not None:
            feats = self.neck(feats)
        return tuple(feats)

    def loss(self, inputs: DetInputs) -> dict[str, torch.Tensor]:
        """The head's losses on this batch."""
        feats = self.extract_feat(inputs.images.tensor)
        return self.bbox_head.loss(
            feats, inputs.gt_bboxes, inputs.gt_labels, inputs.metas, inputs.gt_bboxes_ignore
        )

    def predict(self, inputs: DetInputs) -> list[dict[str, torch.Tensor]]:
        """The head's post-processed detections in input-image pixels."""
        feats = self.extract_feat(inputs.images.tensor)
        return self.bbox_head.predict(feats, inputs.metas)

    def init_weights(self) -> None:
        """Re-run every component's own initialisation (backbone pretrained weights included)."""
        for m in (self.backbone, self.neck, self.bbox_head):
            if m is not None and hasattr(m, "init_weights"):
                m.init_weights()
        self.load_init_checkpoint()
        self.pretrained_pending = False


@MODELS.register_module()
class RetinaNet(SingleStageDetector):
    """RetinaNet (Lin et al., "Focal Loss for Dense Object Detection"): ResNet + FPN + RetinaHead."""
