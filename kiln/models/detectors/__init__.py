"""Detectors: the batch/model contract (:class:`BaseDetector`) and the meta-architectures."""

from .base import BaseDetector, DetInputs, to_original_pixels
from .ensemble import DetectorEnsemble
from .fast_rcnn import FastRCNN
from .rpn import RPN
from .single_stage import RetinaNet, SingleStageDetector
from .two_stage import CascadeRCNN, FasterRCNN, MaskRCNN, TwoStageDetector

__all__ = [
    "BaseDetector",
    "CascadeRCNN",
    "DetInputs",
    "DetectorEnsemble",
    "FastRCNN",
    "FasterRCNN",
    "MaskRCNN",
    "RPN",
    "RetinaNet",
    "SingleStageDetector",
    "TwoStageDetector",
    "to_original_pixels",
]
from .fcos import ATSS, FCOS  # noqa: E402

__all__ += ["ATSS", "FCOS"]

from .yolo_ssd import SSD, YOLOV3  # noqa: E402

__all__ += ["SSD", "YOLOV3"]
