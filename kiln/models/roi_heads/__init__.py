"""RoI heads: RoI feature extraction, box heads and the heads that drive them (second stage)."""

from .bbox_head import ConvFCBBoxHead, Shared2FCBBoxHead, Shared4Conv1FCBBoxHead, multiclass_nms
from .cascade_roi_head import CascadeRoIHead
from .roi_extractor import SingleRoIExtractor, bbox2roi, map_roi_levels
from .standard_roi_head import StandardRoIHead

__all__ = [
    "CascadeRoIHead",
    "ConvFCBBoxHead",
    "Shared2FCBBoxHead",
    "Shared4Conv1FCBBoxHead",
    "SingleRoIExtractor",
    "StandardRoIHead",
    "bbox2roi",
    "map_roi_levels",
    "multiclass_nms",
]
