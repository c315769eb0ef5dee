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
