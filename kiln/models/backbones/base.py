"""``Backbone``: the interface every backbone implements (Detectron2's contract, MM's tuple outputs)."""

from __future__ import annotations

from abc import ABCMeta, abstractmethod

import torch
import torch.nn as nn

from kiln.structures import ShapeSpec

__all__ = ["Backbone"]


class Backbone(nn.Module, metaclass=ABCMeta):
    """Base class of backbones.

    ``forward(x)`` takes a B×C×H×W tensor and returns a tuple of feature maps, finest first, in the
    order of :meth:`output_shape` (MMDetection's convention, which necks such as FPN consume).
    """

    @abstractmethod
    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Return the feature maps, finest first."""

    @property
    def size_divisibility(self) -> int:
        """Input H and W must be a multiple of this (0: no constraint). The detector pads to it."""
        return 0

    @property
    def padding_constraints(self) -> dict[str, int]:
        """Generalised padding needs, e.g. ``{'size_divisibility': 32, 'square_size': 1024}``."""
        return {"size_divisibility": self.size_divisibility} if self.size_divisibility else {}

    @abstractmethod
    def output_shape(self) -> dict[str, ShapeSpec]:
        """``{feature_name: ShapeSpec(channels, stride)}`` for every output, finest first."""
