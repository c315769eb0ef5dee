"""Mask targets: each positive RoI's ground-truth mask, cropped to the RoI and resized to the head's size.

Both reference frameworks build the target of a positive RoI from the ground truth it was matched to:
a bitmap is RoIAligned over the box (``aligned=True``) and binarised at 0.5, a polygon is translated and
scaled into the box and rasterised at the target size. That geometry belongs to the mask structures
(:mod:`kiln.structures.masks`, ``crop_and_resize``); this module only gathers it per image and batch.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

__all__ = ["mask_target"]


def _size(mask_size: int | Sequence[int]) -> tuple[int, int]:
    if isinstance(mask_size, int):
        return (mask_size, mask_size)
    h, w = mask_size
    return (int(h), int(w))


def mask_target(
    pos_bboxes: Sequence[torch.Tensor],
    pos_assigned_gt_inds: Sequence[torch.Tensor],
    gt_masks: Sequence[Any],
    mask_size: int | Sequence[int],
) -> torch.Tensor:
    """Targets of all positive RoIs of a batch, images concatenated: R×h×w float 0/1.

    Args:
        pos_bboxes: per image P_i×4 positive RoIs (XYXY, input-image pixels).
        pos_assigned_gt_inds: per image P_i, the index of each RoI's ground truth in ``gt_masks[i]``.
        gt_masks: per image a ``BitmapMasks`` / ``PolygonMasks`` (:mod:`kiln.structures.masks`) sized to
            the input image.
        mask_size: ``h`` or ``(h, w)`` of the targets (``train_cfg.rcnn.mask_size``, 28).
    """
    size = _size(mask_size)
    if not (len(pos_bboxes) == len(pos_assigned_gt_inds) == len(gt_masks)):
        raise ValueError(
            f"mask_target: {len(pos_bboxes)} images of RoIs, {len(pos_assigned_gt_inds)} of gt indices and "
            f"{len(gt_masks)} of gt masks; give one of each per image."
        )
    targets = []
    for i, (boxes, inds, masks) in enumerate(zip(pos_bboxes, pos_assigned_gt_inds, gt_masks)):
        if not hasattr(masks, "crop_and_resize"):
            raise TypeError(
                f"mask_target: gt masks of image {i} are a {type(masks).__name__}; expected BitmapMasks or "
                "PolygonMasks (kiln.structures.masks), e.g. from LoadAnnotations(with_mask=True)."
            )
        if boxes.shape[0] == 0:
            targets.append(boxes.new_zeros((0, *size)))
            continue
        out = masks.crop_and_resize(boxes.detach(), size, inds=inds, device=boxes.device,
                                    interpolation="bilinear", binarize=True)
        targets.append(torch.as_tensor(out, device=boxes.device).to(boxes.dtype))
    if not targets:
        return torch.zeros((0, *size))
    return torch.cat(targets)
