"""Normalization and color conversion on numpy images."""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

__all__ = ["imnormalize", "imdenormalize", "bgr2rgb", "rgb2bgr", "bgr2gray", "gray2bgr"]


def imnormalize(img: np.ndarray, mean: Sequence[float], std: Sequence[float],
                to_rgb: bool = True) -> np.ndarray:
    """Return ``(img - mean) / std`` as float32; ``to_rgb`` first swaps BGR → RGB.

    ``mean``/``std`` are per channel in the output order (RGB when ``to_rgb``).
    """
    out = img.astype(np.float32)
    if to_rgb:
        if out.ndim != 3 or out.shape[2] != 3:
            raise ValueError(f"imnormalize: to_rgb needs an H×W×3 image, got shape {img.shape}.")
        out = out[..., ::-1]
    mean_arr = np.asarray(mean, dtype=np.float32)
    std_arr = np.asarray(std, dtype=np.float32)
    if np.any(std_arr == 0):
        raise ValueError(f"imnormalize: std must be non-zero, got {list(std)}.")
    return np.ascontiguousarray((out - mean_arr) / std_arr, dtype=np.float32)


def imdenormalize(img: np.ndarray, mean: Sequence[float], std: Sequence[float],
                  to_bgr: bool = True) -> np.ndarray:
    """Invert :func:`imnormalize` (float32 result; ``to_bgr`` swaps RGB → BGR afterwards)."""
    out = img.astype(np.float32) * np.asarray(std, dtype=np.float32) + np.asarray(mean, dtype=np.float32)
    return np.ascontiguousarray(out[..., ::-1]) if to_bgr else out


def bgr2rgb(img: np.ndarray) -> np.ndarray:
    """BGR → RGB."""
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def rgb2bgr(img: np.ndarray) -> np.ndarray:
    """RGB → BGR."""
    return cv2.cvtColor(img, cv2.COLOR_RGB2BGR)


def bgr2gray(img: np.ndarray, keepdim: bool = False) -> np.ndarray:
    """BGR → grayscale (H×W, or H×W×1 with ``keepdim``)."""
    out = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)
    return out[..., None] if keepdim else out


def gray2bgr(img: np.ndarray) -> np.ndarray:
    """Grayscale → BGR (3 equal channels)."""
    return cv2.cvtColor(img[..., 0] if img.ndim == 3 else img, cv2.COLOR_GRAY2BGR)
