"""Deterministic transform primitives: the one geometry core of kiln's data pipelines.

A :class:`Transform` is a fully parameterised operation (no randomness inside): "flip an image of
width 640", "resize 480x640 to 800x1066". It knows how to move every kind of data that lives on
an image: pixels (``apply_image``), points (``apply_coords``), axis-aligned boxes (``apply_box``),
label maps (``apply_segmentation``) and polygons (``apply_polygons``), and how to undo itself
(``inverse``). Random augmentations (:mod:`kiln.data.transforms.augmentation`) and the MM-style
config steps (:mod:`kiln.data.transforms.pipelines`) both *produce* these objects; no other code
in kiln moves a box.

Coordinate convention: continuous pixel coordinates, pixel ``i`` covers ``[i, i + 1)``; an image
of width ``w`` spans ``[0, w]``. A box is ``XYXY`` in those coordinates. Images are ``H x W`` or
``H x W x C`` numpy arrays (uint8 or float32).

Example::

    >>> import numpy as np
    >>> t = TransformList([ResizeTransform(100, 200, 50, 100), HFlipTransform(100)])
    >>> t.apply_box(np.array([[10.0, 20.0, 50.0, 60.0]]))
    array([[75., 10., 95., 30.]])
    >>> t.inverse().apply_box(t.apply_box(np.array([[10.0, 20.0, 50.0, 60.0]])))
    array([[10., 20., 50., 60.]])
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import cv2
import numpy as np

__all__ = [
    "Transform",
    "TransformList",
    "NoOpTransform",
    "HFlipTransform",
    "VFlipTransform",
    "ResizeTransform",
    "CropTransform",
    "PadTransform",
    "AffineTransform",
    "RotationTransform",
    "BlendTransform",
    "HueSaturationTransform",
    "ChannelPermuteTransform",
    "ColorTransform",
    "interp_code",
    "clip_boxes",
]

_INTERP = {
    "nearest": cv2.INTER_NEAREST,
    "bilinear": cv2.INTER_LINEAR,
    "linear": cv2.INTER_LINEAR,
    "bicubic": cv2.INTER_CUBIC,
    "cubic": cv2.INTER_CUBIC,
    "area": cv2.INTER_AREA,
    "lanczos": cv2.INTER_LANCZOS4,
}
# INTER_NEAREST floors the source coordinate; the _EXACT variant samples pixel centres, which keeps
# label maps aligned with boxes moved by the exact formulas below.
_NEAREST_EXACT = getattr(cv2, "INTER_NEAREST_EXACT", cv2.INTER_NEAREST)


def interp_code(interp: str | int) -> int:
    """Return the OpenCV interpolation flag for ``interp`` (a name like ``'bilinear'`` or a cv2 flag)."""
    if isinstance(interp, (int, np.integer)):
        return int(interp)
    try:
        return _INTERP[str(interp).lower()]
    except KeyError:
        raise ValueError(
            f"Unknown interpolation {interp!r}; expected one of {sorted(_INTERP)} or a cv2.INTER_* flag."
        ) from None


def clip_boxes(boxes: np.ndarray, height: int, width: int) -> np.ndarray:
    """Return ``N x 4`` XYXY boxes clipped to the image ``[0, width] x [0, height]``."""
    boxes = np.array(boxes, dtype=np.float32 if np.asarray(boxes).dtype != np.float64 else np.float64)
    np.clip(boxes[:, 0::2], 0, width, out=boxes[:, 0::2])
    np.clip(boxes[:, 1::2], 0, height, out=boxes[:, 1::2])
    return boxes


def _box_corners(boxes: np.ndarray) -> np.ndarray:
    """``N x 4`` XYXY boxes -> ``4N x 2`` corner points (x0y0, x1y0, x0y1, x1y1 per box)."""
    idx = np.array([[0, 1], [2, 1], [0, 3], [2, 3]])
    return boxes[:, idx].reshape(-1, 2)


class Transform:
    """Base class of deterministic transforms.

    Subclasses implement :meth:`apply_image` and :meth:`apply_coords`; ``apply_box``,
    ``apply_polygons`` and ``apply_segmentation`` are derived from those and only need
    overriding when a faster or more exact rule exists. Override :meth:`inverse` when the
    transform can be undone.
    """

    def apply_image(self, img: np.ndarray) -> np.ndarray:
        """Return the transformed image (``H x W`` or ``H x W x C``)."""
        raise NotImplementedError(f"{type(self).__name__} does not implement apply_image")

    def apply_coords(self, coords: np.ndarray) -> np.ndarray:
        """Return transformed ``N x 2`` float points ``(x, y)`` in continuous pixel coordinates."""
        raise NotImplementedError(f"{type(self).__name__} does not implement apply_coords")

    def apply_box(self, box: np.ndarray) -> np.ndarray:
        """Return ``N x 4`` XYXY boxes: the axis-aligned bounds of the four transformed corners.

        For flips, resizes, crops and pads this is exact; for rotations it is the tightest
        axis-aligned box around the rotated box.
        """
        box = np.asarray(box)
        box = box.astype(np.float64 if box.dtype == np.float64 else np.float32, copy=False)
        if box.size == 0:
            return box.reshape(0, 4)
        pts = self.apply_coords(_box_corners(box.reshape(-1, 4)).astype(np.float64)).reshape(-1, 4, 2)
        out = np.concatenate([pts.min(axis=1), pts.max(axis=1)], axis=1)
        return out.astype(box.dtype, copy=False)

    def apply_polygons(self, polygons: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Return each ``K x 2`` polygon transformed point by point."""
        return [self.apply_coords(np.asarray(p, dtype=np.float64).reshape(-1, 2)) for p in polygons]

    def apply_segmentation(self, segmentation: np.ndarray) -> np.ndarray:
        """Return the transformed label map or mask (nearest-neighbour where resampling)."""
        return self.apply_image(segmentation)

    def inverse(self) -> Transform:
        """Return the transform that undoes this one."""
        raise NotImplementedError(f"{type(self).__name__} has no inverse")

    def __repr__(self) -> str:
        attrs = ", ".join(f"{k}={v!r}" for k, v in vars(self).items() if not k.startswith("_")
                          and not isinstance(v, np.ndarray))
        return f"{type(self).__name__}({attrs})"


class NoOpTransform(Transform):
    """The identity: returns its inputs unchanged."""

    def apply_image(self, img: np.ndarray) -> np.ndarray:
        return img

    def apply_coords(self, coords: np.ndarray) -> np.ndarray:
        return coords

    def apply_box(self, box: np.ndarray) -> np.ndarray:
        return np.asarray(box)

    def inverse(self) -> Transform:
        return self


class TransformList(Transform):
    """Transforms applied in order; nested lists are flattened and no-ops dropped."""

    def __init__(self, transforms: Iterable[Transform]) -> None:
        flat: list[Transform] = []
        for t in transforms:
            if isinstance(t, TransformList):
                flat.extend(t.transforms)
            elif not isinstance(t, Transform):
                raise TypeError(f"TransformList takes Transform objects, got {type(t).__name__}: {t!r}")
            elif not isinstance(t, NoOpTransform):
                flat.append(t)
        self.transforms = flat

    def _chain(self, name: str, x: Any) -> Any:
        for t in self.transforms:
            x = getattr(t, name)(x)
        return x

    def apply_image(self, img: np.ndarray) -> np.ndarray:
        return self._chain("apply_image", img)

    def apply_coords(self, coords: np.ndarray) -> np.ndarray:
        return self._chain("apply_coords", coords)

    def apply_box(self, box: np.ndarray) -> np.ndarray:
        # Chaining apply_box (not corners through all steps) is what a sequence of augmentations
        # does to a box: after a rotation the box becomes axis-aligned before the next step.
        return self._chain("apply_box", np.asarray(box))

    def apply_polygons(self, polygons: Sequence[np.ndarray]) -> list[np.ndarray]:
        return self._chain("apply_polygons", polygons)

    def apply_segmentation(self, segmentation: np.ndarray) -> np.ndarray:
        return self._chain("apply_segmentation", segmentation)

    def inverse(self) -> TransformList:
        return TransformList([t.inverse() for t in reversed(self.transforms)])

    def __add__(self, other: Transform) -> TransformList:
        return TransformList([self, other])

    def __len__(self) -> int:
        return len(self.transforms)

    def __getitem__(self, i: int) -> Transform:
        return self.transforms[i]

    def __iter__(self):
        return iter(self.transforms)

    def __repr__(self) -> str:
        return f"TransformList({self.transforms!r})"


def _flip(img: np.ndarray, code: int) -> np.ndarray:
    if img.ndim <= 3 and img.dtype in (np.uint8, np.float32, np.float64, np.int32, np.int16, np.uint16):
        out = cv2.flip(np.ascontiguousarray(img), code)
        # cv2 drops a trailing singleton channel axis; keep the caller's layout.
        return out.reshape(img.shape)
    axis = 1 if code == 1 else 0
    return np.ascontiguousarray(np.flip(img, axis=axis))


class HFlipTransform(Transform):
    """Mirror left-right an image of width ``width``: ``x -> width - x``."""

    def __init__(self, width: int) -> None:
        self.width = int(width)

    def apply_image(self, img: np.ndarray) -> np.ndarray:
        return _flip(img, 1)

    def apply_coords(self, coords: np.ndarray) -> np.ndarray:
        coords = np.array(coords, dtype=np.float64 if np.asarray(coords).dtype == np.float64 else np.float32)
        coords[:, 0] = self.width - coords[:, 0]
        return coords

    def inverse(self) -> Transform:
        return self


class VFlipTransform(Transform):
    """Mirror top-bottom an image of height ``height``: ``y -> height - y``."""

    def __init__(self, height: int) -> None:
        self.height = int(height)

    def apply_image(self, img: np.ndarray) -> np.ndarray:
        return _flip(img, 0)

    def apply_coords(self, coords: np.ndarray) -> np.ndarray:
        coords = np.array(coords, dtype=np.float64 if np.asarray(coords).dtype == np.float64 else np.float32)
        coords[:, 1] = self.height - coords[:, 1]
        return coords

    def inverse(self) -> Transform:
        return self


class ResizeTransform(Transform):
    """Resize ``h x w`` to ``new_h x new_w`` (aspect ratio may change).

    Args:
        h, w: input size; new_h, new_w: output size.
        interp: ``'bilinear'`` (default), ``'nearest'``, ``'bicubic'``, ``'area'``, ``'lanczos'``
            or a cv2 flag. Label maps always use nearest-neighbour.
    """

    def __init__(self, h: int, w: int, new_h: int, new_w: int, interp: str | int = "bilinear") -> None:
        self.h, self.w, self.new_h, self.new_w = int(h), int(w), int(new_h), int(new_w)
        if min(self.h, self.w, self.new_h, self.new_w) <= 0:
            raise ValueError(f"ResizeTransform needs positive sizes, got {self.h}x{self.w} -> "
                             f"{self.new_h}x{self.new_w}")
        self.interp = interp

    def _resize(self, img: np.ndarray, flag: int) -> np.ndarray:
        if img.shape[:2] != (self.h, self.w):
            raise ValueError(f"ResizeTransform expected an image of size {self.h}x{self.w}, got "
                             f"{img.shape[0]}x{img.shape[1]}")
        if (self.new_h, self.new_w) == (self.h, self.w):
            return img
        src = img
        if img.dtype == np.bool_ or img.dtype == np.int64:
            src = img.astype(np.int32 if img.dtype == np.int64 else np.uint8)
        if src.ndim == 3 and src.shape[2] > 512:
            raise ValueError("ResizeTransform supports at most 512 channels")
        out = cv2.resize(src, (self.new_w, self.new_h), interpolation=flag)
        if img.ndim == 3 and out.ndim == 2:
            out = out[:, :, None]
        return out.astype(img.dtype, copy=False)

    def apply_image(self, img: np.ndarray) -> np.ndarray:
        return self._resize(img, interp_code(self.interp))

    def apply_segmentation(self, segmentation: np.ndarray) -> np.ndarray:
        return self._resize(segmentation, _NEAREST_EXACT)

    def apply_coords(self, coords: np.ndarray) -> np.ndarray:
        coords = np.array(coords, dtype=np.float64 if np.asarray(coords).dtype == np.float64 else np.float32)
        coords[:, 0] *= self.new_w / self.w
        coords[:, 1] *= self.new_h / self.h
        return coords

    def inverse(self) -> Transform:
        return ResizeTransform(self.new_h, self.new_w, self.h, self.w, self.interp)


class CropTransform(Transform):
    """Keep the window ``[x0, x0 + w) x [y0, y0 + h)``: coordinates shift by ``(-x0, -y0)``.

    Boxes are moved, not clipped: clipping/dropping is a policy of the caller (see
    :func:`kiln.data.transforms.clip_boxes`). ``orig_w``/``orig_h`` (the input size) are
    needed only for :meth:`inverse`.
    """

    def __init__(self, x0: int, y0: int, w: int, h: int, orig_w: int | None = None,
                 orig_h: int | None = None) -> None:
        self.x0, self.y0, self.w, self.h = int(x0), int(y0), int(w), int(h)
        if self.x0 < 0 or self.y0 < 0 or self.w <= 0 or self.h <= 0:
            raise ValueError(f"CropTransform needs x0, y0 >= 0 and w, h > 0; got x0={x0} y0={y0} w={w} h={h}")
        self.orig_w, self.orig_h = orig_w, orig_h

    def apply_image(self, img: np.ndarray) -> np.ndarray:
        if self.y0 + self.h > img.shape[0] or self.x0 + self.w > img.shape[1]:
            raise ValueError(
                f"CropTransform window x0={self.x0} y0={self.y0} w={self.w} h={self.h} does not fit an "
                f"image of size {img.shape[0]}x{img.shape[1]} (HxW)")
        return img[self.y0:self.y0 + self.h, self.x0:self.x0 + self.w]

    def apply_coords(self, coords: np.ndarray) -> np.ndarray:
        coords = np.array(coords, dtype=np.float64 if np.asarray(coords).dtype == np.float64 else np.float32)
        coords[:, 0] -= self.x0
        coords[:, 1] -= self.y0
        return coords

    def inverse(self) -> Transform:
        if self.orig_w is None or self.orig_h is None:
            raise NotImplementedError("CropTransform.inverse needs orig_w and orig_h (the uncropped size)")
        return PadTransform(self.x0, self.y0, self.orig_w - self.x0 - self.w, self.orig_h - self.y0 - self.h,
                            orig_w=self.w, orig_h=self.h)


class PadTransform(Transform):
    """Pad ``left/top/right/bottom`` pixels of constant value; coordinates shift by ``(left, top)``.

    Args:
        pad_value: fill for images (a scalar or one value per channel).
        seg_pad_value: fill for label maps (``apply_segmentation``).
        orig_w, orig_h: input size, needed only for :meth:`inverse`.
    """

    def __init__(self, left: int, top: int, right: int, bottom: int, orig_w: int | None = None,
                 orig_h: int | None = None, pad_value: float | Sequence[float] = 0,
                 seg_pad_value: int = 0) -> None:
        self.left, self.top, self.right, self.bottom = int(left), int(top), int(right), int(bottom)
        if min(self.left, self.top, self.right, self.bottom) < 0:
            raise ValueError(f"PadTransform needs non-negative padding, got left={left} top={top} "
                             f"right={right} bottom={bottom}")
        self.orig_w, self.orig_h = orig_w, orig_h
        self.pad_value = pad_value
        self.seg_pad_value = seg_pad_value

    def _pad(self, img: np.ndarray, value: Any) -> np.ndarray:
        if not (self.left or self.top or self.right or self.bottom):
            return img
        channels = 1 if img.ndim == 2 else img.shape[2]
        if channels <= 4 and img.dtype in (np.uint8, np.float32, np.float64, np.uint16, np.int16, np.int32) \
                and np.size(value) in (1, channels):
            # cv2.copyMakeBorder: one pass, measured ~1.4x faster than allocate-fill-copy in numpy.
            border = [float(v) for v in np.ravel(value)] if np.ndim(value) else [float(value)] * 4
            out = cv2.copyMakeBorder(img, self.top, self.bottom, self.left, self.right,
                                     cv2.BORDER_CONSTANT, value=border + [0.0] * (4 - len(border)))
            return out.reshape(out.shape[:2] + img.shape[2:])
        h, w = img.shape[:2]
        shape = (h + self.top + self.bottom, w + self.left + self.right) + img.shape[2:]
        out = np.empty(shape, dtype=img.dtype)
        out[...] = np.asarray(value, dtype=img.dtype) if np.ndim(value) else value
        out[self.top:self.top + h, self.left:self.left + w] = img
        return out

    def apply_image(self, img: np.ndarray) -> np.ndarray:
        return self._pad(img, self.pad_value)

    def apply_segmentation(self, segmentation: np.ndarray) -> np.ndarray:
        return self._pad(segmentation, self.seg_pad_value)

    def apply_coords(self, coords: np.ndarray) -> np.ndarray:
        coords = np.array(coords, dtype=np.float64 if np.asarray(coords).dtype == np.float64 else np.float32)
        coords[:, 0] += self.left
        coords[:, 1] += self.top
        return coords

    def inverse(self) -> Transform:
        if self.orig_w is None or self.orig_h is None:
            raise NotImplementedError("PadTransform.inverse needs orig_w and orig_h (the unpadded size)")
        return CropTransform(self.left, self.top, self.orig_w, self.orig_h,
                             orig_w=self.orig_w + self.left + self.right,
                             orig_h=self.orig_h + self.top + self.bottom)


class AffineTransform(Transform):
    """A general affine map ``p' = A p + t`` (``matrix`` is the 2x3 ``[A | t]``) onto an
    ``out_h x out_w`` canvas; uncovered pixels get ``border_value``.

    ``matrix`` acts on continuous coordinates (pixel centres at ``i + 0.5``); the half-pixel
    shift OpenCV's index coordinates need is applied internally, so boxes and pixels agree.
    """

    def __init__(self, matrix: np.ndarray, in_w: int, in_h: int, out_w: int, out_h: int,
                 interp: str | int = "bilinear", border_value: float | Sequence[float] = 0) -> None:
        self.matrix = np.asarray(matrix, dtype=np.float64).reshape(2, 3)
        self.in_w, self.in_h, self.out_w, self.out_h = int(in_w), int(in_h), int(out_w), int(out_h)
        self.interp = interp
        self.border_value = border_value

    def _cv_matrix(self) -> np.ndarray:
        a, t = self.matrix[:, :2], self.matrix[:, 2]
        return np.concatenate([a, (t + a @ np.array([0.5, 0.5]) - 0.5)[:, None]], axis=1)

    def _warp(self, img: np.ndarray, flag: int, border: Any) -> np.ndarray:
        src = img.astype(np.uint8) if img.dtype == np.bool_ else img
        bv = tuple(border) if np.ndim(border) else (border,) * 4
        out = cv2.warpAffine(src, self._cv_matrix(), (self.out_w, self.out_h), flags=flag,
                             borderMode=cv2.BORDER_CONSTANT, borderValue=bv)
        if img.ndim == 3 and out.ndim == 2:
            out = out[:, :, None]
        return out.astype(img.dtype, copy=False)

    def apply_image(self, img: np.ndarray) -> np.ndarray:
        return self._warp(img, interp_code(self.interp), self.border_value)

    def apply_segmentation(self, segmentation: np.ndarray) -> np.ndarray:
        return self._warp(segmentation, cv2.INTER_NEAREST, 0)

    def apply_coords(self, coords: np.ndarray) -> np.ndarray:
        coords = np.asarray(coords)
        dtype = np.float64 if coords.dtype == np.float64 else np.float32
        out = coords.astype(np.float64) @ self.matrix[:, :2].T + self.matrix[:, 2]
        return out.astype(dtype)

    def inverse(self) -> Transform:
        full = np.vstack([self.matrix, [0.0, 0.0, 1.0]])
        inv = np.linalg.inv(full)[:2]
        return AffineTransform(inv, self.out_w, self.out_h, self.in_w, self.in_h, self.interp,
                               self.border_value)


class RotationTransform(AffineTransform):
    """Rotate an ``h x w`` image by ``angle`` degrees counter-clockwise about ``center``.

    Args:
        expand: grow the canvas so the whole rotated image fits (default); otherwise keep ``h x w``.
        center: ``(x, y)`` in continuous pixel coordinates (default: the image centre). Ignored
            when ``expand`` is true, which always rotates about the centre.
    """

    def __init__(self, h: int, w: int, angle: float, expand: bool = True,
                 center: Sequence[float] | None = None, interp: str | int = "bilinear",
                 border_value: float | Sequence[float] = 0) -> None:
        rad = math.radians(angle)
        c, s = math.cos(rad), math.sin(rad)
        # Image y points down, so a visually counter-clockwise rotation is this matrix.
        a = np.array([[c, s], [-s, c]])
        if expand or center is None:
            cx, cy = w / 2.0, h / 2.0
        else:
            cx, cy = float(center[0]), float(center[1])
        if expand:
            # Round away float noise (e.g. cos(90deg) ~ 6e-17) before taking the ceiling.
            out_w = int(math.ceil(round(abs(c) * w + abs(s) * h, 6)))
            out_h = int(math.ceil(round(abs(s) * w + abs(c) * h, 6)))
            ncx, ncy = out_w / 2.0, out_h / 2.0
        else:
            out_w, out_h, ncx, ncy = w, h, cx, cy
        t = np.array([ncx, ncy]) - a @ np.array([cx, cy])
        super().__init__(np.concatenate([a, t[:, None]], axis=1), w, h, out_w, out_h, interp, border_value)
        self.angle, self.expand = float(angle), bool(expand)


# ----------------------------------------------------------------------------- colour transforms
class _PhotometricTransform(Transform):
    """Base of transforms that change pixel values only: geometry passes through unchanged."""

    def apply_coords(self, coords: np.ndarray) -> np.ndarray:
        return coords

    def apply_box(self, box: np.ndarray) -> np.ndarray:
        return np.asarray(box)

    def apply_polygons(self, polygons: Sequence[np.ndarray]) -> list[np.ndarray]:
        return list(polygons)

    def apply_segmentation(self, segmentation: np.ndarray) -> np.ndarray:
        return segmentation

    @staticmethod
    def _restore_dtype(out: np.ndarray, like: np.ndarray) -> np.ndarray:
        if like.dtype == np.uint8:
            return np.clip(out, 0, 255).round().astype(np.uint8)
        return out.astype(like.dtype, copy=False)


class BlendTransform(_PhotometricTransform):
    """``img * dst_weight + src_image * src_weight``: brightness (``src=delta``), contrast
    (``src=mean``), saturation (``src=grayscale``). uint8 results are clipped and rounded;
    float images stay float and unclipped (MM's PhotoMetricDistortion works on float)."""

    def __init__(self, src_image: np.ndarray | float, src_weight: float, dst_weight: float) -> None:
        self.src_image, self.src_weight, self.dst_weight = src_image, float(src_weight), float(dst_weight)

    def apply_image(self, img: np.ndarray) -> np.ndarray:
        out = img.astype(np.float32) * self.dst_weight
        if self.src_weight:
            out += np.asarray(self.src_image, dtype=np.float32) * self.src_weight
        return self._restore_dtype(out, img)

    def inverse(self) -> Transform:
        # Exact for float images; uint8 clipping is not invertible.
        return BlendTransform(self.src_image, -self.src_weight / self.dst_weight, 1.0 / self.dst_weight)


class HueSaturationTransform(_PhotometricTransform):
    """Shift hue by ``hue_delta`` degrees and scale saturation by ``sat_scale`` (HSV space).

    Args:
        image_format: channel order of the input, ``'BGR'`` (default) or ``'RGB'``.
    """

    def __init__(self, hue_delta: float = 0.0, sat_scale: float = 1.0, image_format: str = "BGR") -> None:
        self.hue_delta, self.sat_scale, self.image_format = float(hue_delta), float(sat_scale), image_format

    def apply_image(self, img: np.ndarray) -> np.ndarray:
        fwd = cv2.COLOR_BGR2HSV if self.image_format == "BGR" else cv2.COLOR_RGB2HSV
        back = cv2.COLOR_HSV2BGR if self.image_format == "BGR" else cv2.COLOR_HSV2RGB
        # float32 input in [0, 255] gives H in degrees [0, 360), S in [0, 1].
        hsv = cv2.cvtColor(img.astype(np.float32), fwd)
        if self.sat_scale != 1.0:
            hsv[..., 1] = np.clip(hsv[..., 1] * self.sat_scale, 0.0, 1.0)
        if self.hue_delta:
            hsv[..., 0] = (hsv[..., 0] + self.hue_delta) % 360.0
        return self._restore_dtype(cv2.cvtColor(hsv, back), img)


class ChannelPermuteTransform(_PhotometricTransform):
    """Reorder channels: ``out[..., i] = img[..., order[i]]``."""

    def __init__(self, order: Sequence[int]) -> None:
        self.order = [int(i) for i in order]

    def apply_image(self, img: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(img[..., self.order])

    def inverse(self) -> Transform:
        return ChannelPermuteTransform(list(np.argsort(self.order)))


class ColorTransform(_PhotometricTransform):
    """Apply a user function ``op(img) -> img`` to pixels only (geometry unchanged)."""

    def __init__(self, op: Callable[[np.ndarray], np.ndarray]) -> None:
        if not callable(op):
            raise TypeError(f"ColorTransform needs a callable op(img) -> img, got {op!r}")
        self.op = op

    def apply_image(self, img: np.ndarray) -> np.ndarray:
        return self.op(img)
