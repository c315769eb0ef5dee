"""Anchor generators: MMDetection octave/scale style and Detectron2 sizes/aspect_ratios style."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from kiln.registry import TASK_UTILS

__all__ = ["AnchorGenerator", "DefaultAnchorGenerator"]


@TASK_UTILS.register_module()
class AnchorGenerator:
    """Generates anchors (XYXY, input-image pixels) for every location of every feature level.

    Anchor shapes per level, ``ratio = h / w``:

    * MMDetection style: ``w = base_size * scale / sqrt(ratio)``, ``h = base_size * scale * sqrt(ratio)``
      with ``base_size`` = the level's stride (or ``base_sizes``) and ``scales`` given directly or as
      ``octave_base_scale * 2 ** (i / scales_per_octave)``. Order: ratio-major, scale-minor
      (``scale_major=True``, MMDetection's default) or the reverse.
    * Detectron2 style (``sizes``): ``area = size²``, ``w = sqrt(area / ratio)``, ``h = ratio * w``, ordered
      size-major; ``sizes`` is one list per level (or one list shared by all levels).

    Anchors are centred on ``(x + center_offset) * stride`` for cell ``x`` (``center_offset=0``: the cell's
    top-left corner, MMDetection v2; ``0.5``: its centre). Per level the order is (y, x, anchor), matching
    a head's output permuted to N×H×W×A.

    Example::

        >>> g = AnchorGenerator(strides=[8], ratios=[1.0], scales=[4])
        >>> g.grid_priors([(1, 2)])[0]
        tensor([[-16., -16., 16., 16.],
                [ -8., -16., 24., 16.]])
    """

    def __init__(
        self,
        strides: Sequence[int | Sequence[int]],
        ratios: Sequence[float] = (0.5, 1.0, 2.0),
        scales: Sequence[float] | None = None,
        base_sizes: Sequence[int] | None = None,
        scale_major: bool = True,
        octave_base_scale: float | None = None,
        scales_per_octave: int | None = None,
        sizes: Sequence[Sequence[float]] | Sequence[float] | None = None,
        center_offset: float = 0.0,
    ) -> None:
        self.strides = [(s, s) if isinstance(s, (int, float)) else tuple(s) for s in strides]
        self.ratios = [float(r) for r in ratios]
        self.center_offset = float(center_offset)
        if sizes is not None:
            if scales is not None or octave_base_scale is not None:
                raise ValueError(
                    "AnchorGenerator: give either sizes (Detectron2 style) or "
                    "scales/octave_base_scale (MMDetection style), not both."
                )
            if all(isinstance(s, (int, float)) for s in sizes):
                sizes = [list(sizes)] * len(self.strides)
            if len(sizes) != len(self.strides):
                raise ValueError(
                    f"AnchorGenerator: {len(sizes)} size lists for {len(self.strides)} strides; "
                    "give one list per level or one list for all."
                )
            self.base_anchors = [self._d2_base_anchors([float(x) for x in s]) for s in sizes]
        else:
            if octave_base_scale is not None:
                if scales is not None or scales_per_octave is None:
                    raise ValueError(
                        "AnchorGenerator: octave_base_scale needs scales_per_octave and no scales."
                    )
                scales = [octave_base_scale * 2 ** (i / scales_per_octave) for i in range(scales_per_octave)]
            elif scales is None:
                raise ValueError(
                    "AnchorGenerator needs scales, octave_base_scale+scales_per_octave, or sizes."
                )
            if base_sizes is None:
                base_sizes = [min(s) for s in self.strides]
            if len(base_sizes) != len(self.strides):
                raise ValueError(
                    f"AnchorGenerator: base_sizes={list(base_sizes)} must have one entry per "
                    f"stride ({len(self.strides)})."
                )
            self.scales = [float(s) for s in scales]
            self.base_anchors = [self._mm_base_anchors(float(b), scale_major) for b in base_sizes]
        self._cache: dict[tuple, list[torch.Tensor]] = {}

    def _mm_base_anchors(self, base_size: float, scale_major: bool) -> torch.Tensor:
        ratios = torch.tensor(self.ratios, dtype=torch.float64)
        scales = torch.tensor(self.scales, dtype=torch.float64)
        h_ratios = torch.sqrt(ratios)
        w_ratios = 1 / h_ratios
        if scale_major:
            ws = (base_size * w_ratios[:, None] * scales[None, :]).reshape(-1)
            hs = (base_size * h_ratios[:, None] * scales[None, :]).reshape(-1)
        else:
            ws = (base_size * scales[:, None] * w_ratios[None, :]).reshape(-1)
            hs = (base_size * scales[:, None] * h_ratios[None, :]).reshape(-1)
        return torch.stack([-0.5 * ws, -0.5 * hs, 0.5 * ws, 0.5 * hs], dim=-1).float()

    def _d2_base_anchors(self, sizes: list[float]) -> torch.Tensor:
        out = []
        for size in sizes:
            area = size**2
            for ratio in self.ratios:
                w = math.sqrt(area / ratio)
                h = ratio * w
                out.append([-w / 2, -h / 2, w / 2, h / 2])
        return torch.tensor(out, dtype=torch.float32)

    @property
    def num_levels(self) -> int:
        """Number of feature levels."""
        return len(self.strides)

    @property
    def num_base_anchors(self) -> list[int]:
        """Anchors per location, per level."""
        return [len(b) for b in self.base_anchors]

    # MMDetection v2 name
    num_base_priors = num_base_anchors

    def single_level_grid_priors(
        self, featmap_size: tuple[int, int], level: int, device: torch.device | str = "cpu"
    ) -> torch.Tensor:
        """Anchors of one level: (H·W·A)×4, ordered (y, x, anchor)."""
        h, w = int(featmap_size[0]), int(featmap_size[1])
        sx, sy = self.strides[level]
        base = self.base_anchors[level].to(device)
        xs = (torch.arange(w, device=device, dtype=torch.float32) + self.center_offset) * sx
        ys = (torch.arange(h, device=device, dtype=torch.float32) + self.center_offset) * sy
        yy, xx = torch.meshgrid(ys, xs, indexing="ij")
        shifts = torch.stack([xx, yy, xx, yy], dim=-1).reshape(-1, 1, 4)
        return (shifts + base[None]).reshape(-1, 4)

    def grid_priors(
        self, featmap_sizes: Sequence[tuple[int, int]], device: torch.device | str = "cpu"
    ) -> list[torch.Tensor]:
        """Anchors for every level (cached per sizes and device, since they depend on nothing else)."""
        if len(featmap_sizes) != self.num_levels:
            raise ValueError(
                f"AnchorGenerator has {self.num_levels} strides {self.strides} but got "
                f"{len(featmap_sizes)} feature maps; match strides to the neck's num_outs."
            )
        key = (tuple(tuple(int(v) for v in s) for s in featmap_sizes), str(device))
        if key not in self._cache:
            if len(self._cache) > 32:
                self._cache.clear()
            self._cache[key] = [
                self.single_level_grid_priors(s, i, device) for i, s in enumerate(featmap_sizes)
            ]
        return self._cache[key]

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(strides={self.strides}, ratios={self.ratios}, "
            f"num_base_anchors={self.num_base_anchors})"
        )


@TASK_UTILS.register_module()
class DefaultAnchorGenerator(AnchorGenerator):
    """Detectron2-style constructor: ``sizes`` (per level), ``aspect_ratios``, ``strides``, ``offset``."""

    def __init__(
        self,
        sizes: Sequence[Sequence[float]],
        aspect_ratios: Sequence[float] = (0.5, 1.0, 2.0),
        strides: Sequence[int] = (4, 8, 16, 32, 64),
        offset: float = 0.0,
    ) -> None:
        if aspect_ratios and isinstance(aspect_ratios[0], (list, tuple)):
            aspect_ratios = aspect_ratios[0]  # Detectron2 allows one list per level; kiln shares one
        super().__init__(strides=strides, ratios=aspect_ratios, sizes=sizes, center_offset=offset)
