"""RoI heads: RoI feature extraction, shared heads (C4 res5), box heads and the heads that drive them
(second stage)."""

from .bbox_head import ConvFCBBoxHead, Shared2FCBBoxHead, Shared4Conv1FCBBoxHead, multiclass_nms
from .cascade_roi_head import CascadeRoIHead
from .linear_bbox_head import BBoxHead
from .roi_extractor import SingleRoIExtractor, bbox2roi, map_roi_levels
from .shared_heads import ResLayer
from .standard_roi_head import StandardRoIHead

__all__ = [
    "BBoxHead",
    "CascadeRoIHead",
    "ConvFCBBoxHead",
    "ResLayer",
    "Shared2FCBBoxHead",
    "Shared4Conv1FCBBoxHead",
    "SingleRoIExtractor",
    "StandardRoIHead",
    "bbox2roi",
    "map_roi_levels",
    "multiclass_nms",
]
