"""Helpers shared by the mask structures: index normalisation, argument checks, and the transform
primitives (flip, affine) that MMDetection's mask methods are made of.

The transforms come from :mod:`kiln.data.transforms.transform` (the one geometry core; imported when
used, so ``import kiln.structures`` stays light and the data package is not loaded by structures).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Union

import numpy as np
import torch

from .boxes import Boxes

Index = Union[int, slice, Sequence[int], Sequence[bool], np.ndarray, torch.Tensor]
FLIPS = ("horizontal", "vertical", "diagonal")


def select(index: Index, n: int, owner: str) -> Any:
    """Normalise an index into something numpy/list selection takes; an int keeps the instance axis."""
    if isinstance(index, (int, np.integer)):
        i = int(index)
        if not -n <= i < n:
            raise IndexError(f"{owner} index {i} out of range for {n} masks.")
        return np.array([i % n])
    if isinstance(index, slice):
        return index
    if isinstance(index, torch.Tensor):
        index = index.detach().cpu().numpy()
    idx = np.asarray(index)
    if idx.dtype == np.bool_:
        if idx.shape != (n,):
            raise IndexError(f"{owner}: a bool index must have shape ({n},) (one flag per mask), got "
                             f"{idx.shape}.")
        return np.flatnonzero(idx)
    if idx.size == 0:
        return np.zeros(0, dtype=np.int64)
    if not np.issubdtype(idx.dtype, np.integer):
        raise IndexError(f"{owner}: index must be an int, slice, bool mask or integer array; got dtype "
                         f"{idx.dtype}.")
    idx = idx.reshape(-1)
    if idx.min() < -n or idx.max() >= n:
        raise IndexError(f"{owner}: index values must lie in [-{n}, {n}), got {idx.min()}..{idx.max()}.")
    return idx


def out_hw(out_shape: int | Sequence[int], what: str) -> tuple[int, int]:
    if isinstance(out_shape, (int, np.integer)):
        return int(out_shape), int(out_shape)
    if len(out_shape) != 2:
        raise ValueError(f"{what}: out_shape must be (height, width) or an int, got {out_shape!r}.")
    return int(out_shape[0]), int(out_shape[1])


def crop_window(bbox: np.ndarray, height: int, width: int) -> tuple[int, int, int, int]:
    """MMDetection's crop window: the box clipped to the image, at least 1 pixel wide and high."""
    bbox = np.asarray(bbox).reshape(-1)
    if bbox.shape != (4,):
        raise ValueError(f"crop: bbox must be 4 numbers x1, y1, x2, y2, got {bbox.tolist()}.")
    x1, x2 = np.clip(bbox[0::2], 0, width).astype(int)
    y1, y2 = np.clip(bbox[1::2], 0, height).astype(int)
    x1, y1 = min(x1, width - 1), min(y1, height - 1)
    return x1, y1, max(min(x2, width) - x1, 1), max(min(y2, height) - y1, 1)


def affine(matrix: np.ndarray, h: int, w: int, out_shape: Sequence[int], interpolation: str,
            border_value: Any) -> Any:
    from kiln.data.transforms.transform import AffineTransform

    out_h, out_w = out_hw(out_shape, "affine")
    return AffineTransform(matrix, w, h, out_w, out_h, interpolation, border_value)


def translate_matrix(offset: float, direction: str) -> np.ndarray:
    if direction not in ("horizontal", "vertical"):
        raise ValueError(f"translate: direction must be 'horizontal' or 'vertical', got {direction!r}.")
    t = [offset, 0.0] if direction == "horizontal" else [0.0, offset]
    return np.array([[1.0, 0.0, t[0]], [0.0, 1.0, t[1]]])


def shear_matrix(magnitude: float, direction: str) -> np.ndarray:
    """Shear about the image origin, as MMDetection (mmcv.imshear) does: x' = x + m * y (horizontal)."""
    if direction not in ("horizontal", "vertical"):
        raise ValueError(f"shear: direction must be 'horizontal' or 'vertical', got {direction!r}.")
    if direction == "horizontal":
        return np.array([[1.0, magnitude, 0.0], [0.0, 1.0, 0.0]])
    return np.array([[1.0, 0.0, 0.0], [magnitude, 1.0, 0.0]])


def rotate_matrix(angle: float, center: Sequence[float] | None, scale: float, h: int,
                   w: int) -> np.ndarray:
    """MMDetection's ``rotate``: positive ``angle`` turns clockwise on screen (mmcv.imrotate)."""
    cx, cy = (w / 2.0, h / 2.0) if center is None else (float(center[0]), float(center[1]))
    rad = math.radians(angle)
    c, s = math.cos(rad) * scale, math.sin(rad) * scale
    # y points down: this matrix turns clockwise on screen for positive angles.
    a = np.array([[c, -s], [s, c]])
    t = np.array([cx, cy]) - a @ np.array([cx, cy])
    return np.concatenate([a, t[:, None]], axis=1)


def flip_transform(direction: str, h: int, w: int) -> Any:
    from kiln.data.transforms.transform import HFlipTransform, TransformList, VFlipTransform

    if direction not in FLIPS:
        raise ValueError(f"flip: flip_direction must be one of {FLIPS}, got {direction!r}.")
    steps = []
    if direction in ("horizontal", "diagonal"):
        steps.append(HFlipTransform(w))
    if direction in ("vertical", "diagonal"):
        steps.append(VFlipTransform(h))
    return TransformList(steps)


def rescaled_shape(h: int, w: int, scale: float | Sequence[int]) -> tuple[int, int]:
    from kiln.image.geometric import rescale_size

    new_w, new_h = rescale_size((w, h), scale)
    return new_h, new_w


def boxes_tensor(bboxes: Any, what: str) -> torch.Tensor:
    if isinstance(bboxes, Boxes):
        boxes = bboxes.tensor
    elif isinstance(bboxes, torch.Tensor):
        boxes = bboxes
    else:
        boxes = torch.as_tensor(np.asarray(bboxes, dtype=np.float32))
    boxes = boxes.detach()  # targets: no gradient flows into the proposals through them
    if boxes.ndim != 2 or boxes.shape[-1] != 4:
        raise ValueError(f"{what}: bboxes must be (R, 4) XYXY, got shape {tuple(boxes.shape)}.")
    return boxes


def roi_inds(inds: Any, n_boxes: int, n_masks: int, what: str) -> torch.Tensor:
    if inds is None:
        if n_boxes != n_masks:
            raise ValueError(f"{what}: without inds there must be one box per mask ({n_masks} masks, "
                             f"{n_boxes} boxes); pass inds (which mask each box crops).")
        return torch.arange(n_boxes)
    inds = torch.as_tensor(np.asarray(inds) if not isinstance(inds, torch.Tensor) else inds).long().cpu()
    if inds.shape != (n_boxes,):
        raise ValueError(f"{what}: inds must have shape ({n_boxes},) (one mask index per box), got "
                         f"{tuple(inds.shape)}.")
    if n_boxes and (inds.min() < 0 or inds.max() >= n_masks):
        raise IndexError(f"{what}: inds must lie in [0, {n_masks}), got "
                         f"{int(inds.min())}..{int(inds.max())}.")
    return inds


def same_kind(masks: Sequence[Any], cls: type, what: str) -> tuple[int, int]:
    if not masks:
        raise ValueError(f"{what}.cat needs at least one {what}.")
    bad = [type(m).__name__ for m in masks if not isinstance(m, cls)]
    if bad:
        raise TypeError(f"{what}.cat: every item must be a {what}, got {bad}.")
    sizes = {(m.height, m.width) for m in masks}
    if len(sizes) > 1:
        raise ValueError(f"{what}.cat: masks of different image sizes {sorted(sizes, key=str)}; resize or "
                         "pad them to one size first.")
    return sizes.pop()
