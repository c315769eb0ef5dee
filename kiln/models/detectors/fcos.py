"""FCOS and ATSS: single-stage detectors whose heads predict a centerness (quality) next to each box."""

from __future__ import annotations

from kiln.registry import MODELS

from .single_stage import SingleStageDetector

__all__ = ["ATSS", "FCOS"]


@MODELS.register_module()
class FCOS(SingleStageDetector):
    """FCOS (Tian et al. 2019): ResNet + FPN (P3–P7) + :class:`~kiln.models.dense_heads.FCOSHead`,
    anchor-free: one prior point per feature-map cell."""


@MODELS.register_module()
class ATSS(SingleStageDetector):
    """ATSS (Zhang et al. 2020): ResNet + FPN + :class:`~kiln.models.dense_heads.ATSSHead`, one anchor
    per location assigned by adaptive training sample selection."""
