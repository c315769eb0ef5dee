"""``YOLOV3`` and ``SSD``: single-stage detectors named after their papers (the parts do the work)."""

from __future__ import annotations

from kiln.registry import MODELS

from .single_stage import SingleStageDetector

__all__ = ["SSD", "YOLOV3"]


@MODELS.register_module()
class YOLOV3(SingleStageDetector):
    """YOLOv3 (Redmon & Farhadi 2018): Darknet-53 + YOLOV3Neck + YOLOV3Head (MMDetection's ``YOLOV3``)."""


@MODELS.register_module()
class SSD(SingleStageDetector):
    """SSD (Liu et al. 2016): SSDVGG + SSDNeck + SSDHead.

    MMDetection's configs build SSD as ``type='SingleStageDetector'``; this name is for configs (and
    Detectron2-style ``META_ARCHITECTURE``) that want to say what the model is.
    """
