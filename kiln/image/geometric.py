"""Resize, rescale (keeping the aspect ratio), flip and pad numpy images."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Union

import cv2
import numpy as np

__all__ = ["imresize", "imrescale", "rescale_size", "imflip", "impad", "impad_to_multiple"]

INTERPOLATIONS = {
    "nearest": cv2.INTER_NEAREST,
    "bilinear": cv2.INTER_LINEAR,
    "bicubic": cv2.INTER_CUBIC,
    "area": cv2.INTER_AREA,
    "lanczos": cv2.INTER_LANCZOS4,
}
_PAD_MODES = {
    "constant": cv2.BORDER_CONSTANT,
    "edge": cv2.BORDER_REPLICATE,
    "reflect": cv2.BORDER_REFLECT_101,
    "symmetric": cv2.BORDER_REFLECT,
}

Scale = Union[float, int, Sequence[int]]


def _interp(name: str) -> int:
    if name not in INTERPOLATIONS:
        raise ValueError(f"interpolation must be one of {sorted(INTERPOLATIONS)}, got {name!r}.")
    return INTERPOLATIONS[name]


def imresize(img: np.ndarray, size: tuple[int, int], return_scale: bool = False,
             interpolation: str = "bilinear") -> Any:
    """Resize to ``size = (w, h)``; with ``return_scale`` also return ``w_scale, h_scale``."""
    h, w = img.shape[:2]
    new_w, new_h = int(size[0]), int(size[1])
    if new_w <= 0 or new_h <= 0:
        raise ValueError(f"imresize: size must be positive (w, h), got {size}.")
    out = cv2.resize(img, (new_w, new_h), interpolation=_interp(interpolation))
    if not return_scale:
        return out
    return out, new_w / w, new_h / h


def rescale_size(old_size: tuple[int, int], scale: Scale, return_scale: bool = False) -> Any:
    """New ``(w, h)`` for ``old_size = (w, h)`` scaled by a factor or to fit ``(long, short)``.

    A tuple ``scale`` means: as large as possible with the long edge ≤ ``max(scale)`` and the
    short edge ≤ ``min(scale)`` (the usual ``img_scale=(1333, 800)``).
    """
    w, h = old_size
    if isinstance(scale, (int, float)) and not isinstance(scale, bool):
        if scale <= 0:
            raise ValueError(f"rescale: scale factor must be positive, got {scale}.")
        factor = float(scale)
    elif isinstance(scale, (tuple, list)) and len(scale) == 2:
        long_edge, short_edge = max(scale), min(scale)
        factor = min(long_edge / max(h, w), short_edge / min(h, w))
    else:
        raise TypeError(f"rescale: scale must be a number or a (long, short) pair, got {scale!r}.")
    new_size = (int(w * factor + 0.5), int(h * factor + 0.5))
    return (new_size, factor) if return_scale else new_size


def imrescale(img: np.ndarray, scale: Scale, return_scale: bool = False,
              interpolation: str = "bilinear") -> Any:
    """Resize keeping the aspect ratio (see :func:`rescale_size`); optionally return the factor."""
    h, w = img.shape[:2]
    new_size, factor = rescale_size((w, h), scale, return_scale=True)
    out = imresize(img, new_size, interpolation=interpolation)
    return (out, factor) if return_scale else out


def imflip(img: np.ndarray, direction: str = "horizontal") -> np.ndarray:
    """Flip ``'horizontal'`` (left-right), ``'vertical'`` (up-down) or ``'diagonal'`` (both)."""
    axes = {"horizontal": 1, "vertical": 0, "diagonal": (0, 1)}
    if direction not in axes:
        raise ValueError(f"imflip: direction must be one of {list(axes)}, got {direction!r}.")
    return np.ascontiguousarray(np.flip(img, axis=axes[direction]))


def impad(img: np.ndarray, *, shape: tuple[int, int] | None = None,
          padding: int | Sequence[int] | None = None, pad_val: float | Sequence[float] = 0,
          padding_mode: str = "constant") -> np.ndarray:
    """Pad to ``shape = (h, w)`` (bottom/right) or by ``padding``.

    ``padding`` is an int (all sides), ``(horizontal, vertical)`` or
    ``(left, top, right, bottom)``. ``pad_val`` is a number or one value per channel.
    """
    if (shape is None) == (padding is None):
        raise ValueError("impad: give exactly one of shape=(h, w) or padding=....")
    h, w = img.shape[:2]
    if shape is not None:
        if shape[0] < h or shape[1] < w:
            raise ValueError(f"impad: target shape {tuple(shape)} is smaller than the image ({h}, {w}).")
        padding = (0, 0, int(shape[1]) - w, int(shape[0]) - h)
    if isinstance(padding, int):
        pads = (padding,) * 4
    elif len(padding) == 2:
        pads = (padding[0], padding[1], padding[0], padding[1])
    elif len(padding) == 4:
        pads = tuple(padding)
    else:
        raise ValueError(f"impad: padding must be an int, 2 or 4 values, got {padding!r}.")
    if any(p < 0 for p in pads):
        raise ValueError(f"impad: padding must be non-negative, got {pads}.")
    if padding_mode not in _PAD_MODES:
        raise ValueError(f"impad: padding_mode must be one of {list(_PAD_MODES)}, got {padding_mode!r}.")
    channels = 1 if img.ndim == 2 else img.shape[2]
    if isinstance(pad_val, (int, float)):
        value: Any = [pad_val] * channels
    else:
        if len(pad_val) != channels:
            raise ValueError(f"impad: {len(pad_val)} pad values for an image with {channels} channels.")
        value = list(pad_val)
    left, top, right, bottom = (int(p) for p in pads)
    if channels > 4:  # OpenCV's border value holds at most 4 channels
        widths = [(top, bottom), (left, right), (0, 0)]
        if padding_mode != "constant":
            np_mode = {"edge": "edge", "reflect": "reflect", "symmetric": "symmetric"}[padding_mode]
            return np.pad(img, widths, mode=np_mode)
        out = np.empty((h + top + bottom, w + left + right, channels), dtype=img.dtype)
        out[...] = np.asarray(value, dtype=img.dtype)
        out[top:top + h, left:left + w] = img
        return out
    return cv2.copyMakeBorder(img, top, bottom, left, right, _PAD_MODES[padding_mode], value=value[:4])


def impad_to_multiple(img: np.ndarray, divisor: int, pad_val: float | Sequence[float] = 0) -> np.ndarray:
    """Pad bottom/right so both sides are multiples of ``divisor``."""
    if divisor <= 0:
        raise ValueError(f"impad_to_multiple: divisor must be positive, got {divisor}.")
    h, w = img.shape[:2]
    shape = (-(-h // divisor) * divisor, -(-w // divisor) * divisor)
    return impad(img, shape=shape, pad_val=pad_val)
