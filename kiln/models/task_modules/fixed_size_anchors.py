"""Anchor generators with explicit per-level sizes: SSD's (from min/max sizes) and YOLO's (from w×h lists).

Both produce the same kind of anchors as :class:`AnchorGenerator` (XYXY, input-image pixels, ordered
(y, x, anchor) per level, centred on the cell centre ``(x + 0.5) * stride``); they differ only in how the
base anchors of one location are chosen, so they subclass it and set ``base_anchors``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from kiln.registry import TASK_UTILS

from .anchor_generator import AnchorGenerator

__all__ = ["SSDAnchorGenerator", "YOLOAnchorGenerator", "ssd_min_max_sizes"]

# SSD's published first-level sizes (percent of the input side) per (input_size, first basesize ratio).
_SSD_FIRST_LEVEL = {(300, 0.15): (7, 15), (300, 0.2): (10, 20), (512, 0.1): (4, 10), (512, 0.15): (7, 15)}


def ssd_min_max_sizes(
    input_size: int, basesize_ratio_range: Sequence[float], num_levels: int
) -> tuple[list[int], list[int]]:
    """SSD's anchor sizes per level as MMDetection computes them from ``basesize_ratio_range``.

    The ratios from ``lo`` to ``hi`` (in percent, integer steps of ``(hi - lo) // (num_levels - 2)``) give
    levels 2..L; the first level has the published extra small size (SSD300 COCO: 7 % and 15 %).
    """
    lo, hi = (int(r * 100) for r in basesize_ratio_range)
    step = (hi - lo) // (num_levels - 2)
    min_sizes = [int(input_size * r / 100) for r in range(lo, hi + 1, step)]
    max_sizes = [int(input_size * (r + step) / 100) for r in range(lo, hi + 1, step)]
    key = (int(input_size), round(float(basesize_ratio_range[0]), 2))
    if key not in _SSD_FIRST_LEVEL:
        known = ", ".join(f"input_size={s} with basesize_ratio_range[0]={r}" for s, r in _SSD_FIRST_LEVEL)
        raise ValueError(
            f"SSDAnchorGenerator(input_size={input_size}, "
            f"basesize_ratio_range={tuple(basesize_ratio_range)}): the first level's sizes are "
            f"published only for {known}; give min_sizes and max_sizes explicitly for other inputs."
        )
    first_min, first_max = _SSD_FIRST_LEVEL[key]
    min_sizes.insert(0, int(input_size * first_min / 100))
    max_sizes.insert(0, int(input_size * first_max / 100))
    return min_sizes, max_sizes


@TASK_UTILS.register_module()
class SSDAnchorGenerator(AnchorGenerator):
    """SSD's default boxes (Liu et al. 2016), with MMDetection's arguments and anchor order.

    Per level ``k`` with sizes ``s = min_sizes[k]``, ``s' = max_sizes[k]``: a square of side ``s``, a square
    of side ``sqrt(s·s')``, then for each ``r`` in ``ratios[k]`` a wide box ``(s·√r) × (s/√r)`` and a tall
    one ``(s/√r) × (s·√r)`` (4 or 6 anchors per location). Sizes come from ``min_sizes``/``max_sizes`` or,
    as in the SSD paper, from ``basesize_ratio_range`` and ``input_size`` (300 or 512).

    Anchors are not clipped to the image (torchvision's ``DefaultBoxGenerator(clip=True)`` clips widths and
    heights to the input size, which changes the wide/tall anchors of SSD300's last level).

    Example::

        >>> g = SSDAnchorGenerator(strides=[8, 16, 32, 64, 100, 300], ratios=[[2], [2, 3], [2, 3], [2, 3],
        ...                        [2], [2]], basesize_ratio_range=(0.15, 0.9), input_size=300)
        >>> g.num_base_anchors
        [4, 6, 6, 6, 4, 4]
    """

    def __init__(
        self,
        strides: Sequence[int | Sequence[int]],
        ratios: Sequence[Sequence[float]],
        min_sizes: Sequence[float] | None = None,
        max_sizes: Sequence[float] | None = None,
        basesize_ratio_range: Sequence[float] = (0.15, 0.9),
        input_size: int = 300,
        scale_major: bool = True,
        use_box_type: bool = False,
    ) -> None:
        if use_box_type:
            raise ValueError("SSDAnchorGenerator(use_box_type=True): kiln's anchors are plain XYXY tensors.")
        if len(strides) != len(ratios):
            raise ValueError(
                f"SSDAnchorGenerator: {len(strides)} strides but {len(ratios)} ratio lists; give one per "
                "level."
            )
        if (min_sizes is None) != (max_sizes is None):
            raise ValueError("SSDAnchorGenerator: give both min_sizes and max_sizes, or neither.")
        if min_sizes is None:
            min_sizes, max_sizes = ssd_min_max_sizes(input_size, basesize_ratio_range, len(strides))
        if not len(min_sizes) == len(max_sizes) == len(strides):
            raise ValueError(
                f"SSDAnchorGenerator: min_sizes {list(min_sizes)} and max_sizes {list(max_sizes)} need one "
                f"entry per stride ({len(strides)})."
            )
        # The parent's scale/ratio machinery is not used: SSD's anchors are listed per level below.
        # `scale_major` only reorders MMDetection's intermediate list, which it then permutes back to the
        # published order, so both values give the same anchors.
        super().__init__(strides=strides, ratios=[1.0], scales=[1.0], center_offset=0.5)
        self.input_size = input_size
        self.min_sizes = [float(s) for s in min_sizes]
        self.max_sizes = [float(s) for s in max_sizes]
        self.level_ratios = [[float(r) for r in rs] for rs in ratios]
        self.base_anchors = [
            self._ssd_base_anchors(s, m, rs)
            for s, m, rs in zip(self.min_sizes, self.max_sizes, self.level_ratios)
        ]

    @staticmethod
    def _ssd_base_anchors(size: float, max_size: float, ratios: list[float]) -> torch.Tensor:
        wh = [(size, size), (math.sqrt(size * max_size),) * 2]
        for r in ratios:
            wh += [(size * math.sqrt(r), size / math.sqrt(r)), (size / math.sqrt(r), size * math.sqrt(r))]
        t = torch.tensor(wh, dtype=torch.float32)
        return torch.cat([-0.5 * t, 0.5 * t], dim=1)


@TASK_UTILS.register_module()
class YOLOAnchorGenerator(AnchorGenerator):
    """YOLOv3's anchors: explicit ``(w, h)`` sizes per level, centred on each grid cell's centre.

    Args:
        strides: one stride per level (coarsest first in YOLOv3's configs: ``[32, 16, 8]``).
        base_sizes: per level, a list of ``(w, h)`` pairs (the same number on every level).

    Example::

        >>> g = YOLOAnchorGenerator(strides=[32], base_sizes=[[(116, 90)]])
        >>> g.grid_priors([(1, 2)])[0]
        tensor([[-42., -29.,  74.,  61.],
                [-10., -29., 106.,  61.]])
    """

    def __init__(
        self,
        strides: Sequence[int | Sequence[int]],
        base_sizes: Sequence[Sequence[Sequence[float]]],
        use_box_type: bool = False,
    ) -> None:
        if use_box_type:
            raise ValueError("YOLOAnchorGenerator(use_box_type=True): kiln's anchors are plain XYXY tensors.")
        if len(base_sizes) != len(strides):
            raise ValueError(
                f"YOLOAnchorGenerator: {len(base_sizes)} base_sizes lists for {len(strides)} strides; give "
                "one list of (w, h) pairs per level."
            )
        counts = {len(level) for level in base_sizes}
        if len(counts) != 1:
            raise ValueError(
                f"YOLOAnchorGenerator: every level needs the same number of anchors, got {sorted(counts)}."
            )
        super().__init__(strides=strides, ratios=[1.0], scales=[1.0], center_offset=0.5)
        self.base_sizes = [[(float(w), float(h)) for w, h in level] for level in base_sizes]
        self.base_anchors = []
        for level in self.base_sizes:
            t = torch.tensor(level, dtype=torch.float32)
            self.base_anchors.append(torch.cat([-0.5 * t, 0.5 * t], dim=1))
