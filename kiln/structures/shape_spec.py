"""``ShapeSpec``: what a feature map looks like (channels, size, stride)."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["ShapeSpec"]


@dataclass(frozen=True)
class ShapeSpec:
    """Shape of a tensor passed between modules (backbone → neck → head). Unknown fields are None.

    Example::

        >>> ShapeSpec(channels=256, stride=8)
        ShapeSpec(channels=256, height=None, width=None, stride=8)
    """

    channels: int | None = None
    height: int | None = None
    width: int | None = None
    stride: int | None = None
