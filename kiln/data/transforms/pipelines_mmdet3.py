"""MMDetection 3.x pipeline steps: ``RandomResize``, ``RandomChoiceResize``, ``FilterAnnotations``,
``PackDetInputs`` (``TestTimeAug`` is in :mod:`.pipelines_tta`).

Steps whose name exists in both generations (``Resize``, ``RandomFlip``, ``Pad``, ``RandomCrop``,
``LoadImageFromFile``...) live in :mod:`.pipelines` / :mod:`.pipelines_geometric` and take both
spellings. Inside a pipeline the sample stays kiln's results dict (``img``, ``gt_bboxes``,
``gt_labels``, ``scale_factor`` as ``[w, h, w, h]``...); ``PackDetInputs`` turns it into the 3.x batch
form of docs/architecture.md: ``{'inputs': Tensor C×H×W, 'data_samples': DetDataSample}``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from kiln.registry import TRANSFORMS

from .pipelines_geometric import Resize

__all__ = ["RandomResize", "RandomChoiceResize", "FilterAnnotations", "PackDetInputs",
           "DEFAULT_PACK_META_KEYS"]

DEFAULT_PACK_META_KEYS = ("img_id", "img_path", "ori_shape", "img_shape", "scale_factor", "flip",
                          "flip_direction")


def _inner_resize(step: str, resize_type: str, scale: Any, kwargs: Mapping[str, Any]) -> Resize:
    if resize_type != "Resize":
        raise ValueError(f"{step} resize_type={resize_type!r}: kiln's {step} drives 'Resize' only.")
    try:
        return Resize(scale=scale, **kwargs)
    except TypeError as exc:
        raise TypeError(f"{step}: {exc}; the keyword arguments besides the scales go to Resize "
                        "(keep_ratio, clip_object_border, interpolation, backend)") from None


def _scale_pair(value: Any, name: str) -> tuple[int, int]:
    if isinstance(value, int) and not isinstance(value, bool):
        return value, value
    if isinstance(value, (list, tuple)) and len(value) == 2 and all(
            isinstance(v, (int, float)) for v in value):
        return int(value[0]), int(value[1])
    raise ValueError(f"{name} must be a (w, h) pair (or an int for a square), got {value!r}")


@TRANSFORMS.register_module()
class RandomResize:
    """Resize to a random scale (MMDetection 3.x / MMCV ``RandomResize``).

    Args:
        scale: without ``ratio_range``, two ``(w, h)`` scales: each side is drawn uniformly (integers)
            between the two values at its position; with ``ratio_range``, one ``(w, h)`` scale
            multiplied by a ratio drawn uniformly from ``ratio_range``.
        ratio_range: ``(min, max)`` ratio, or ``None``.
        resize_type: ``'Resize'`` (the only one kiln has).
        **resize_kwargs: passed to :class:`Resize` (``keep_ratio``, ``clip_object_border``, ...).
    """

    def __init__(self, scale: Any, ratio_range: Sequence[float] | None = None, resize_type: str = "Resize",
                 **resize_kwargs: Any) -> None:
        if ratio_range is None:
            if not (isinstance(scale, (list, tuple)) and len(scale) == 2
                    and all(isinstance(s, (list, tuple)) for s in scale)):
                raise ValueError(f"RandomResize without ratio_range needs scale=[(w0, h0), (w1, h1)] (the "
                                 f"range of each side), got {scale!r}")
            self.scales = [_scale_pair(s, "RandomResize scale") for s in scale]
        else:
            if len(ratio_range) != 2 or not 0 < ratio_range[0] <= ratio_range[1]:
                raise ValueError(f"RandomResize ratio_range must be (min, max) with 0 < min <= max, got "
                                 f"{ratio_range!r}")
            self.scales = [_scale_pair(scale, "RandomResize scale (with ratio_range)")]
        self.ratio_range = None if ratio_range is None else (float(ratio_range[0]), float(ratio_range[1]))
        self.resize = _inner_resize("RandomResize", resize_type, self.scales[0], resize_kwargs)

    def _draw(self) -> tuple[int, int]:
        if self.ratio_range is None:
            (w0, h0), (w1, h1) = self.scales
            w = np.random.randint(min(w0, w1), max(w0, w1) + 1)
            h = np.random.randint(min(h0, h1), max(h0, h1) + 1)
            return int(w), int(h)
        lo, hi = self.ratio_range
        ratio = np.random.random_sample() * (hi - lo) + lo
        return int(self.scales[0][0] * ratio), int(self.scales[0][1] * ratio)

    def __call__(self, results: dict) -> dict:
        self.resize.scale = self._draw()
        return self.resize(results)

    def __repr__(self) -> str:
        return (f"RandomResize(scale={self.scales}, ratio_range={self.ratio_range}, "
                f"keep_ratio={self.resize.keep_ratio})")


@TRANSFORMS.register_module()
class RandomChoiceResize:
    """Resize to one of ``scales`` picked uniformly (MMDetection 3.x / MMCV ``RandomChoiceResize``).

    Args:
        scales: ``(w, h)`` pairs (ints mean squares).
        resize_type: ``'Resize'``.
        **resize_kwargs: passed to :class:`Resize` (``keep_ratio``, ``clip_object_border``, ...).
    """

    def __init__(self, scales: Sequence[Any], resize_type: str = "Resize", **resize_kwargs: Any) -> None:
        if isinstance(scales, (str, Mapping)) or not isinstance(scales, Sequence) or len(scales) == 0:
            raise ValueError(f"RandomChoiceResize scales must be a non-empty list of (w, h), got {scales!r}")
        self.scales = [_scale_pair(s, "RandomChoiceResize scales[i]") for s in scales]
        self.resize = _inner_resize("RandomChoiceResize", resize_type, self.scales[0], resize_kwargs)

    def __call__(self, results: dict) -> dict:
        self.resize.scale = self.scales[np.random.randint(len(self.scales))]
        return self.resize(results)

    def __repr__(self) -> str:
        return f"RandomChoiceResize(scales={self.scales}, keep_ratio={self.resize.keep_ratio})"


@TRANSFORMS.register_module()
class FilterAnnotations:
    """Drop ground-truth boxes narrower/lower than ``min_gt_bbox_wh`` (``by_box``) or whose bitmap
    mask has fewer than ``min_gt_mask_area`` pixels (``by_mask``), with their labels and masks;
    ignored boxes are filtered by the same rule. When nothing is left and ``keep_empty`` is true,
    the sample is rejected (``None``), as MMDetection's (whose name for it is ``keep_empty``).
    """

    def __init__(self, min_gt_bbox_wh: Sequence[float] = (1, 1), min_gt_mask_area: int = 1,
                 by_box: bool = True, by_mask: bool = False, keep_empty: bool = True) -> None:
        if not (by_box or by_mask):
            raise ValueError("FilterAnnotations needs by_box=True or by_mask=True (otherwise it filters "
                             "nothing).")
        self.min_wh = (float(min_gt_bbox_wh[0]), float(min_gt_bbox_wh[1]))
        self.min_area, self.by_box, self.by_mask = min_gt_mask_area, by_box, by_mask
        self.keep_empty = keep_empty

    def _keep(self, boxes: np.ndarray, masks: Any) -> np.ndarray:
        keep = np.ones(len(boxes), bool)
        if self.by_box:
            keep &= (boxes[:, 2] - boxes[:, 0]) > self.min_wh[0]
            keep &= (boxes[:, 3] - boxes[:, 1]) > self.min_wh[1]
        if self.by_mask and masks is not None:
            keep &= masks.areas >= self.min_area  # pixels of a bitmap, the polygon area of polygons
        return keep

    def __call__(self, results: dict) -> dict | None:
        if "gt_bboxes" not in results:
            raise KeyError("FilterAnnotations needs gt_bboxes; put LoadAnnotations(with_bbox=True) before "
                           "it.")
        masks = results.get("gt_masks")
        if self.by_mask:
            if masks is None:
                raise KeyError("FilterAnnotations(by_mask=True) needs gt_masks; load them with "
                               "LoadAnnotations(with_mask=True).")
        boxes = np.asarray(results["gt_bboxes"], np.float32).reshape(-1, 4)
        ignored = results.get("gt_bboxes_ignore")
        if len(boxes) == 0 and (ignored is None or len(ignored) == 0):
            return results
        keep = self._keep(boxes, masks)
        keep_ignored = None
        if ignored is not None and len(ignored):
            keep_ignored = self._keep(np.asarray(ignored, np.float32).reshape(-1, 4), None)
        if not keep.any() and (keep_ignored is None or not keep_ignored.any()) and self.keep_empty:
            return None
        results["gt_bboxes"] = boxes[keep]
        if "gt_labels" in results:
            results["gt_labels"] = results["gt_labels"][keep]
        if masks is not None:
            results["gt_masks"] = masks[keep]
        if keep_ignored is not None:
            results["gt_bboxes_ignore"] = results["gt_bboxes_ignore"][keep_ignored]
            for extra in ("gt_labels_ignore", "gt_masks_ignore"):
                if extra in results:
                    results[extra] = results[extra][keep_ignored]
        return results

    def __repr__(self) -> str:
        return (f"FilterAnnotations(min_gt_bbox_wh={self.min_wh}, min_gt_mask_area={self.min_area}, "
                f"by_box={self.by_box}, by_mask={self.by_mask}, keep_empty={self.keep_empty})")


def _meta_value(results: dict, key: str) -> tuple[bool, Any]:
    """``(present, value)`` of a 3.x meta key, read from kiln's results dict."""
    if key == "img_id":
        if "image_id" in results:
            return True, results["image_id"]
        info = results.get("img_info") or {}
        return ("id" in info), info.get("id")
    if key == "img_path":
        return ("filename" in results), results.get("filename")
    if key in ("ori_shape", "img_shape", "pad_shape"):
        shape = results.get(key)
        if key == "img_shape" and results.get("img") is not None:
            shape = results["img"].shape
        return (shape is not None), (tuple(int(v) for v in shape[:2]) if shape is not None else None)
    if key == "scale_factor":
        factor = results.get("scale_factor")
        if isinstance(factor, np.ndarray):
            return True, (float(factor[0]), float(factor[1]))
        return True, (1.0, 1.0)
    if key == "flip":
        return True, bool(results.get("flip", False))
    if key == "flip_direction":
        return True, results.get("flip_direction") if results.get("flip", False) else None
    return (key in results), results.get(key)


@TRANSFORMS.register_module()
class PackDetInputs:
    """End a 3.x pipeline: ``{'inputs': image tensor C×H×W, 'data_samples': DetDataSample}``.

    ``inputs`` keeps the pipeline's dtype and channel order (uint8 BGR as loaded; normalisation is the
    model's ``data_preprocessor``). ``data_samples.metainfo`` holds ``meta_keys`` that the results
    have, in MMDetection 3.x spellings (``img_id``, ``img_path``, ``ori_shape``/``img_shape`` as
    ``(h, w)``, ``scale_factor`` as ``(w_scale, h_scale)``, ``flip``, ``flip_direction``), plus
    ``pad_shape`` when a ``Pad`` ran. ``gt_instances`` has ``bboxes`` (float32 N×4 XYXY in ``inputs``
    pixels), ``labels`` (int64) and ``masks`` (the ``BitmapMasks``/``PolygonMasks`` of
    ``LoadAnnotations(with_mask=True)``); ``ignored_instances`` the crowd/difficult boxes, their
    labels and (crowd) masks;
    ``proposals`` (``bboxes``, ``scores``) when ``LoadProposals`` ran (Fast R-CNN).

    Example::

        >>> pack = PackDetInputs(meta_keys=('img_id', 'img_shape'))     # doctest: +SKIP
    """

    def __init__(self, meta_keys: Sequence[str] = DEFAULT_PACK_META_KEYS) -> None:
        if isinstance(meta_keys, str):
            meta_keys = (meta_keys,)
        self.meta_keys = tuple(meta_keys)

    def __call__(self, results: dict) -> dict:
        import torch

        from kiln.structures import DetDataSample

        img = results.get("img")
        if img is None:
            raise KeyError(f"PackDetInputs needs results['img'] (keys: {sorted(results)}); put "
                           "LoadImageFromFile first in the pipeline.")
        if not isinstance(img, torch.Tensor):
            img = np.asarray(img)
            if img.ndim == 2:
                img = img[:, :, None]
            img = torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1)))
        meta: dict[str, Any] = {}
        for key in self.meta_keys:
            present, value = _meta_value(results, key)
            if present:  # as in MMDetection: a requested key the results lack is left out
                meta[key] = value
        if "pad_fixed_size" in results and "pad_shape" not in meta:
            meta["pad_shape"] = _meta_value(results, "pad_shape")[1]
        sample = DetDataSample(metainfo=meta)
        sample.gt_instances = self._instances(results, "gt_bboxes", "gt_labels", "gt_masks")
        sample.ignored_instances = self._instances(results, "gt_bboxes_ignore", "gt_labels_ignore",
                                                   "gt_masks_ignore")
        if "proposals" in results:  # LoadProposals (Fast R-CNN): boxes in `inputs` pixels and their scores
            proposals = self._instances(results, "proposals", None)
            scores = results.get("proposals_scores", np.zeros(len(proposals.bboxes), np.float32))
            proposals.scores = torch.as_tensor(np.asarray(scores, np.float32).reshape(-1))
            sample.proposals = proposals
        return {"inputs": img, "data_samples": sample}

    @staticmethod
    def _instances(results: dict, box_key: str, label_key: str | None, mask_key: str | None = None) -> Any:
        import torch

        from kiln.structures import InstanceData

        inst = InstanceData()
        if box_key in results:
            inst.bboxes = torch.as_tensor(np.asarray(results[box_key], np.float32).reshape(-1, 4))
        if label_key is not None and label_key in results:
            inst.labels = torch.as_tensor(np.asarray(results[label_key], np.int64).reshape(-1))
        if mask_key is not None and mask_key in results:
            inst.masks = results[mask_key]  # BitmapMasks/PolygonMasks at the (unpadded) image size
        return inst

    def __repr__(self) -> str:
        return f"PackDetInputs(meta_keys={self.meta_keys})"
