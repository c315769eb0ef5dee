"""Dense heads: per-location classification and box regression over feature maps."""

from .anchor_head import AnchorHead
from .retina_head import RetinaHead
from .rpn_head import RPNHead

__all__ = ["AnchorHead", "RetinaHead", "RPNHead"]

from .ssd_head import SSDHead  # noqa: E402
from .yolo_head import YOLOV3Head  # noqa: E402

__all__ += ["SSDHead", "YOLOV3Head"]
