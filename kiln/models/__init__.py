"""Models: backbones, necks, dense heads, detectors, losses and task utilities.

Importing this package registers every component in ``MODELS`` / ``TASK_UTILS`` (the registries import
it lazily on first lookup). It imports torch, so ``import kiln`` must not import it eagerly.
"""

from . import backbones, dense_heads, detectors, losses, necks, task_modules
from .backbones import Backbone, ResNet
from .builder import build_backbone, build_detector, build_head, build_loss, build_neck
from .dense_heads import AnchorHead, RetinaHead
from .detectors import BaseDetector, DetectorEnsemble, DetInputs, RetinaNet, SingleStageDetector
from .necks import FPN

__all__ = [
    "AnchorHead",
    "Backbone",
    "BaseDetector",
    "DetInputs",
    "DetectorEnsemble",
    "FPN",
    "ResNet",
    "RetinaHead",
    "RetinaNet",
    "SingleStageDetector",
    "backbones",
    "build_backbone",
    "build_detector",
    "build_head",
    "build_loss",
    "build_neck",
    "dense_heads",
    "detectors",
    "losses",
    "necks",
    "task_modules",
]
