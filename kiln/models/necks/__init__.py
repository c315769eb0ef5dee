"""Necks: modules between backbone and heads."""

from .fpn import FPN

__all__ = ["FPN"]

from .ssd_neck import SSDNeck  # noqa: E402
from .yolo_neck import YOLOV3Neck  # noqa: E402

__all__ += ["SSDNeck", "YOLOV3Neck"]
