"""DeFRCN's few-shot pieces: the Gradient Decoupled Layer (GDL), the Prototypical Calibration Block (PCB)
and the :class:`DeFRCN` detector that wires them into a two-stage detector (Qiao et al., ICCV 2021).

Importing this package registers ``DeFRCN`` in ``MODELS``.
"""

from .defrcn import DeFRCN
from .gdl import AffineLayer, GradientDecoupleLayer, decouple_layer
from .pcb import PrototypicalCalibrationBlock, build_imagenet_resnet

__all__ = [
    "AffineLayer",
    "DeFRCN",
    "GradientDecoupleLayer",
    "PrototypicalCalibrationBlock",
    "build_imagenet_resnet",
    "decouple_layer",
]
