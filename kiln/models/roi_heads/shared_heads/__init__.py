"""Shared heads: layers run on every pooled RoI before the box head (the C4 ``ResLayer``)."""

from .res_layer import ResLayer

__all__ = ["ResLayer"]
