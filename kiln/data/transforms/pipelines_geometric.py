"""MM-style geometric pipeline steps: Resize, RandomFlip, Pad, RandomCrop, MinIoURandomCrop
(MMDetection 2.x and 3.x spellings; test-time wrappers are in :mod:`.pipelines_tta`).

Every step decides *what* to do, builds the primitive
:class:`~kiln.data.transforms.transform.Transform` for it, and hands it to :func:`apply_geometry`,
which moves all images, boxes, masks and label maps of the sample. No step here does its own box
arithmetic beyond clipping/filtering, so the MM and Detectron2 styles share one geometry core.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from kiln.image.geometric import rescale_size as _image_rescale_size
from kiln.registry import TRANSFORMS
from kiln.structures.masks import PolygonMasks

from .transform import (
    CropTransform,
    HFlipTransform,
    PadTransform,
    ResizeTransform,
    Transform,
    TransformList,
    VFlipTransform,
    clip_boxes,
)

__all__ = ["Resize", "RandomFlip", "Pad", "RandomCrop", "MinIoURandomCrop", "apply_geometry", "rescale_size",
           "resize_results", "FLIP_DIRECTIONS", "as_scales"]


def apply_geometry(results: dict, tfm: Transform, clip_shape: tuple[int, int] | None = None,
                   seg_transform: Transform | None = None) -> dict:
    """Move every image, box array, mask and label map of ``results`` with ``tfm``.

    Boxes are clipped to ``clip_shape`` ``(h, w)`` when given. Label maps (``seg_fields``) use
    ``seg_transform`` when given (same geometry, different fill value). The transform is also appended to
    ``results['transforms']`` (a :class:`TransformList`), so predictions can be mapped back with
    ``results['transforms'].inverse()``.
    """
    for key in results.get("img_fields", ["img"]):
        if key in results:
            results[key] = tfm.apply_image(results[key])
    for key in results.get("bbox_fields", []):
        boxes = tfm.apply_box(results[key])
        results[key] = clip_boxes(boxes, *clip_shape) if clip_shape is not None else boxes
    for key in results.get("mask_fields", []):
        masks = results[key]
        if not hasattr(masks, "apply_transform"):
            raise TypeError(f"results[{key!r}] is a {type(masks).__name__}; instance masks in a pipeline are "
                            "kiln.structures.BitmapMasks or PolygonMasks (LoadAnnotations(with_mask=True) "
                            "makes them).")
        img = results.get("img")
        # Polygons are clipped to the new image, whose size the moved image tells.
        out_shape = img.shape[:2] if isinstance(img, np.ndarray) else None
        results[key] = (masks.apply_transform(tfm) if not isinstance(masks, PolygonMasks)
                        else masks.apply_transform(tfm, out_shape))
    for key in results.get("seg_fields", []):
        results[key] = (seg_transform or tfm).apply_segmentation(results[key])
    done = results.get("transforms")
    results["transforms"] = TransformList([done, tfm]) if done is not None else TransformList([tfm])
    return results


def rescale_size(w: int, h: int, scale: float | Sequence[int]) -> tuple[tuple[int, int], float]:
    """Keep-ratio target size: the largest ``(new_w, new_h)`` whose long edge is at most
    ``max(scale)`` and short edge at most ``min(scale)`` (or ``w, h`` times a float ``scale``).

    The ``(w, h, scale)`` spelling of :func:`kiln.image.rescale_size`, which does the work."""
    return _image_rescale_size((w, h), scale, return_scale=True)


def as_scales(img_scale: Any, name: str) -> list[tuple[int, int]]:
    if img_scale is None:
        return []
    is_pair = isinstance(img_scale, (tuple, list)) and len(img_scale) == 2
    if is_pair and all(isinstance(v, (int, float)) for v in img_scale):
        return [(int(img_scale[0]), int(img_scale[1]))]
    scales = []
    for s in img_scale:
        if not (isinstance(s, (tuple, list)) and len(s) == 2):
            raise ValueError(f"{name} must be a (long, short) pair or a list of pairs, got {img_scale!r}")
        scales.append((int(s[0]), int(s[1])))
    return scales


def _spelling(step: str, mm2: Mapping[str, Any], mm3: Mapping[str, Any]) -> bool:
    """Whether a step uses its MMDetection 3.x spelling; refuses a mix of both spellings."""
    given2 = sorted(k for k, v in mm2.items() if v is not None)
    given3 = sorted(k for k, v in mm3.items() if v is not None)
    if given2 and given3:
        raise ValueError(f"{step} mixes the MMDetection 2.x argument(s) {given2} with the 3.x argument(s) "
                         f"{given3}; use one spelling (3.x: {sorted(mm3)}, 2.x: {sorted(mm2)}).")
    return bool(given3)


def resize_results(results: dict, scale: float | tuple[int, int], keep_ratio: bool, clip: bool = True,
                   interpolation: str = "bilinear", compose: bool = False) -> dict:
    """Resize the image and everything on it to ``scale`` (the one resize core of all Resize steps).

    ``keep_ratio``: the largest size with long edge <= ``max(scale)`` and short edge <= ``min(scale)``
    (a float ``scale`` multiplies both sides); otherwise exactly ``scale = (w, h)``. ``compose``:
    multiply an earlier ``scale_factor`` in (MMDetection 3.x pipelines may resize twice; the factor
    must still map to the original image).
    """
    img = results["img"]
    h, w = img.shape[:2]
    if keep_ratio:
        (new_w, new_h), _ = rescale_size(w, h, scale)
    elif isinstance(scale, float):
        new_w, new_h = int(w * scale + 0.5), int(h * scale + 0.5)
    else:
        new_w, new_h = int(scale[0]), int(scale[1])
    tfm = ResizeTransform(h, w, new_h, new_w, interpolation)
    apply_geometry(results, tfm, (new_h, new_w) if clip else None)
    factor = np.array([new_w / w, new_h / h, new_w / w, new_h / h], dtype=np.float32)
    if compose and isinstance(results.get("scale_factor"), np.ndarray):
        factor = factor * results["scale_factor"]
    results["scale"] = scale
    results["img_shape"] = results["img"].shape
    results["pad_shape"] = results["img"].shape
    results["scale_factor"] = factor
    results["keep_ratio"] = keep_ratio
    return results


def _pair(value: Any, name: str, cast: type) -> tuple | None:
    if value is None:
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return (cast(value), cast(value))
    if isinstance(value, (list, tuple)) and len(value) == 2:
        return (cast(value[0]), cast(value[1]))
    raise ValueError(f"{name} must be a number or a (w, h) pair, got {value!r}")


@TRANSFORMS.register_module()
class Resize:
    """Resize the image (and everything on it); MMDetection 2.x and 3.x spellings.

    3.x spelling (``Resize(scale=(1333, 800), keep_ratio=True)``):
        scale: ``(w, h)`` target (an int means a square); or instead ``scale_factor`` (a float or a
            ``(w, h)`` pair multiplying the current size).
        keep_ratio: default ``False`` as in MMDetection 3.x (resize to exactly ``scale``).
        clip_object_border: clip boxes to the resized image.
        The step resizes whatever ran before (no ``override`` needed); ``scale_factor`` in the
        results keeps mapping to the original image.

    2.x spelling (``Resize(img_scale=(1333, 800), keep_ratio=True)``):
        img_scale: a ``(w, h)``/``(long, short)`` pair or a list of them. Inside
            :class:`MultiScaleFlipAug` leave it ``None``: the wrapper sets ``results['scale']``.
        multiscale_mode: with several scales, ``'range'`` samples long/short edges uniformly
            between the extremes (needs exactly two scales), ``'value'`` picks one scale.
        ratio_range: ``(min, max)``: multiply the single ``img_scale`` by a random ratio.
        keep_ratio: default ``True`` as in MMDetection 2.x.
        bbox_clip_border: clip boxes to the resized image.
        override: allow resizing an already resized image.

    Both: ``interpolation`` (cv2 name), ``backend`` (``'cv2'`` only). Mixing the spellings is an error.
    """

    def __init__(self, img_scale: Any = None, multiscale_mode: str | None = None,
                 ratio_range: Sequence[float] | None = None, keep_ratio: bool | None = None,
                 bbox_clip_border: bool | None = None, interpolation: str = "bilinear",
                 override: bool | None = None, backend: str = "cv2", *, scale: Any = None,
                 scale_factor: float | Sequence[float] | None = None,
                 clip_object_border: bool | None = None) -> None:
        self.mmdet3 = _spelling(
            "Resize", dict(img_scale=img_scale, multiscale_mode=multiscale_mode, ratio_range=ratio_range,
                           override=override, bbox_clip_border=bbox_clip_border),
            dict(scale=scale, scale_factor=scale_factor, clip_object_border=clip_object_border))
        if backend != "cv2":
            raise ValueError(f"Resize backend={backend!r}: kiln resizes with cv2 only; remove backend= "
                             "or set backend='cv2'.")
        self.interpolation = interpolation
        if self.mmdet3:
            if (scale is None) == (scale_factor is None):
                raise ValueError(f"Resize needs exactly one of scale or scale_factor, got scale={scale!r}, "
                                 f"scale_factor={scale_factor!r}")
            self.scale = _pair(scale, "Resize scale", int)
            self.scale_factor = _pair(scale_factor, "Resize scale_factor", float)
            self.keep_ratio = bool(keep_ratio) if keep_ratio is not None else False
            self.clip = clip_object_border if clip_object_border is not None else True
            return
        multiscale_mode = multiscale_mode or "range"
        self.img_scale = as_scales(img_scale, "Resize img_scale")
        if multiscale_mode not in ("range", "value"):
            raise ValueError(f"Resize multiscale_mode must be 'range' or 'value', got {multiscale_mode!r}")
        if ratio_range is not None and len(self.img_scale) != 1:
            raise ValueError(f"Resize ratio_range needs exactly one img_scale, got {img_scale!r}")
        if multiscale_mode == "range" and ratio_range is None and len(self.img_scale) not in (0, 1, 2):
            raise ValueError(f"Resize multiscale_mode='range' takes two scales (the extremes), got "
                             f"{len(self.img_scale)}; use multiscale_mode='value' to pick from a list")
        self.multiscale_mode, self.ratio_range = multiscale_mode, ratio_range
        self.keep_ratio = keep_ratio if keep_ratio is not None else True
        self.clip = bbox_clip_border if bbox_clip_border is not None else True
        self.override = bool(override)

    @property
    def bbox_clip_border(self) -> bool:
        """Whether boxes are clipped to the resized image (both spellings)."""
        return self.clip

    def _random_scale(self) -> tuple[int, int]:
        if self.ratio_range is not None:
            lo, hi = self.ratio_range
            ratio = np.random.random_sample() * (hi - lo) + lo
            return int(self.img_scale[0][0] * ratio), int(self.img_scale[0][1] * ratio)
        if len(self.img_scale) == 1:
            return self.img_scale[0]
        if self.multiscale_mode == "value":
            return self.img_scale[np.random.randint(len(self.img_scale))]
        longs = [max(s) for s in self.img_scale]
        shorts = [min(s) for s in self.img_scale]
        long_edge = np.random.randint(min(longs), max(longs) + 1)
        short_edge = np.random.randint(min(shorts), max(shorts) + 1)
        return int(long_edge), int(short_edge)

    def __call__(self, results: dict) -> dict:
        if self.mmdet3:
            if self.scale is not None:
                target: Any = self.scale
            else:
                h, w = results["img"].shape[:2]
                target = (int(w * self.scale_factor[0] + 0.5), int(h * self.scale_factor[1] + 0.5))
            return resize_results(results, target, self.keep_ratio, self.clip, self.interpolation,
                                  compose=True)
        if isinstance(results.get("scale_factor"), np.ndarray):
            if not self.override:
                raise RuntimeError("Resize: the image was already resized (scale_factor is set); pass "
                                   "override=True to resize again.")
            # A second resize picks its own scale; scale_factor then describes the last resize only.
            results.pop("scale", None)
            results.pop("scale_factor")
        if "scale" in results:
            scale = results["scale"]
        elif isinstance(results.get("scale_factor"), (int, float)):
            scale = float(results["scale_factor"])
        elif self.img_scale:
            scale = self._random_scale()
        else:
            raise ValueError("Resize has no img_scale and results has no 'scale'; set img_scale, or put "
                             "Resize inside MultiScaleFlipAug(img_scale=...).")
        return resize_results(results, scale, self.keep_ratio, self.clip, self.interpolation)

    def __repr__(self) -> str:
        if self.mmdet3:
            return (f"Resize(scale={self.scale}, scale_factor={self.scale_factor}, "
                    f"keep_ratio={self.keep_ratio}, clip_object_border={self.clip})")
        return (f"Resize(img_scale={self.img_scale}, multiscale_mode={self.multiscale_mode!r}, "
                f"ratio_range={self.ratio_range}, keep_ratio={self.keep_ratio})")


FLIP_DIRECTIONS = ("horizontal", "vertical", "diagonal")


def _flip_transform(direction: str, h: int, w: int) -> Transform:
    if direction == "horizontal":
        return HFlipTransform(w)
    if direction == "vertical":
        return VFlipTransform(h)
    return TransformList([HFlipTransform(w), VFlipTransform(h)])


@TRANSFORMS.register_module()
class RandomFlip:
    """Flip with a probability in ``direction`` (``'horizontal'``, ``'vertical'``, ``'diagonal'``, or a
    list with one probability each / one probability shared equally).

    The probability is ``prob`` (MMDetection 3.x spelling: every call draws) or ``flip_ratio`` (2.x:
    inside :class:`MultiScaleFlipAug` the wrapper's ``flip``/``flip_direction`` decide). Mixing the two
    spellings is an error. ``swap_seg_labels`` (3.x, label maps) is not implemented and refused.
    """

    def __init__(self, flip_ratio: float | Sequence[float] | None = None,
                 direction: str | Sequence[str] = "horizontal", *,
                 prob: float | Sequence[float] | None = None, swap_seg_labels: Any = None) -> None:
        self.mmdet3 = _spelling("RandomFlip", dict(flip_ratio=flip_ratio),
                                dict(prob=prob, swap_seg_labels=swap_seg_labels))
        if swap_seg_labels is not None:
            raise ValueError(f"RandomFlip swap_seg_labels={swap_seg_labels!r}: swapping label-map classes "
                             "on flip is not implemented in kiln; remove the key.")
        if self.mmdet3:
            flip_ratio = prob
        directions = [direction] if isinstance(direction, str) else list(direction)
        for d in directions:
            if d not in FLIP_DIRECTIONS:
                raise ValueError(f"RandomFlip direction must be one of {FLIP_DIRECTIONS}, got {d!r}")
        if isinstance(flip_ratio, (list, tuple)):
            if len(flip_ratio) != len(directions):
                raise ValueError(f"RandomFlip got {len(flip_ratio)} flip probabilities for "
                                 f"{len(directions)} directions")
            ratios = [float(r) for r in flip_ratio]
        elif flip_ratio is None:
            ratios = []
        else:
            ratios = [float(flip_ratio) / len(directions)] * len(directions)
        if ratios and not (all(0 <= r <= 1 for r in ratios) and sum(ratios) <= 1 + 1e-9):
            raise ValueError(f"RandomFlip flip probabilities must be in [0, 1] and sum to at most 1, "
                             f"got {flip_ratio!r}")
        self.flip_ratio, self.directions, self._ratios = flip_ratio, directions, ratios

    def _draw(self, results: dict) -> None:
        if not self._ratios:
            results["flip"], results["flip_direction"] = False, None
            return
        options = self.directions + [None]
        probs = self._ratios + [max(0.0, 1.0 - sum(self._ratios))]
        choice = options[np.random.choice(len(options), p=np.asarray(probs) / sum(probs))]
        results["flip"], results["flip_direction"] = choice is not None, choice

    def __call__(self, results: dict) -> dict:
        if self.mmdet3 or "flip" not in results:
            self._draw(results)
        elif "flip_direction" not in results:
            results["flip_direction"] = self.directions[0] if results["flip"] else None
        if results["flip"]:
            h, w = results["img"].shape[:2]
            apply_geometry(results, _flip_transform(results["flip_direction"], h, w))
        return results

    def __repr__(self) -> str:
        key = "prob" if self.mmdet3 else "flip_ratio"
        return f"RandomFlip({key}={self.flip_ratio}, direction={self.directions})"


def _axis_order(step: str, axis_order: str) -> str:
    if axis_order not in ("hw", "wh"):
        raise ValueError(f"{step} axis_order must be 'hw' (MMDetection 2.x) or 'wh' (3.x), "
                         f"got {axis_order!r}")
    return axis_order


@TRANSFORMS.register_module()
class Pad:
    """Pad bottom/right to a fixed ``size``, to a square (``pad_to_square``) and/or to multiples of
    ``size_divisor`` (applied last, to the fixed or square size when one is given).

    ``size`` is ``(h, w)`` in MMDetection 2.x pipelines and ``(w, h)`` in 3.x ones: ``axis_order``
    (``'hw'``/``'wh'``) says which; :class:`Compose` sets it from the pipeline's generation
    (:mod:`.dialect`). ``pad_val`` is a number (images; masks 0, label maps 255) or
    ``dict(img=, masks=, seg=)``. ``padding_mode`` is ``'constant'`` only (edge/reflect padding is
    refused). Sets ``pad_shape``, ``pad_fixed_size``, ``pad_size_divisor``.
    """

    def __init__(self, size: Sequence[int] | None = None, size_divisor: int | None = None,
                 pad_val: float | Mapping = 0, pad_to_square: bool = False, padding_mode: str = "constant",
                 axis_order: str = "hw") -> None:
        if size is None and size_divisor is None and not pad_to_square:
            raise ValueError("Pad needs exactly one of size or size_divisor (or pad_to_square=True); got "
                             "none of them")
        if axis_order == "hw" and size is not None and size_divisor is not None:
            # MMDetection 2.x takes one or the other; 3.x rounds the fixed size up to the divisor.
            raise ValueError(f"Pad (MMDetection 2.x pipeline) needs exactly one of size or size_divisor, "
                             f"got size={size!r}, size_divisor={size_divisor!r}")
        if pad_to_square and size is not None:
            raise ValueError(f"Pad pad_to_square=True decides the size itself; remove size={size!r}")
        if padding_mode != "constant":
            raise ValueError(f"Pad padding_mode={padding_mode!r}: kiln pads with a constant only; remove "
                             "padding_mode or set it to 'constant'.")
        self.axis_order = _axis_order("Pad", axis_order)
        if size is not None:
            pair = _pair(size, "Pad size", int)
            size = pair if axis_order == "hw" else (pair[1], pair[0])  # kept as (h, w)
        self.size, self.size_divisor, self.pad_to_square = size, size_divisor, pad_to_square
        if isinstance(pad_val, Mapping):
            unknown = sorted(set(pad_val) - {"img", "masks", "seg"})
            if unknown:
                raise ValueError(f"Pad pad_val has unknown keys {unknown}; it takes img, masks, seg")
            self.pad_val = dict(dict(img=0, masks=0, seg=255), **pad_val)
        else:
            self.pad_val = dict(img=pad_val, masks=0, seg=255)

    def __call__(self, results: dict) -> dict:
        h, w = results["img"].shape[:2]
        if self.pad_to_square:
            th = tw = max(h, w)
        elif self.size is not None:
            th, tw = self.size
            if th < h or tw < w:
                raise ValueError(f"Pad size (h, w)={self.size} is smaller than the image {h}x{w}; use a "
                                 "larger size or a crop step before Pad.")
        else:
            th, tw = h, w
        if self.size_divisor is not None:
            d = self.size_divisor
            th, tw = -(-th // d) * d, -(-tw // d) * d
        # Instance masks (mask_fields) pad with pad_val['masks'], label maps (seg_fields) with 'seg'.
        tfm = PadTransform(0, 0, tw - w, th - h, orig_w=w, orig_h=h, pad_value=self.pad_val["img"],
                           seg_pad_value=self.pad_val["masks"])
        seg_tfm = PadTransform(0, 0, tw - w, th - h, orig_w=w, orig_h=h, seg_pad_value=self.pad_val["seg"])
        apply_geometry(results, tfm, seg_transform=seg_tfm)
        results["pad_shape"] = results["img"].shape
        results["pad_fixed_size"] = self.size
        results["pad_size_divisor"] = self.size_divisor
        return results

    def __repr__(self) -> str:
        return (f"Pad(size(h, w)={self.size}, size_divisor={self.size_divisor}, "
                f"pad_to_square={self.pad_to_square}, pad_val={self.pad_val})")


def _crop_and_filter(results: dict, tfm: CropTransform, clip: bool, keep: np.ndarray | None = None) -> bool:
    """Crop everything, clip boxes, drop boxes (and their labels/masks) left empty. Returns whether
    any ``gt_bboxes`` survive."""
    h, w = tfm.h, tfm.w
    fields = list(results.get("bbox_fields", []))
    apply_geometry(results, tfm, (h, w) if clip else None)
    survived = True
    for key in fields:
        boxes = results[key]
        valid = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
        if key == "gt_bboxes" and keep is not None:
            valid &= keep
        results[key] = boxes[valid]
        if key == "gt_bboxes":
            survived = bool(valid.any())
            if "gt_labels" in results:
                results["gt_labels"] = results["gt_labels"][valid]
            if "gt_masks" in results:
                results["gt_masks"] = results["gt_masks"][valid]
        elif key == "gt_bboxes_ignore":
            for extra in ("gt_labels_ignore", "gt_masks_ignore"):
                if extra in results:
                    results[extra] = results[extra][valid]
    results["img_shape"] = results["img"].shape
    results["pad_shape"] = results["img"].shape
    return survived


@TRANSFORMS.register_module()
class RandomCrop:
    """Crop a random ``crop_size`` window; boxes are clipped and boxes left empty dropped with
    their labels/masks. Rejects the sample (returns ``None``) when no ground-truth box survives,
    unless ``allow_negative_crop``.

    Args:
        crop_size: ``(h, w)``; for ``'relative'``/``'relative_range'`` fractions of the image,
            for ``'absolute_range'`` the ``(min, max)`` side in pixels. MMDetection 3.x writes
            ``'absolute'``/``'relative'`` sizes as ``(w, h)``: ``axis_order='wh'`` says so
            (:class:`Compose` sets it in 3.x pipelines, see :mod:`.dialect`).
        recompute_bbox: after the crop, set each box to the extent of its instance mask (bitmap or
            polygon), as MMDetection does; without masks there is nothing to recompute from and boxes
            stay clipped.
    """

    def __init__(self, crop_size: Sequence[float], crop_type: str = "absolute",
                 allow_negative_crop: bool = False, bbox_clip_border: bool = True,
                 recompute_bbox: bool = False, axis_order: str = "hw") -> None:
        from .augmentation import RandomCrop as _CropPolicy

        self.recompute_bbox = bool(recompute_bbox)
        self.axis_order = _axis_order("RandomCrop", axis_order)
        crop_size = tuple(crop_size)
        if axis_order == "wh" and crop_type in ("absolute", "relative") and len(crop_size) == 2:
            crop_size = (crop_size[1], crop_size[0])  # kept as (h, w)
        self.crop_size, self.crop_type = crop_size, crop_type
        self._policy = _CropPolicy(crop_type, crop_size)  # one crop-size rule for both styles
        self.allow_negative_crop, self.bbox_clip_border = allow_negative_crop, bbox_clip_border

    def __call__(self, results: dict) -> dict | None:
        img = results["img"]
        h, w = img.shape[:2]
        if self.crop_type == "absolute_range":
            # MMDetection clamps both bounds to the image (Detectron2's policy refuses a small image).
            lo, hi = int(self.crop_size[0]), int(self.crop_size[1])
            ch = int(np.random.randint(min(h, lo), min(h, hi) + 1))
            cw = int(np.random.randint(min(w, lo), min(w, hi) + 1))
        else:
            ch, cw = self._policy.get_crop_size((h, w))
        y0 = np.random.randint(0, h - ch + 1)
        x0 = np.random.randint(0, w - cw + 1)
        tfm = CropTransform(x0, y0, cw, ch, orig_w=w, orig_h=h)
        had_boxes = "gt_bboxes" in results and len(results["gt_bboxes"]) > 0
        survived = _crop_and_filter(results, tfm, self.bbox_clip_border)
        if had_boxes and not survived and not self.allow_negative_crop:
            return None
        if self.recompute_bbox and results.get("mask_fields"):
            _boxes_from_masks(results)
        return results

    def __repr__(self) -> str:
        return (f"RandomCrop(crop_size={self.crop_size}, crop_type={self.crop_type!r}, "
                f"allow_negative_crop={self.allow_negative_crop})")


def _boxes_from_masks(results: dict) -> None:
    """Set ``gt_bboxes`` to each instance mask's box: the tight pixel box of a bitmap, the bounds of
    a (clipped) polygon; zeros for an empty mask."""
    if "gt_masks" not in results:
        raise KeyError("RandomCrop recompute_bbox=True recomputes boxes from gt_masks; load them with "
                       "LoadAnnotations(with_mask=True) or remove recompute_bbox.")
    results["gt_bboxes"] = results["gt_masks"].get_bboxes()


def _iou_one_to_many(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    x0 = np.maximum(box[0], boxes[:, 0])
    y0 = np.maximum(box[1], boxes[:, 1])
    x1 = np.minimum(box[2], boxes[:, 2])
    y1 = np.minimum(box[3], boxes[:, 3])
    inter = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    return inter / np.maximum(area + areas - inter, 1e-6)


@TRANSFORMS.register_module()
class MinIoURandomCrop:
    """SSD-style crop: pick a minimum IoU from ``(1, *min_ious, 0)`` (1 = keep the image), then
    try random windows (side >= ``min_crop_size`` of the image, aspect in [1/2, 2]) until every box
    overlaps the window by at least that IoU; keep the boxes whose centres fall inside.

    MMDetection retries forever; kiln gives up after ``max_trials`` modes of 50 windows each and
    keeps the image uncropped, so a sample can never hang the loader.
    """

    def __init__(self, min_ious: Sequence[float] = (0.1, 0.3, 0.5, 0.7, 0.9), min_crop_size: float = 0.3,
                 bbox_clip_border: bool = True, max_trials: int = 20) -> None:
        self.min_ious, self.min_crop_size = tuple(min_ious), min_crop_size
        self.sample_mode = (1, *self.min_ious, 0)
        self.bbox_clip_border, self.max_trials = bbox_clip_border, max_trials

    def __call__(self, results: dict) -> dict:
        img = results["img"]
        h, w = img.shape[:2]
        boxes = np.asarray(results.get("gt_bboxes", np.zeros((0, 4), np.float32)))
        for _ in range(self.max_trials):
            mode = self.sample_mode[np.random.randint(len(self.sample_mode))]
            if mode == 1:
                return results
            for _ in range(50):
                new_w = np.random.uniform(self.min_crop_size * w, w)
                new_h = np.random.uniform(self.min_crop_size * h, h)
                if new_h / new_w < 0.5 or new_h / new_w > 2:
                    continue
                left = np.random.uniform(w - new_w)
                top = np.random.uniform(h - new_h)
                patch = np.array([int(left), int(top), int(left + new_w), int(top + new_h)])
                if patch[2] <= patch[0] or patch[3] <= patch[1]:
                    continue
                if len(boxes) and _iou_one_to_many(patch, boxes).min() < mode:
                    continue
                if len(boxes):
                    cx = (boxes[:, 0] + boxes[:, 2]) / 2
                    cy = (boxes[:, 1] + boxes[:, 3]) / 2
                    inside = (cx > patch[0]) & (cy > patch[1]) & (cx < patch[2]) & (cy < patch[3])
                    if not inside.any():
                        continue
                else:
                    inside = None
                tfm = CropTransform(patch[0], patch[1], patch[2] - patch[0], patch[3] - patch[1],
                                    orig_w=w, orig_h=h)
                _crop_and_filter(results, tfm, self.bbox_clip_border, keep=inside)
                return results
        return results

    def __repr__(self) -> str:
        return f"MinIoURandomCrop(min_ious={self.min_ious}, min_crop_size={self.min_crop_size})"
