"""Paste-back: put each detection's small soft mask (e.g. 28×28) into its box of the full image.

The mask head predicts one fixed-size mask per detected box; a user wants one image-sized binary mask
per detection. Both MMDetection (``_do_paste_mask``) and Detectron2 (``paste_masks_in_image``) do this the
same way: each output pixel centre is mapped into the box's normalised coordinates and the small mask is
sampled there bilinearly (``grid_sample``, ``align_corners=False``), then thresholded. Pixels outside the
box read zero. This module implements that once.

Memory: the float intermediate is ``N × H × W`` for ``N`` masks. On CPU each mask is pasted alone and only
over its own box (plus one pixel), which is both fast and small; on GPU the masks go in chunks whose float
intermediate stays under :data:`GPU_MEM_LIMIT`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F

__all__ = ["paste_masks_in_image", "GPU_MEM_LIMIT", "BYTES_PER_FLOAT"]

BYTES_PER_FLOAT = 4
#: upper bound of one chunk's float intermediate on a GPU (1 GiB, as both reference frameworks use)
GPU_MEM_LIMIT = 1024**3


def _paste_chunk(
    masks: torch.Tensor, boxes: torch.Tensor, img_h: int, img_w: int, skip_empty: bool
) -> tuple[torch.Tensor, tuple[slice, slice]]:
    """Sample ``masks`` (N×h×w) inside ``boxes`` (N×4) onto a grid of image pixels.

    With ``skip_empty`` only the region spanned by the boxes (one pixel of margin, clipped to the image)
    is computed; the returned slices say where it lies in the image.
    """
    device = masks.device
    if skip_empty:
        x0_int, y0_int = torch.clamp(boxes.min(dim=0).values.floor()[:2] - 1, min=0).to(torch.int32)
        x1_int = torch.clamp(boxes[:, 2].max().ceil() + 1, max=img_w).to(torch.int32)
        y1_int = torch.clamp(boxes[:, 3].max().ceil() + 1, max=img_h).to(torch.int32)
        x0_int, y0_int, x1_int, y1_int = int(x0_int), int(y0_int), int(x1_int), int(y1_int)
    else:
        x0_int, y0_int, x1_int, y1_int = 0, 0, img_w, img_h
    x0, y0, x1, y1 = torch.split(boxes, 1, dim=1)  # each N×1
    n = masks.shape[0]
    # Pixel centres, normalised to [-1, 1] across each box (grid_sample's align_corners=False frame).
    img_y = torch.arange(y0_int, y1_int, device=device, dtype=torch.float32) + 0.5
    img_x = torch.arange(x0_int, x1_int, device=device, dtype=torch.float32) + 0.5
    img_y = (img_y - y0) / (y1 - y0) * 2 - 1  # N×h'
    img_x = (img_x - x0) / (x1 - x0) * 2 - 1  # N×w'
    gx = img_x[:, None, :].expand(n, img_y.size(1), img_x.size(1))
    gy = img_y[:, :, None].expand(n, img_y.size(1), img_x.size(1))
    grid = torch.stack([gx, gy], dim=3)
    if not masks.dtype.is_floating_point:
        masks = masks.float()
    pasted = F.grid_sample(masks[:, None].to(grid.dtype), grid, align_corners=False)
    return pasted[:, 0], (slice(y0_int, y1_int), slice(x0_int, x1_int))


def paste_masks_in_image(
    masks: torch.Tensor,
    boxes: torch.Tensor,
    image_shape: Sequence[int],
    threshold: float = 0.5,
) -> torch.Tensor:
    """Paste per-box soft masks into image-sized masks.

    Args:
        masks: N×h×w mask probabilities (any fixed ``h``, ``w``), each covering its box.
        boxes: N×4 XYXY boxes in the pixels of the output image.
        image_shape: ``(H, W)`` of the output image.
        threshold: ``>= 0``: binary masks (``prob >= threshold``, bool); negative: soft masks as uint8
            ``0..255`` (MMDetection's ``mask_thr_binary < 0``).

    Returns:
        N×H×W bool (or uint8 for a negative ``threshold``) on ``masks``' device.

    Example::

        >>> probs = torch.ones(1, 28, 28)
        >>> paste_masks_in_image(probs, torch.tensor([[2.0, 3.0, 6.0, 5.0]]), (8, 8)).sum()
        tensor(8)
    """
    if masks.dim() != 3:
        raise ValueError(f"paste_masks_in_image: masks must be N×h×w, got shape {tuple(masks.shape)}.")
    if boxes.dim() != 2 or boxes.shape[1] != 4 or boxes.shape[0] != masks.shape[0]:
        raise ValueError(
            f"paste_masks_in_image: boxes must be N×4 with N={masks.shape[0]} (one per mask), got shape "
            f"{tuple(boxes.shape)}."
        )
    img_h, img_w = int(image_shape[0]), int(image_shape[1])
    device = masks.device
    binary = threshold >= 0
    out = torch.zeros((masks.shape[0], img_h, img_w), device=device,
                      dtype=torch.bool if binary else torch.uint8)
    n = masks.shape[0]
    if n == 0:
        return out
    boxes = boxes.to(device=device, dtype=torch.float32)
    if device.type == "cpu":
        # One mask at a time, over its own box only: the work follows the boxes' area, not N×H×W.
        num_chunks, skip_empty = n, True
    else:
        num_chunks = int(math.ceil(n * img_h * img_w * BYTES_PER_FLOAT / GPU_MEM_LIMIT))
        if num_chunks > n:
            raise RuntimeError(
                f"paste_masks_in_image: one {img_h}×{img_w} mask exceeds the {GPU_MEM_LIMIT} byte chunk "
                "limit; paste on the CPU instead."
            )
        skip_empty = False
    for idx in torch.chunk(torch.arange(n, device=device), num_chunks):
        chunk, (ys, xs) = _paste_chunk(masks[idx], boxes[idx], img_h, img_w, skip_empty)
        if binary:
            chunk = chunk >= threshold
        else:
            chunk = (chunk * 255).to(torch.uint8)
        out[idx, ys, xs] = chunk
    return out
