"""``DetectorEnsemble``: several detectors whose predictions are merged by per-class NMS."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn as nn

from ..utils import cfg_get, merge_detections, nms_iou_threshold

__all__ = ["DetectorEnsemble"]


class DetectorEnsemble(nn.Module):
    """Run every member on the same batch; in eval mode merge their detections per image.

    Training sums nothing implicitly: it returns each member's losses with a ``m{i}.`` prefix, so the
    runner's "sum every key containing 'loss'" trains all members jointly.

    Args:
        models: the member detectors (same label space).
        iou_threshold: NMS IoU for merging (default: the first member's ``test_cfg.nms``).
        max_per_img: detections kept per image (default: the first member's ``test_cfg.max_per_img``).
    """

    def __init__(
        self, models: Sequence[nn.Module], iou_threshold: float | None = None, max_per_img: int | None = None
    ) -> None:
        super().__init__()
        if not models:
            raise ValueError("DetectorEnsemble needs at least one model.")
        self.models = nn.ModuleList(models)
        test_cfg = getattr(models[0], "test_cfg", None)
        self.iou_threshold = (
            iou_threshold if iou_threshold is not None else nms_iou_threshold(cfg_get(test_cfg, "nms"))
        )
        self.max_per_img = max_per_img if max_per_img is not None else cfg_get(test_cfg, "max_per_img", 100)

    def forward(self, batch: Sequence[Mapping[str, Any]]) -> Any:
        """Prefixed member losses (train) or merged per-image detections (eval)."""
        outs = [m(batch) for m in self.models]
        if self.training:
            return {f"m{i}.{k}": v for i, losses in enumerate(outs) for k, v in losses.items()}
        merged: list[dict[str, torch.Tensor]] = []
        for per_image in zip(*outs):
            merged.append(merge_detections(per_image, self.iou_threshold, self.max_per_img))
        return merged
