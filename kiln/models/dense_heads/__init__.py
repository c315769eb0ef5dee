"""Dense heads: per-location classification and box regression over feature maps."""

from .anchor_head import AnchorHead
from .retina_head import RetinaHead
from .rpn_head import RPNHead

__all__ = ["AnchorHead", "RetinaHead", "RPNHead"]
from .anchor_free_head import AnchorFreeHead  # noqa: E402
from .atss_head import ATSSHead  # noqa: E402
from .fcos_head import FCOSHead  # noqa: E402

__all__ += ["AnchorFreeHead", "ATSSHead", "FCOSHead"]

from .ssd_head import SSDHead  # noqa: E402
from .yolo_head import YOLOV3Head  # noqa: E402

__all__ += ["SSDHead", "YOLOV3Head"]
