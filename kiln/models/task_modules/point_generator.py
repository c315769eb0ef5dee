"""``MlvlPointGenerator``: one prior point per feature-map cell, the priors of anchor-free heads."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from kiln.registry import TASK_UTILS

__all__ = ["MlvlPointGenerator"]


@TASK_UTILS.register_module()
class MlvlPointGenerator:
    """Points (input-image pixels) at every cell of every feature level, for anchor-free heads (FCOS).

    Cell ``(y, x)`` of a level with stride ``s`` gives the point ``((x + offset)·s, (y + offset)·s)``:
    ``offset=0.5`` (MMDetection's default) is the centre of the cell's receptive field, ``0`` its top-left
    corner (torchvision's FCOS anchors are centred there). Per level the order is row-major (y, then x),
    matching a head's output permuted to N×H×W×C.

    Example::

        >>> MlvlPointGenerator([8]).grid_priors([(1, 2)])[0]
        tensor([[ 4.,  4.],
                [12.,  4.]])
    """

    def __init__(self, strides: Sequence[int | Sequence[int]], offset: float = 0.5) -> None:
        self.strides = [(s, s) if isinstance(s, (int, float)) else tuple(s) for s in strides]
        self.offset = float(offset)

    @property
    def num_levels(self) -> int:
        """Number of feature levels."""
        return len(self.strides)

    @property
    def num_base_priors(self) -> list[int]:
        """Priors per cell, per level (one point)."""
        return [1] * self.num_levels

    def single_level_grid_priors(
        self,
        featmap_size: Sequence[int],
        level_idx: int,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str = "cpu",
        with_stride: bool = False,
    ) -> torch.Tensor:
        """Points of one level: (H·W)×2 ``(x, y)``, or (H·W)×4 ``(x, y, stride_w, stride_h)``."""
        h, w = int(featmap_size[0]), int(featmap_size[1])
        sw, sh = self.strides[level_idx]
        xs = (torch.arange(w, device=device, dtype=torch.float32) + self.offset) * sw
        ys = (torch.arange(h, device=device, dtype=torch.float32) + self.offset) * sh
        yy, xx = torch.meshgrid(ys.to(dtype), xs.to(dtype), indexing="ij")
        cols = [xx.reshape(-1), yy.reshape(-1)]
        if with_stride:
            cols += [xx.new_full((h * w,), sw).reshape(-1), yy.new_full((h * w,), sh).reshape(-1)]
        return torch.stack(cols, dim=-1)

    def grid_priors(
        self,
        featmap_sizes: Sequence[Sequence[int]],
        dtype: torch.dtype = torch.float32,
        device: torch.device | str = "cpu",
        with_stride: bool = False,
    ) -> list[torch.Tensor]:
        """Points of every level (see :meth:`single_level_grid_priors`)."""
        if len(featmap_sizes) != self.num_levels:
            raise ValueError(
                f"MlvlPointGenerator has {self.num_levels} strides {self.strides} but got "
                f"{len(featmap_sizes)} feature maps; match the head's strides to the neck's num_outs."
            )
        return [
            self.single_level_grid_priors(s, i, dtype, device, with_stride)
            for i, s in enumerate(featmap_sizes)
        ]

    def __repr__(self) -> str:
        return f"{type(self).__name__}(strides={self.strides}, offset={self.offset})"
