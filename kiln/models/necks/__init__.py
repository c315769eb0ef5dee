"""Necks: modules between backbone and heads."""

from .fpn import FPN

__all__ = ["FPN"]
