"""RoI heads: RoI feature extraction, shared heads (C4 res5), box heads and the heads that drive them
(second stage), and the mask head with its targets and paste-back (Mask R-CNN)."""

from .bbox_head import ConvFCBBoxHead, Shared2FCBBoxHead, Shared4Conv1FCBBoxHead, multiclass_nms
from .cascade_roi_head import CascadeRoIHead
from .linear_bbox_head import BBoxHead
from .mask_head import FCNMaskHead
from .mask_paste import paste_masks_in_image
from .mask_target import mask_target
from .roi_extractor import SingleRoIExtractor, bbox2roi, map_roi_levels
from .shared_heads import ResLayer
from .standard_roi_head import StandardRoIHead

__all__ = [
    "BBoxHead",
    "CascadeRoIHead",
    "ConvFCBBoxHead",
    "FCNMaskHead",
    "ResLayer",
    "Shared2FCBBoxHead",
    "Shared4Conv1FCBBoxHead",
    "SingleRoIExtractor",
    "StandardRoIHead",
    "bbox2roi",
    "map_roi_levels",
    "mask_target",
    "multiclass_nms",
    "paste_masks_in_image",
]
