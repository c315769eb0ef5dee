"""Detectors: the batch/model contract (:class:`BaseDetector`) and the meta-architectures."""

from .base import BaseDetector, DetInputs, to_original_pixels
from .ensemble import DetectorEnsemble
from .fast_rcnn import FastRCNN
from .rpn import RPN
from .single_stage import RetinaNet, SingleStageDetector
from .two_stage import CascadeRCNN, FasterRCNN, TwoStageDetector

__all__ = [
    "BaseDetector",
    "CascadeRCNN",
    "DetInputs",
    "DetectorEnsemble",
    "FastRCNN",
    "FasterRCNN",
    "RPN",
    "RetinaNet",
    "SingleStageDetector",
    "TwoStageDetector",
    "to_original_pixels",
]

from .yolo_ssd import SSD, YOLOV3  # noqa: E402

__all__ += ["SSD", "YOLOV3"]
