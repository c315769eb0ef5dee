"""``DistancePointBBoxCoder``: boxes as distances from a point to their four sides (FCOS)."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from kiln.registry import TASK_UTILS

__all__ = ["DistancePointBBoxCoder", "bbox2distance", "distance2bbox"]


def bbox2distance(
    points: torch.Tensor, bboxes: torch.Tensor, max_dis: float | None = None, eps: float = 0.1
) -> torch.Tensor:
    """``(left, top, right, bottom)`` distances (N×4) from ``points`` (N×2) to the sides of XYXY ``bboxes``.

    With ``max_dis`` the distances are clamped to ``[0, max_dis - eps]`` (GFL-style bounded targets).
    """
    left = points[..., 0] - bboxes[..., 0]
    top = points[..., 1] - bboxes[..., 1]
    right = bboxes[..., 2] - points[..., 0]
    bottom = bboxes[..., 3] - points[..., 1]
    out = torch.stack([left, top, right, bottom], -1)
    if max_dis is not None:
        out = out.clamp(min=0, max=max_dis - eps)
    return out


def distance2bbox(
    points: torch.Tensor, distance: torch.Tensor, max_shape: Sequence[int] | None = None
) -> torch.Tensor:
    """XYXY boxes from ``points`` (…×2) and ``(left, top, right, bottom)`` ``distance`` (…×4), clipped to
    ``max_shape=(h, w)`` when given."""
    x1 = points[..., 0] - distance[..., 0]
    y1 = points[..., 1] - distance[..., 1]
    x2 = points[..., 0] + distance[..., 2]
    y2 = points[..., 1] + distance[..., 3]
    if max_shape is not None:
        h, w = float(max_shape[0]), float(max_shape[1])
        x1, x2 = x1.clamp(0, w), x2.clamp(0, w)
        y1, y2 = y1.clamp(0, h), y2.clamp(0, h)
    return torch.stack([x1, y1, x2, y2], -1)


@TASK_UTILS.register_module()
class DistancePointBBoxCoder:
    """Encode a box as the distances from a prior point to its left, top, right and bottom sides.

    Example::

        >>> c = DistancePointBBoxCoder()
        >>> p = torch.tensor([[5., 5.]]); b = torch.tensor([[1., 2., 9., 12.]])
        >>> c.encode(p, b)
        tensor([[4., 3., 4., 7.]])
        >>> c.decode(p, c.encode(p, b))
        tensor([[ 1.,  2.,  9., 12.]])
    """

    encode_size = 4

    def __init__(self, clip_border: bool = True) -> None:
        self.clip_border = bool(clip_border)

    def encode(
        self, points: torch.Tensor, gt_bboxes: torch.Tensor, max_dis: float | None = None, eps: float = 0.1
    ) -> torch.Tensor:
        """Distances (N×4) from ``points`` (N×2) to ``gt_bboxes`` (N×4 XYXY)."""
        if points.shape[0] != gt_bboxes.shape[0]:
            raise ValueError(
                f"DistancePointBBoxCoder.encode: {points.shape[0]} points but {gt_bboxes.shape[0]} boxes."
            )
        return bbox2distance(points, gt_bboxes, max_dis, eps)

    def decode(
        self, points: torch.Tensor, pred_bboxes: torch.Tensor, max_shape: Sequence[int] | None = None
    ) -> torch.Tensor:
        """Boxes (…×4 XYXY) from ``points`` (…×2) and distances; clipped to ``max_shape`` if
        ``clip_border``."""
        return distance2bbox(points, pred_bboxes, max_shape if self.clip_border else None)
