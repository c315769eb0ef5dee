"""Task utilities (registered in ``TASK_UTILS``): anchor generators, box coders, assigners, samplers."""

from .anchor_generator import AnchorGenerator, DefaultAnchorGenerator
from .assigners import AssignResult, MaxIoUAssigner, box_iof
from .box_coder import DeltaXYWHBBoxCoder
from .samplers import OHEMSampler, PseudoSampler, RandomSampler, SamplingResult

__all__ = [
    "AnchorGenerator",
    "AssignResult",
    "DefaultAnchorGenerator",
    "DeltaXYWHBBoxCoder",
    "MaxIoUAssigner",
    "OHEMSampler",
    "PseudoSampler",
    "RandomSampler",
    "SamplingResult",
    "box_iof",
]
from .atss_assigner import ATSSAssigner  # noqa: E402
from .distance_point_coder import DistancePointBBoxCoder  # noqa: E402
from .point_generator import MlvlPointGenerator  # noqa: E402

__all__ += ["ATSSAssigner", "DistancePointBBoxCoder", "MlvlPointGenerator"]

from .fixed_size_anchors import SSDAnchorGenerator, YOLOAnchorGenerator  # noqa: E402
from .grid_assigner import GridAssigner  # noqa: E402
from .yolo_bbox_coder import YOLOBBoxCoder  # noqa: E402

__all__ += ["GridAssigner", "SSDAnchorGenerator", "YOLOAnchorGenerator", "YOLOBBoxCoder"]
