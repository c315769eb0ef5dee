"""Models: backbones, necks, dense heads, detectors, losses and task utilities.

Importing this package registers every component in ``MODELS`` / ``TASK_UTILS`` (the registries import
it lazily on first lookup). It imports torch, so ``import kiln`` must not import it eagerly.
"""

from . import backbones, data_preprocessors, dense_heads, detectors, losses, necks, roi_heads, task_modules
from .backbones import Backbone, ResNet
from .builder import build_backbone, build_detector, build_head, build_loss, build_neck
from .dense_heads import AnchorHead, RetinaHead, RPNHead
from .detectors import (
    BaseDetector,
    DetectorEnsemble,
    DetInputs,
    FasterRCNN,
    RetinaNet,
    SingleStageDetector,
    TwoStageDetector,
)
from .fewshot import DeFRCN
from .necks import FPN
from .num_classes import check_model_dataset_classes, check_num_classes, dataset_classes, num_classes_of

__all__ = [
    "AnchorHead",
    "Backbone",
    "BaseDetector",
    "DeFRCN",
    "DetInputs",
    "DetectorEnsemble",
    "FPN",
    "FasterRCNN",
    "ResNet",
    "RetinaHead",
    "RetinaNet",
    "RPNHead",
    "SingleStageDetector",
    "TwoStageDetector",
    "backbones",
    "data_preprocessors",
    "build_backbone",
    "build_detector",
    "build_head",
    "build_loss",
    "build_neck",
    "check_model_dataset_classes",
    "check_num_classes",
    "dataset_classes",
    "num_classes_of",
    "dense_heads",
    "detectors",
    "losses",
    "necks",
    "roi_heads",
    "task_modules",
]
