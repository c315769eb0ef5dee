"""Instance masks: ``BitmapMasks`` and ``PolygonMasks`` (MMDetection's API) with Detectron2's spellings.

One implementation, two vocabularies:

* MMDetection: ``BitmapMasks(masks (N, H, W) uint8/bool, height, width)`` and
  ``PolygonMasks(polys: list[list[(2k,) array]], height, width)`` with ``rescale, resize, flip, pad,
  crop, crop_and_resize, expand, translate, rotate, shear, to_ndarray, to_tensor, areas, get_bboxes,
  cat``.
* Detectron2: ``BitMasks(tensor (N, H, W))`` (``.tensor``, ``get_bounding_boxes()``, ``nonempty()``,
  ``crop_and_resize(boxes, mask_size)``, ``from_polygon_masks``) is a thin subclass of
  ``BitmapMasks``; Detectron2's ``PolygonMasks(polygons)`` is the same ``PolygonMasks`` class built
  without an image size (``.polygons``, ``area()``, ``get_bounding_boxes()``, ``nonempty()``).

Every geometric method builds a :class:`~kiln.data.transforms.transform.Transform` primitive and
moves the masks with it (:meth:`BitmapMasks.apply_transform`), so masks move by exactly the same
formulas as images and boxes. Polygons are clipped to the image after each move (an exact polygon
intersection, not a clamp of the coordinates), which keeps them equal to the bitmap of the same object.

Coordinates are continuous pixel coordinates: pixel ``i`` covers ``[i, i + 1)``.

Example::

    >>> import numpy as np
    >>> poly = PolygonMasks([[np.array([2., 2., 8., 2., 8., 6., 2., 6.])]], height=10, width=12)
    >>> poly.to_bitmap().get_bboxes()
    array([[2., 2., 8., 6.]], dtype=float32)
    >>> poly.flip("horizontal").get_bboxes()
    array([[4., 2., 10., 6.]], dtype=float32)
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch

from .boxes import Boxes
from .mask_geometry import (
    Index,
    affine,
    boxes_tensor,
    crop_window,
    flip_transform,
    out_hw,
    rescaled_shape,
    roi_inds,
    rotate_matrix,
    same_kind,
    select,
    shear_matrix,
    translate_matrix,
)
from .polygon_ops import as_polygon, clip_polygon, polygon_area, polygons_to_bitmask

__all__ = ["BitmapMasks", "PolygonMasks", "BitMasks", "polygons_to_bitmask"]


# ----------------------------------------------------------------------------- bitmaps
class BitmapMasks:
    """``N`` binary masks of one ``height x width`` image, stored as a numpy ``(N, H, W)`` array.

    Kept on the CPU as numpy (as MMDetection does): pipelines move them with OpenCV, and
    :meth:`crop_and_resize` makes the training targets on whatever device the model runs on.

    Args:
        masks: ``(N, H, W)`` array (or list of ``(H, W)`` arrays / tensor) of 0/1 values; ``uint8`` and
            ``bool`` are kept as given, other dtypes must hold only 0 and 1.
        height, width: the image size; must equal ``H, W`` of ``masks``.
    """

    def __init__(self, masks: np.ndarray | Sequence[np.ndarray] | torch.Tensor, height: int,
                 width: int) -> None:
        self.height, self.width = int(height), int(width)
        if isinstance(masks, torch.Tensor):
            masks = masks.detach().cpu().numpy()
        if isinstance(masks, (list, tuple)):
            empty = np.zeros((0, self.height, self.width), np.uint8)
            masks = np.stack([np.asarray(m) for m in masks]) if len(masks) else empty
        arr = np.asarray(masks)
        if arr.ndim != 3:
            raise ValueError(f"{type(self).__name__}: masks must be (N, H, W), got shape {arr.shape}.")
        if arr.shape[0] and arr.shape[1:] != (self.height, self.width):
            raise ValueError(f"{type(self).__name__}: masks are {arr.shape[1]}x{arr.shape[2]} (HxW) but "
                             f"height={self.height}, width={self.width}; they must agree.")
        if arr.shape[0] == 0:
            arr = np.zeros((0, self.height, self.width), arr.dtype if arr.dtype in (np.bool_, np.uint8)
                           else np.uint8)
        elif arr.dtype not in (np.bool_, np.uint8):
            if not np.isin(arr, (0, 1)).all():
                raise ValueError(f"{type(self).__name__}: masks must be binary (0/1); got dtype {arr.dtype} "
                                 f"with values {np.unique(arr)[:6].tolist()}... Threshold them first "
                                 "(e.g. masks >= 0.5).")
            arr = arr.astype(np.uint8)
        self.masks = arr

    def _new(self, masks: np.ndarray, height: int, width: int) -> BitmapMasks:
        """A mask set of this class (subclasses keep their own extras, e.g. BitMasks' device)."""
        return BitmapMasks(masks, height, width)

    # ----------------------------------------------------------------- container protocol
    def __len__(self) -> int:
        return len(self.masks)

    def __getitem__(self, index: Index) -> BitmapMasks:
        """Select masks by int (keeps the instance axis), slice, bool mask or index array/tensor."""
        sel = select(index, len(self), type(self).__name__)
        return self._new(self.masks[sel].reshape(-1, self.height, self.width), self.height, self.width)

    def __iter__(self) -> Iterator[np.ndarray]:
        return iter(self.masks)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(num_masks={len(self)}, height={self.height}, width={self.width})"

    @classmethod
    def cat(cls, masks: Sequence[BitmapMasks]) -> BitmapMasks:
        """Concatenate mask sets of one image size into one."""
        h, w = same_kind(masks, BitmapMasks, cls.__name__)
        return masks[0]._new(np.concatenate([m.masks for m in masks]), h, w)

    # ----------------------------------------------------------------- geometry (one core)
    def apply_transform(self, tfm: Any) -> BitmapMasks:
        """Move every mask with a :class:`~kiln.data.transforms.transform.Transform` (its
        ``apply_segmentation``: nearest-neighbour). Pixels the transform adds (padding, borders) are
        0 unless it fills them with 0 or 1 (``Pad(pad_val=dict(masks=1))``); a label-map fill such as
        255 is not a mask value. The pipelines' geometry core calls this."""
        # A blank mask moved alike shows where the transform fills in new pixels, and with what.
        blank = tfm.apply_segmentation(np.zeros((self.height, self.width), np.uint8))
        if not len(self):
            return self._new(np.zeros((0, *blank.shape[:2]), self.masks.dtype), *blank.shape[:2])
        out = np.stack([tfm.apply_segmentation(m) for m in self.masks])
        foreign = blank > 1
        if foreign.any():
            # A fill that is not 0/1 is a label map's (e.g. 255 = ignore from a pad's seg_pad_value):
            # new pixels belong to no instance.
            out[:, foreign] = 0
        return self._new(out, out.shape[1], out.shape[2])

    def _apply_image(self, tfm: Any, out_hw: tuple[int, int]) -> BitmapMasks:
        moved = [tfm.apply_image(m) for m in self.masks]
        out = np.stack(moved) if moved else np.zeros((0, *out_hw), self.masks.dtype)
        return self._new(out, out.shape[1], out.shape[2])

    def rescale(self, scale: float | Sequence[int], interpolation: str = "nearest") -> BitmapMasks:
        """Resize keeping the aspect ratio: by a factor, or to fit ``(long_edge, short_edge)``."""
        return self.resize(rescaled_shape(self.height, self.width, scale), interpolation)

    def resize(self, out_shape: Sequence[int], interpolation: str = "nearest") -> BitmapMasks:
        """Resize to ``out_shape = (h, w)``. ``'nearest'`` samples pixel centres (masks stay aligned
        with boxes); other interpolations resample and round back to 0/1."""
        from kiln.data.transforms.transform import ResizeTransform

        out_h, out_w = out_hw(out_shape, "resize")
        tfm = ResizeTransform(self.height, self.width, out_h, out_w, interpolation)
        if interpolation == "nearest":
            return self.apply_transform(tfm)
        return self._apply_image(tfm, (out_h, out_w))

    def flip(self, flip_direction: str = "horizontal") -> BitmapMasks:
        """Mirror ``'horizontal'``, ``'vertical'`` or ``'diagonal'`` (both)."""
        return self.apply_transform(flip_transform(flip_direction, self.height, self.width))

    def pad(self, out_shape: Sequence[int], pad_val: int = 0) -> BitmapMasks:
        """Pad at the bottom and right to ``out_shape = (h, w)`` with ``pad_val``."""
        from kiln.data.transforms.transform import PadTransform

        out_h, out_w = out_hw(out_shape, "pad")
        if out_h < self.height or out_w < self.width:
            raise ValueError(f"pad: out_shape {(out_h, out_w)} is smaller than the masks "
                             f"{(self.height, self.width)}; use crop to shrink.")
        return self.apply_transform(PadTransform(0, 0, out_w - self.width, out_h - self.height,
                                                 seg_pad_value=pad_val))

    def crop(self, bbox: np.ndarray) -> BitmapMasks:
        """Keep the window ``bbox = (x1, y1, x2, y2)`` (clipped to the image, at least 1x1)."""
        from kiln.data.transforms.transform import CropTransform

        x, y, w, h = crop_window(bbox, self.height, self.width)
        return self.apply_transform(CropTransform(x, y, w, h))

    def expand(self, expanded_h: int, expanded_w: int, top: int, left: int) -> BitmapMasks:
        """Place the masks at ``(left, top)`` on a zero canvas of ``expanded_h x expanded_w``."""
        from kiln.data.transforms.transform import PadTransform

        right, bottom = expanded_w - self.width - left, expanded_h - self.height - top
        if min(top, left, right, bottom) < 0:
            raise ValueError(f"expand: a {self.height}x{self.width} mask at top={top}, left={left} does not "
                             f"fit a {expanded_h}x{expanded_w} canvas.")
        return self.apply_transform(PadTransform(left, top, right, bottom))

    def translate(self, out_shape: Sequence[int], offset: float, direction: str = "horizontal",
                  border_value: int = 0, interpolation: str = "bilinear") -> BitmapMasks:
        """Shift by ``offset`` pixels (right/down when positive) onto an ``out_shape`` canvas."""
        tfm = affine(translate_matrix(offset, direction), self.height, self.width, out_shape,
                      interpolation, border_value)
        return self._apply_image(tfm, out_hw(out_shape, "translate"))

    def rotate(self, out_shape: Sequence[int], angle: float, center: Sequence[float] | None = None,
               scale: float = 1.0, border_value: int = 0, interpolation: str = "bilinear") -> BitmapMasks:
        """Rotate by ``angle`` degrees, clockwise on screen when positive (MMDetection's convention),
        about ``center`` (continuous ``(x, y)``; default the image centre), scaled by ``scale``."""
        tfm = affine(rotate_matrix(angle, center, scale, self.height, self.width), self.height,
                      self.width, out_shape, interpolation, border_value)
        return self._apply_image(tfm, out_hw(out_shape, "rotate"))

    def shear(self, out_shape: Sequence[int], magnitude: float, direction: str = "horizontal",
              border_value: int = 0, interpolation: str = "bilinear") -> BitmapMasks:
        """Shear about the origin: ``x += magnitude * y`` (horizontal) or ``y += magnitude * x``."""
        tfm = affine(shear_matrix(magnitude, direction), self.height, self.width,
                      out_shape, interpolation, border_value)
        return self._apply_image(tfm, out_hw(out_shape, "shear"))

    def crop_and_resize(self, bboxes: Any, out_shape: int | Sequence[int], inds: Any = None,
                        device: str | torch.device | None = None, interpolation: str = "bilinear",
                        binarize: bool = True) -> torch.Tensor:
        """Mask targets: the part of mask ``inds[i]`` inside ``bboxes[i]`` resampled to ``out_shape``.

        RoIAlign of the bitmap (``aligned=True``, adaptive sampling), as MMDetection and Detectron2
        make their mask targets. ``bboxes``: ``(R, 4)`` XYXY in image pixels; ``inds``: ``(R,)`` which
        mask each box crops (default: box ``i`` crops mask ``i``). Returns ``(R, h, w)`` on ``device``
        (default: the boxes' device): bool (``>= 0.5``) when ``binarize``, else float32 coverage.
        """
        from torchvision.ops import roi_align

        if interpolation != "bilinear":
            raise ValueError(f"crop_and_resize: only interpolation='bilinear' (RoIAlign) exists, got "
                             f"{interpolation!r}.")
        out_h, out_w = out_hw(out_shape, "crop_and_resize")
        boxes = boxes_tensor(bboxes, "crop_and_resize")
        device = torch.device(device) if device is not None else boxes.device
        inds = roi_inds(inds, len(boxes), len(self), "crop_and_resize")
        if len(boxes) == 0:
            dtype = torch.bool if binarize else torch.float32
            return torch.zeros((0, out_h, out_w), dtype=dtype, device=device)
        # Only the masks some box uses go to the device (few ground-truth masks, many RoIs).
        used, which = torch.unique(inds, return_inverse=True)
        src = torch.from_numpy(np.ascontiguousarray(self.masks[used.numpy()])).to(device=device,
                                                                                   dtype=torch.float32)
        rois = torch.cat([which.to(device, torch.float32)[:, None], boxes.to(device, torch.float32)], dim=1)
        out = roi_align(src[:, None], rois, (out_h, out_w), spatial_scale=1.0, sampling_ratio=0,
                        aligned=True).squeeze(1)
        return out >= 0.5 if binarize else out

    # ----------------------------------------------------------------- conversions / measures
    def to_ndarray(self) -> np.ndarray:
        """The ``(N, H, W)`` array."""
        return self.masks

    def to_tensor(self, dtype: torch.dtype, device: str | torch.device) -> torch.Tensor:
        """The masks as an ``(N, H, W)`` tensor of ``dtype`` on ``device``."""
        return torch.from_numpy(np.ascontiguousarray(self.masks)).to(dtype=dtype, device=device)

    @property
    def areas(self) -> np.ndarray:
        """Pixel count of each mask, ``(N,)``."""
        return self.masks.reshape(len(self), -1).sum(axis=1).astype(np.float64)

    def get_bboxes(self, dst_type: str = "hbb") -> np.ndarray:
        """Tight ``(N, 4)`` float32 XYXY box of each mask (``x_max + 1``: a pixel covers ``[x, x + 1)``);
        all zeros for an empty mask."""
        if dst_type != "hbb":
            raise ValueError(f"get_bboxes: kiln has horizontal boxes only (dst_type='hbb'), got "
                             f"{dst_type!r}.")
        boxes = np.zeros((len(self), 4), dtype=np.float32)
        x_any = self.masks.any(axis=1)
        y_any = self.masks.any(axis=2)
        for i in range(len(self)):
            xs, ys = np.flatnonzero(x_any[i]), np.flatnonzero(y_any[i])
            if len(xs) and len(ys):
                boxes[i] = (xs[0], ys[0], xs[-1] + 1, ys[-1] + 1)
        return boxes


# ----------------------------------------------------------------------------- polygons
class PolygonMasks:
    """``N`` instances, each a list of polygon parts (COCO's ``segmentation`` lists).

    Both frameworks' spellings: MMDetection's ``PolygonMasks(masks, height, width)`` and Detectron2's
    ``PolygonMasks(polygons)`` (no image size; only the size-free methods work then: indexing,
    ``crop_and_resize``, ``area()``, ``get_bounding_boxes()``, ``nonempty()``, ``cat``).

    Args:
        masks: ``masks[i]`` is instance ``i``: a list of flat ``(2k,)`` arrays (or lists) with
            ``k >= 3`` points in continuous pixel coordinates. An instance may have no parts (nothing
            of it is in the image, e.g. after a crop).
        height, width: the image size (``None`` for Detectron2's size-free spelling).
    """

    def __init__(self, masks: Sequence[Sequence[Any]], height: int | None = None,
                 width: int | None = None) -> None:
        if (height is None) != (width is None):
            raise ValueError("PolygonMasks: give both height and width, or neither (Detectron2 spelling).")
        if isinstance(masks, PolygonMasks):
            masks = masks.masks
        if not isinstance(masks, (list, tuple)):
            raise TypeError(f"PolygonMasks: masks must be a list (one entry per instance) of lists of "
                            f"polygons, got {type(masks).__name__}.")
        polys = []
        for i, inst in enumerate(masks):
            if not isinstance(inst, (list, tuple)):
                raise TypeError(f"PolygonMasks: instance {i} must be a list of polygons (COCO "
                                f"'segmentation'), got {type(inst).__name__}.")
            polys.append([as_polygon(p, f"PolygonMasks instance {i}, part {j}") for j, p in enumerate(inst)])
        self.masks: list[list[np.ndarray]] = polys
        self.height = None if height is None else int(height)
        self.width = None if width is None else int(width)

    def _new(self, masks: list[list[np.ndarray]], height: int | None, width: int | None) -> PolygonMasks:
        out = PolygonMasks.__new__(PolygonMasks)
        out.masks, out.height, out.width = masks, height, width
        return out

    def _size(self, what: str) -> tuple[int, int]:
        if self.height is None or self.width is None:
            raise ValueError(f"PolygonMasks.{what} needs the image size; build PolygonMasks(polys, height, "
                             "width) (the Detectron2 spelling PolygonMasks(polys) has none).")
        return self.height, self.width

    @property
    def polygons(self) -> list[list[np.ndarray]]:
        """Detectron2's name for :attr:`masks`."""
        return self.masks

    # ----------------------------------------------------------------- container protocol
    def __len__(self) -> int:
        return len(self.masks)

    def __getitem__(self, index: Index) -> PolygonMasks:
        """Select instances by int (keeps the instance axis), slice, bool mask or index array/tensor."""
        sel = select(index, len(self), "PolygonMasks")
        picked = self.masks[sel] if isinstance(sel, slice) else [self.masks[int(i)] for i in sel]
        return self._new(list(picked), self.height, self.width)

    def __iter__(self) -> Iterator[list[np.ndarray]]:
        return iter(self.masks)

    def __repr__(self) -> str:
        return f"PolygonMasks(num_masks={len(self)}, height={self.height}, width={self.width})"

    @classmethod
    def cat(cls, masks: Sequence[PolygonMasks]) -> PolygonMasks:
        """Concatenate instance lists of one image size."""
        h, w = same_kind(masks, PolygonMasks, "PolygonMasks")
        return masks[0]._new([inst for m in masks for inst in m.masks], h, w)

    def to(self, *args: Any, **kwargs: Any) -> PolygonMasks:
        """Polygons live on the CPU (as in Detectron2); returns ``self`` for any device."""
        return self

    @property
    def device(self) -> torch.device:
        """Always the CPU."""
        return torch.device("cpu")

    # ----------------------------------------------------------------- geometry (one core)
    def apply_transform(self, tfm: Any, out_shape: Sequence[int] | None = None) -> PolygonMasks:
        """Move every polygon with a :class:`~kiln.data.transforms.transform.Transform`
        (``apply_polygons``) and clip it to the new image ``out_shape = (h, w)`` (found by moving a
        blank mask when not given). Parts left with no area are dropped."""
        h, w = self._size("apply_transform")
        if out_shape is None:
            out_shape = tfm.apply_segmentation(np.zeros((h, w), np.uint8)).shape[:2]
        out_h, out_w = out_hw(out_shape, "apply_transform")
        moved = []
        for inst in self.masks:
            parts = tfm.apply_polygons([p.reshape(-1, 2) for p in inst]) if inst else []
            clipped = (clip_polygon(np.asarray(p, np.float64), 0, 0, out_w, out_h) for p in parts)
            moved.append([p for p in clipped if p.size >= 6])
        return self._new(moved, out_h, out_w)

    def rescale(self, scale: float | Sequence[int], interpolation: str | None = None) -> PolygonMasks:
        """Resize keeping the aspect ratio (``interpolation`` is accepted for MMDetection's signature;
        polygons are exact)."""
        h, w = self._size("rescale")
        return self.resize(rescaled_shape(h, w, scale))

    def resize(self, out_shape: Sequence[int], interpolation: str | None = None) -> PolygonMasks:
        """Scale the coordinates to an ``out_shape = (h, w)`` image."""
        from kiln.data.transforms.transform import ResizeTransform

        h, w = self._size("resize")
        out_h, out_w = out_hw(out_shape, "resize")
        return self.apply_transform(ResizeTransform(h, w, out_h, out_w), (out_h, out_w))

    def flip(self, flip_direction: str = "horizontal") -> PolygonMasks:
        """Mirror ``'horizontal'`` (``x -> width - x``), ``'vertical'`` or ``'diagonal'``."""
        h, w = self._size("flip")
        return self.apply_transform(flip_transform(flip_direction, h, w), (h, w))

    def pad(self, out_shape: Sequence[int], pad_val: int = 0) -> PolygonMasks:
        """Pad at the bottom and right: the polygons stay, the image grows to ``out_shape``."""
        h, w = self._size("pad")
        out_h, out_w = out_hw(out_shape, "pad")
        if out_h < h or out_w < w:
            raise ValueError(f"pad: out_shape {(out_h, out_w)} is smaller than the image {(h, w)}; use crop.")
        return self._new([list(inst) for inst in self.masks], out_h, out_w)

    def crop(self, bbox: np.ndarray) -> PolygonMasks:
        """Keep the window ``bbox = (x1, y1, x2, y2)``: polygons are intersected with it."""
        from kiln.data.transforms.transform import CropTransform

        h, w = self._size("crop")
        x, y, cw, ch = crop_window(bbox, h, w)
        return self.apply_transform(CropTransform(x, y, cw, ch), (ch, cw))

    def expand(self, expanded_h: int, expanded_w: int, top: int, left: int) -> PolygonMasks:
        """Place the image at ``(left, top)`` on an ``expanded_h x expanded_w`` canvas."""
        from kiln.data.transforms.transform import PadTransform

        h, w = self._size("expand")
        right, bottom = expanded_w - w - left, expanded_h - h - top
        if min(top, left, right, bottom) < 0:
            raise ValueError(f"expand: a {h}x{w} image at top={top}, left={left} does not fit a "
                             f"{expanded_h}x{expanded_w} canvas.")
        return self.apply_transform(PadTransform(left, top, right, bottom), (expanded_h, expanded_w))

    def translate(self, out_shape: Sequence[int], offset: float, direction: str = "horizontal",
                  border_value: Any = None, interpolation: Any = None) -> PolygonMasks:
        """Shift by ``offset`` (right/down when positive); what leaves ``out_shape`` is cut off."""
        h, w = self._size("translate")
        tfm = affine(translate_matrix(offset, direction), h, w, out_shape, "bilinear", 0)
        return self.apply_transform(tfm, out_hw(out_shape, "translate"))

    def rotate(self, out_shape: Sequence[int], angle: float, center: Sequence[float] | None = None,
               scale: float = 1.0, border_value: Any = None, interpolation: Any = None) -> PolygonMasks:
        """Rotate like :meth:`BitmapMasks.rotate` (clockwise on screen for positive ``angle``)."""
        h, w = self._size("rotate")
        tfm = affine(rotate_matrix(angle, center, scale, h, w), h, w, out_shape, "bilinear", 0)
        return self.apply_transform(tfm, out_hw(out_shape, "rotate"))

    def shear(self, out_shape: Sequence[int], magnitude: float, direction: str = "horizontal",
              border_value: Any = None, interpolation: Any = None) -> PolygonMasks:
        """Shear like :meth:`BitmapMasks.shear`."""
        h, w = self._size("shear")
        tfm = affine(shear_matrix(magnitude, direction), h, w, out_shape, "bilinear", 0)
        return self.apply_transform(tfm, out_hw(out_shape, "shear"))

    def crop_and_resize(self, bboxes: Any, out_shape: int | Sequence[int], inds: Any = None,
                        device: str | torch.device | None = None, interpolation: str = "bilinear",
                        binarize: bool = True) -> torch.Tensor:
        """Mask targets: polygon ``inds[i]`` moved into box ``i`` and rasterized at ``out_shape``.

        Same contract as :meth:`BitmapMasks.crop_and_resize` (and Detectron2's
        ``crop_and_resize(boxes, mask_size)`` when ``inds`` is omitted). Rasterizing at the target
        resolution is what both frameworks do for polygons; the result is already binary
        (float 0/1 when ``binarize=False``).
        """
        out_h, out_w = out_hw(out_shape, "crop_and_resize")
        boxes = boxes_tensor(bboxes, "crop_and_resize")
        device = torch.device(device) if device is not None else boxes.device
        inds = roi_inds(inds, len(boxes), len(self), "crop_and_resize")
        out = np.zeros((len(boxes), out_h, out_w), dtype=bool)
        for r, (box, i) in enumerate(zip(boxes.detach().cpu().double().numpy(), inds.tolist())):
            # Degenerate boxes still map somewhere finite (Detectron2's 0.1 floor).
            bw, bh = max(box[2] - box[0], 0.1), max(box[3] - box[1], 0.1)
            parts = []
            for p in self.masks[i]:
                q = p.copy()
                q[0::2] = (q[0::2] - box[0]) * (out_w / bw)
                q[1::2] = (q[1::2] - box[1]) * (out_h / bh)
                parts.append(q)
            out[r] = polygons_to_bitmask(parts, out_h, out_w)
        result = torch.from_numpy(out).to(device)
        return result if binarize else result.float()

    # ----------------------------------------------------------------- conversions / measures
    def to_bitmap(self) -> BitmapMasks:
        """Rasterize into :class:`BitmapMasks` (uint8, as MMDetection's ``poly2mask``)."""
        h, w = self._size("to_bitmap")
        return BitmapMasks(self.to_ndarray(), h, w)

    def to_ndarray(self) -> np.ndarray:
        """Rasterized ``(N, H, W)`` uint8 masks."""
        h, w = self._size("to_ndarray")
        if not self.masks:
            return np.zeros((0, h, w), np.uint8)
        return np.stack([polygons_to_bitmask(inst, h, w) for inst in self.masks]).astype(np.uint8)

    def to_tensor(self, dtype: torch.dtype, device: str | torch.device) -> torch.Tensor:
        """Rasterized masks as an ``(N, H, W)`` tensor of ``dtype`` on ``device``."""
        return torch.from_numpy(self.to_ndarray()).to(dtype=dtype, device=device)

    @property
    def areas(self) -> np.ndarray:
        """Geometric area of each instance, ``(N,)``: the sum of its parts' shoelace areas (as both
        frameworks compute it; overlapping parts count twice, unlike the rasterized pixel count)."""
        return np.array([sum(polygon_area(p) for p in inst) for inst in self.masks], dtype=np.float64)

    def area(self) -> torch.Tensor:
        """Detectron2's spelling of :attr:`areas` (a float tensor)."""
        return torch.from_numpy(self.areas)

    def get_bboxes(self, dst_type: str = "hbb") -> np.ndarray:
        """``(N, 4)`` float32 XYXY bounds of each instance's points; zeros for an instance with none."""
        if dst_type != "hbb":
            raise ValueError(f"get_bboxes: kiln has horizontal boxes only (dst_type='hbb'), got "
                             f"{dst_type!r}.")
        boxes = np.zeros((len(self), 4), dtype=np.float32)
        for i, inst in enumerate(self.masks):
            if inst:
                pts = np.concatenate(inst).reshape(-1, 2)
                boxes[i, :2], boxes[i, 2:] = pts.min(axis=0), pts.max(axis=0)
        return boxes

    def get_bounding_boxes(self) -> Boxes:
        """Detectron2's spelling of :meth:`get_bboxes` (a :class:`Boxes`)."""
        return Boxes(torch.from_numpy(self.get_bboxes()))

    def nonempty(self) -> torch.Tensor:
        """Bool ``(N,)``: which instances still have a polygon."""
        return torch.tensor([len(inst) > 0 for inst in self.masks], dtype=torch.bool)


# ----------------------------------------------------------------------------- Detectron2 spelling
class BitMasks(BitmapMasks):
    """Detectron2's ``BitMasks(tensor)``: a :class:`BitmapMasks` read through ``.tensor``.

    The data and all the math are :class:`BitmapMasks`'; this adds Detectron2's names. ``.tensor`` is
    the bool ``(N, H, W)`` tensor on :attr:`device` (``.to(device)`` moves that view), and
    ``crop_and_resize(boxes, mask_size)`` gives bool targets on the boxes' device.
    """

    def __init__(self, tensor: torch.Tensor | np.ndarray) -> None:
        device = tensor.device if isinstance(tensor, torch.Tensor) else torch.device("cpu")
        arr = tensor.detach().cpu().numpy() if isinstance(tensor, torch.Tensor) else np.asarray(tensor)
        if arr.ndim != 3:
            raise ValueError(f"BitMasks: tensor must be (N, H, W), got shape {arr.shape}.")
        super().__init__(arr.astype(bool, copy=False), arr.shape[1], arr.shape[2])
        self._device = device

    def _new(self, masks: np.ndarray, height: int, width: int) -> BitMasks:
        out = BitMasks(masks.reshape(-1, height, width))
        out._device = self._device
        return out

    @property
    def tensor(self) -> torch.Tensor:
        """The masks as a bool ``(N, H, W)`` tensor on :attr:`device`."""
        return torch.from_numpy(np.ascontiguousarray(self.masks)).to(self._device, torch.bool)

    @property
    def device(self) -> torch.device:
        """Where :attr:`tensor` is delivered."""
        return self._device

    @property
    def image_size(self) -> tuple[int, int]:
        """``(height, width)``."""
        return self.height, self.width

    def to(self, *args: Any, **kwargs: Any) -> BitMasks:
        """Deliver :attr:`tensor` on another device (masks stay binary: a dtype is refused)."""
        device = kwargs.get("device")
        for a in args:
            if isinstance(a, torch.dtype):
                raise TypeError("BitMasks.to: masks are binary; convert .tensor instead of the BitMasks.")
            if isinstance(a, (str, torch.device)):
                device = a
        if "dtype" in kwargs:
            raise TypeError("BitMasks.to: masks are binary; convert .tensor instead of the BitMasks.")
        out = self._new(self.masks, self.height, self.width)
        if device is not None:
            out._device = torch.device(device)
        return out

    def __iter__(self) -> Iterator[torch.Tensor]:
        return iter(self.tensor)

    def nonempty(self) -> torch.Tensor:
        """Bool ``(N,)``: which masks have at least one pixel."""
        return torch.from_numpy(self.masks.reshape(len(self), -1).any(axis=1)).to(self._device)

    def get_bounding_boxes(self) -> Boxes:
        """Tight boxes (:meth:`get_bboxes`) as :class:`Boxes` on :attr:`device`."""
        return Boxes(torch.from_numpy(self.get_bboxes()).to(self._device))

    @staticmethod
    def from_polygon_masks(polygon_masks: PolygonMasks | Sequence[Sequence[Any]], height: int,
                           width: int) -> BitMasks:
        """Rasterize Detectron2-style polygons (a :class:`PolygonMasks` or raw lists) at
        ``height x width``."""
        polys = polygon_masks.masks if isinstance(polygon_masks, PolygonMasks) else PolygonMasks(
            list(polygon_masks)).masks
        arr = PolygonMasks(polys, height, width).to_ndarray().astype(bool)
        return BitMasks(arr.reshape(-1, int(height), int(width)))
