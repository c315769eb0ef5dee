"""RoI feature extraction over FPN levels: each RoI is pooled from the level its size maps to."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn as nn
from torchvision.ops import roi_align

from kiln.registry import MODELS

__all__ = ["SingleRoIExtractor", "map_roi_levels", "bbox2roi"]


def bbox2roi(bbox_list: Sequence[torch.Tensor]) -> torch.Tensor:
    """Concatenate per-image N_i×4 boxes into K×5 RoIs ``(batch_index, x1, y1, x2, y2)``."""
    rois = []
    for i, boxes in enumerate(bbox_list):
        boxes = boxes[:, :4]
        rois.append(torch.cat([boxes.new_full((boxes.shape[0], 1), float(i)), boxes], dim=1))
    if not rois:
        return torch.zeros((0, 5))
    return torch.cat(rois, dim=0)


def map_roi_levels(
    rois: torch.Tensor,
    num_levels: int,
    finest_scale: float = 56.0,
    canonical_box_size: float | None = None,
    canonical_level: int = 4,
    min_level: int = 2,
) -> torch.Tensor:
    """Pyramid level index (0 = finest used level) of each RoI, from its scale ``sqrt(w·h)``.

    MMDetection mapping (default): ``floor(log2(scale / finest_scale + 1e-6))`` — scale < 112
    → level 0, < 224 → 1, < 448 → 2, else 3.
    Detectron2 / torchvision ``MultiScaleRoIAlign`` mapping (``canonical_box_size`` given, e.g.
    224): ``floor(canonical_level + log2(scale / canonical_box_size) + 1e-6) - min_level``.
    Both are clamped to ``[0, num_levels - 1]``.
    """
    scale = torch.sqrt((rois[:, 3] - rois[:, 1]).clamp(min=0) * (rois[:, 4] - rois[:, 2]).clamp(min=0))
    if canonical_box_size is None:
        levels = torch.floor(torch.log2(scale / finest_scale + 1e-6))
    else:
        levels = torch.floor(canonical_level + torch.log2(scale / canonical_box_size) + 1e-6) - min_level
    return levels.clamp(min=0, max=num_levels - 1).long()


@MODELS.register_module()
class SingleRoIExtractor(nn.Module):
    """Pool a fixed-size feature for each RoI from one FPN level (MMDetection's SingleRoIExtractor).

    Args:
        roi_layer: ``dict(type='RoIAlign', output_size=7, sampling_ratio=0, aligned=True)``
            (``type='RoIPool'`` is not offered; torchvision's roi_align is used).
        out_channels: channels of the pooled features (= the FPN's out_channels).
        featmap_strides: strides of the levels that RoIs are pooled from, finest first
            (Faster R-CNN: ``[4, 8, 16, 32]``; the FPN's extra P6 is not used).
        finest_scale: MM level mapping (see :func:`map_roi_levels`).
        canonical_box_size, canonical_level: Detectron2 level mapping instead, when given.

    ``forward(feats, rois)`` takes the FPN outputs (at least ``len(featmap_strides)`` of them)
    and K×5 RoIs in input-image pixels; returns K×C×S×S.
    """

    def __init__(
        self,
        roi_layer: Mapping[str, Any],
        out_channels: int,
        featmap_strides: Sequence[int],
        finest_scale: float = 56.0,
        canonical_box_size: float | None = None,
        canonical_level: int = 4,
    ) -> None:
        super().__init__()
        layer = dict(roi_layer)
        layer_type = layer.pop("type", "RoIAlign")
        if layer_type != "RoIAlign":
            raise ValueError(
                f"bbox_roi_extractor.roi_layer.type={layer_type!r} is not supported; "
                f"use type='RoIAlign' (torchvision.ops.roi_align)."
            )
        size = layer.pop("output_size", layer.pop("out_size", 7))
        self.output_size = (int(size), int(size)) if isinstance(size, (int, float)) else tuple(size)
        self.sampling_ratio = int(layer.pop("sampling_ratio", layer.pop("sample_num", 0)))
        self.aligned = bool(layer.pop("aligned", True))
        layer.pop("use_torchvision", None)
        if layer:
            raise KeyError(
                f"bbox_roi_extractor.roi_layer: unknown keys {sorted(layer)}; known: "
                f"output_size, sampling_ratio, aligned."
            )
        self.out_channels = out_channels
        self.featmap_strides = [int(s) for s in featmap_strides]
        self.finest_scale = float(finest_scale)
        self.canonical_box_size = canonical_box_size
        self.canonical_level = canonical_level
        self.min_level = int(round(math.log2(self.featmap_strides[0])))

    @property
    def num_inputs(self) -> int:
        """Number of feature levels RoIs are pooled from."""
        return len(self.featmap_strides)

    def forward(self, feats: Sequence[torch.Tensor], rois: torch.Tensor) -> torch.Tensor:
        """Pool each RoI (K×5) from its level; returns K×C×S×S in RoI order."""
        if len(feats) < self.num_inputs:
            raise ValueError(
                f"SingleRoIExtractor: {self.num_inputs} featmap_strides "
                f"{self.featmap_strides} but only {len(feats)} feature maps."
            )
        num_rois = rois.shape[0]
        out = feats[0].new_zeros((num_rois, feats[0].shape[1], *self.output_size))
        if num_rois == 0:
            return out
        rois = rois.to(feats[0].dtype)
        if self.num_inputs == 1:
            return roi_align(
                feats[0],
                rois,
                self.output_size,
                1.0 / self.featmap_strides[0],
                self.sampling_ratio,
                self.aligned,
            )
        levels = map_roi_levels(
            rois,
            self.num_inputs,
            self.finest_scale,
            self.canonical_box_size,
            self.canonical_level,
            self.min_level,
        )
        for lvl in range(self.num_inputs):
            idx = torch.nonzero(levels == lvl, as_tuple=True)[0]
            if idx.numel() == 0:
                continue
            out[idx] = roi_align(
                feats[lvl],
                rois[idx],
                self.output_size,
                1.0 / self.featmap_strides[lvl],
                self.sampling_ratio,
                self.aligned,
            )
        return out
