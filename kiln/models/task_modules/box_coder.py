"""Box coders: boxes ↔ regression targets."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from kiln.registry import TASK_UTILS

__all__ = ["DeltaXYWHBBoxCoder"]


@TASK_UTILS.register_module()
class DeltaXYWHBBoxCoder:
    """Encode boxes as normalised ``(dx, dy, dw, dh)`` deltas relative to reference boxes (R-CNN).

    ``dx = (gx - px) / pw``, ``dw = log(gw / pw)``, then ``(delta - means) / stds``. Widths are
    ``x2 - x1`` (no +1, MMDetection v2 / Detectron2). Decoding clamps ``dw, dh`` to
    ``±log(1000 / 16)`` so ``exp`` cannot overflow, and clips to ``max_shape`` when ``clip_border``.
    ``symmetric_wh_clamp=False`` clamps them from above only (Detectron2's ``Box2BoxTransform``
    ``scale_clamp``): a strongly negative ``dw`` then shrinks a box towards zero width instead of to
    16/1000 of the reference.

    Example::

        >>> c = DeltaXYWHBBoxCoder()
        >>> anchors = torch.tensor([[0., 0., 10., 10.]]); gt = torch.tensor([[1., 2., 9., 12.]])
        >>> torch.allclose(c.decode(anchors, c.encode(anchors, gt)), gt)
        True
    """

    def __init__(
        self,
        target_means: Sequence[float] = (0.0, 0.0, 0.0, 0.0),
        target_stds: Sequence[float] = (1.0, 1.0, 1.0, 1.0),
        clip_border: bool = True,
        add_ctr_clamp: bool = False,
        ctr_clamp: float = 32.0,
        wh_ratio_clip: float = 16 / 1000,
        symmetric_wh_clamp: bool = True,
    ) -> None:
        if len(target_means) != 4 or len(target_stds) != 4:
            raise ValueError(
                f"DeltaXYWHBBoxCoder: target_means={list(target_means)} and "
                f"target_stds={list(target_stds)} must have 4 entries each."
            )
        self.means = tuple(float(m) for m in target_means)
        self.stds = tuple(float(s) for s in target_stds)
        self.clip_border = clip_border
        self.add_ctr_clamp = add_ctr_clamp
        self.ctr_clamp = ctr_clamp
        self.max_ratio = abs(math.log(wh_ratio_clip))
        self.symmetric_wh_clamp = bool(symmetric_wh_clamp)

    encode_size = 4

    def encode(self, bboxes: torch.Tensor, gt_bboxes: torch.Tensor) -> torch.Tensor:
        """Deltas (N×4) that turn ``bboxes`` into ``gt_bboxes`` (both N×4 XYXY)."""
        if bboxes.shape != gt_bboxes.shape:
            raise ValueError(
                f"encode: bboxes {tuple(bboxes.shape)} and gt_bboxes {tuple(gt_bboxes.shape)} differ."
            )
        bboxes = bboxes.float()
        gt_bboxes = gt_bboxes.float()
        pw = bboxes[:, 2] - bboxes[:, 0]
        ph = bboxes[:, 3] - bboxes[:, 1]
        px = bboxes[:, 0] + 0.5 * pw
        py = bboxes[:, 1] + 0.5 * ph
        gw = gt_bboxes[:, 2] - gt_bboxes[:, 0]
        gh = gt_bboxes[:, 3] - gt_bboxes[:, 1]
        gx = gt_bboxes[:, 0] + 0.5 * gw
        gy = gt_bboxes[:, 1] + 0.5 * gh
        deltas = torch.stack([(gx - px) / pw, (gy - py) / ph, torch.log(gw / pw), torch.log(gh / ph)], dim=-1)
        means = deltas.new_tensor(self.means)
        stds = deltas.new_tensor(self.stds)
        return (deltas - means) / stds

    def decode(
        self, bboxes: torch.Tensor, deltas: torch.Tensor, max_shape: tuple[int, int] | None = None
    ) -> torch.Tensor:
        """Apply ``deltas`` (…×4) to ``bboxes`` (…×4); clip to ``max_shape=(h, w)`` if given."""
        means = deltas.new_tensor(self.means)
        stds = deltas.new_tensor(self.stds)
        d = deltas * stds + means
        dx, dy, dw, dh = d.unbind(-1)
        bboxes = bboxes.to(deltas.dtype)
        pw = bboxes[..., 2] - bboxes[..., 0]
        ph = bboxes[..., 3] - bboxes[..., 1]
        px = bboxes[..., 0] + 0.5 * pw
        py = bboxes[..., 1] + 0.5 * ph
        dxw = pw * dx
        dyh = ph * dy
        if self.add_ctr_clamp:
            dxw = dxw.clamp(-self.ctr_clamp, self.ctr_clamp)
            dyh = dyh.clamp(-self.ctr_clamp, self.ctr_clamp)
        if self.add_ctr_clamp or not self.symmetric_wh_clamp:
            dw = dw.clamp(max=self.max_ratio)
            dh = dh.clamp(max=self.max_ratio)
        else:
            dw = dw.clamp(-self.max_ratio, self.max_ratio)
            dh = dh.clamp(-self.max_ratio, self.max_ratio)
        gw = pw * dw.exp()
        gh = ph * dh.exp()
        gx = px + dxw
        gy = py + dyh
        out = torch.stack([gx - 0.5 * gw, gy - 0.5 * gh, gx + 0.5 * gw, gy + 0.5 * gh], dim=-1)
        if max_shape is not None and self.clip_border:
            h, w = max_shape[0], max_shape[1]
            out = torch.stack(
                [
                    out[..., 0].clamp(0, w),
                    out[..., 1].clamp(0, h),
                    out[..., 2].clamp(0, w),
                    out[..., 3].clamp(0, h),
                ],
                dim=-1,
            )
        return out
