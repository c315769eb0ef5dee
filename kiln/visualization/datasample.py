"""One batch element + the model's output for it → what the visualizer draws, in original-image pixels.

kiln batches come in three forms (docs/architecture.md, "Batches"): MMDetection 3.x
(``inputs`` + ``data_samples``), MMDetection 2.x (``img`` + ``img_metas`` + ``gt_bboxes``) and
Detectron2 (``image`` + ``instances`` + ``file_name``). Model outputs are kiln's: ``{'boxes',
'scores', 'labels'}`` in **original-image** pixels. Both are drawn on the original image, read from
the sample's file, so the ground truth must be in original pixels too:

* 2.x and Detectron2 forms: annotations are loaded before the geometric transforms, so the boxes
  are in input pixels (resized, flipped); they are mapped back with the sample's meta
  (``img_shape``, ``ori_shape``, ``scale_factor``, ``flip``), as the detectors map predictions.
  Instance masks go back the same way (padding cut off, flip undone, resized to ``ori_shape``).
* 3.x form: drawn as they come, as MMDetection's ``DetVisualizationHook`` does. MMDetection 3.x
  test pipelines load annotations *after* ``Resize`` (``LoadImageFromFile, Resize, LoadAnnotations,
  PackDetInputs``), so validation/test ground truth is in original pixels already; a val pipeline
  that loads them before ``Resize`` gets resized boxes drawn on the original image, as in MMDetection.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from kiln.structures import DetDataSample, InstanceData

__all__ = ["DrawableSample", "drawable_sample", "dataset_meta"]


@dataclass
class DrawableSample:
    """What to draw for one image.

    Attributes:
        img_path: the image file (read it to get the original image).
        data_sample: ``gt_instances`` (when the batch has ground truth) and ``pred_instances``, both
            in original-image pixels.
    """

    img_path: str
    data_sample: DetDataSample


def _unwrap(x: Any) -> Any:
    # MMCV's DataContainer keeps the payload in `.data`.
    if type(x).__name__ == "DataContainer" and hasattr(x, "data"):
        return x.data
    return x


def _first(x: Any) -> Any:
    x = _unwrap(x)
    if isinstance(x, (list, tuple)):  # test-time augmentation: one entry per view; the first is the plain one
        if not x:
            return None
        x = _unwrap(x[0])
    return x


def _tensor(x: Any, dtype: torch.dtype) -> torch.Tensor:
    x = _unwrap(x)
    x = getattr(x, "tensor", x)  # kiln.structures.Boxes
    if isinstance(x, np.ndarray):
        x = torch.from_numpy(np.ascontiguousarray(x))
    return torch.as_tensor(x).detach().cpu().to(dtype)


def _to_original(boxes: torch.Tensor, meta: Mapping[str, Any], what: str) -> torch.Tensor:
    """Input-pixel boxes → original pixels (undo flip, then resize), as the detectors map predictions."""
    from kiln.models.detectors.base import to_original_pixels

    if "img_shape" not in meta or "ori_shape" not in meta:
        raise KeyError(f"DetVisualizationHook: {what} has ground truth but its meta lacks 'img_shape' / "
                       f"'ori_shape' (keys: {sorted(meta)}); keep them in the pipeline's meta_keys so the "
                       "boxes can be drawn on the original image.")
    sf = np.asarray(meta.get("scale_factor", 1.0), dtype=np.float32).reshape(-1)
    if sf.size in (1, 2):
        sf = np.tile(sf, 4 // sf.size)
    elif sf.size != 4:
        raise ValueError(f"DetVisualizationHook: {what} scale_factor={meta['scale_factor']!r}; expected a "
                         "number, (w, h) or (w, h, w, h).")
    plain = {
        "img_shape": tuple(int(v) for v in tuple(meta["img_shape"])[:2]),
        "ori_shape": tuple(int(v) for v in tuple(meta["ori_shape"])[:2]),
        "scale_factor": torch.from_numpy(sf),
        "flip": bool(meta.get("flip", False)),
        "flip_direction": meta.get("flip_direction"),
    }
    return to_original_pixels(boxes.reshape(-1, 4), plain)


def _masks_to_original(masks: Any, meta: Mapping[str, Any], what: str) -> Any:
    """Input-pixel instance masks → original pixels: cut the padding off, undo the flip, resize."""
    from kiln.structures import BitmapMasks, PolygonMasks

    if not isinstance(masks, (BitmapMasks, PolygonMasks)):
        arr = _tensor(masks, torch.uint8).numpy()
        if arr.ndim != 3:
            raise ValueError(f"DetVisualizationHook: {what} masks must be N×H×W, got shape {arr.shape}.")
        masks = BitmapMasks(arr, arr.shape[1], arr.shape[2])
    ih, iw = (int(v) for v in tuple(meta["img_shape"])[:2])
    oh, ow = (int(v) for v in tuple(meta["ori_shape"])[:2])
    if (masks.height, masks.width) != (ih, iw):
        masks = masks.crop(np.array([0, 0, iw, ih]))
    if meta.get("flip", False):
        masks = masks.flip(meta.get("flip_direction") or "horizontal")
    return masks.resize((oh, ow)) if (ih, iw) != (oh, ow) else masks


def _gt(boxes: Any, labels: Any, meta: Mapping[str, Any], what: str, masks: Any = None) -> InstanceData:
    b = _tensor(boxes, torch.float32).reshape(-1, 4)
    if labels is None:
        lab = torch.zeros(len(b), dtype=torch.int64)
    else:
        lab = _tensor(labels, torch.int64).reshape(-1)
    if len(lab) != len(b):
        raise ValueError(f"DetVisualizationHook: {what} has {len(b)} ground-truth boxes but {len(lab)} "
                         "labels.")
    gt = InstanceData(bboxes=_to_original(b, meta, what), labels=lab)
    if masks is not None:
        gt.masks = _masks_to_original(_unwrap(masks), meta, what)
    return gt


def _from_mmdet3(sample: Mapping[str, Any]) -> tuple[str | None, InstanceData | None]:
    ds = _first(sample["data_samples"])
    meta = ds.metainfo if hasattr(ds, "metainfo") else dict(ds)
    path = meta.get("img_path")
    gt = ds.get("gt_instances") if hasattr(ds, "get") else None
    if gt is None or "bboxes" not in gt:
        return path, None
    # Original pixels already: 3.x test pipelines load annotations after Resize (module docstring).
    boxes = _tensor(gt.bboxes, torch.float32).reshape(-1, 4)
    labels = gt.get("labels")
    labels = torch.zeros(len(boxes), dtype=torch.int64) if labels is None else _tensor(labels, torch.int64)
    if len(labels.reshape(-1)) != len(boxes):
        raise ValueError(f"DetVisualizationHook: data_samples.gt_instances has {len(boxes)} boxes but "
                         f"{len(labels.reshape(-1))} labels.")
    gt_out = InstanceData(bboxes=boxes, labels=labels.reshape(-1))
    if "masks" in gt:
        gt_out.masks = gt.masks
    return path, gt_out


def _from_mmdet2(sample: Mapping[str, Any]) -> tuple[str | None, InstanceData | None]:
    meta = _first(sample.get("img_metas")) or {}
    path = meta.get("filename") or meta.get("file_name")
    if "gt_bboxes" not in sample:
        return path, None
    return path, _gt(sample["gt_bboxes"], sample.get("gt_labels"), meta, "gt_bboxes", sample.get("gt_masks"))


def _from_detectron2(sample: Mapping[str, Any]) -> tuple[str | None, InstanceData | None]:
    path = sample.get("file_name")
    inst = sample.get("instances")
    if inst is None or not inst.has("gt_boxes"):
        return path, None
    h, w = (int(v) for v in sample["image"].shape[-2:])
    oh, ow = int(sample.get("height", h)), int(sample.get("width", w))
    # DatasetMapper records no flip: its test-time transforms resize only.
    meta = {"img_shape": (h, w), "ori_shape": (oh, ow), "scale_factor": (w / ow, h / oh)}
    labels = inst.gt_classes if inst.has("gt_classes") else None
    masks = inst.gt_masks if inst.has("gt_masks") else None
    return path, _gt(inst.gt_boxes, labels, meta, "instances.gt_boxes", masks)


def _predictions(output: Any) -> InstanceData:
    if not isinstance(output, Mapping) or "boxes" not in output:
        keys = f" with keys {sorted(output)}" if isinstance(output, Mapping) else ""
        raise TypeError("DetVisualizationHook: a model output must be kiln's detection dict with 'boxes', "
                        f"'scores', 'labels' per image, got {type(output).__name__}{keys}.")
    boxes = _tensor(output["boxes"], torch.float32).reshape(-1, 4)
    n = len(boxes)
    scores = _tensor(output["scores"], torch.float32).reshape(-1) if "scores" in output else torch.ones(n)
    labels = (_tensor(output["labels"], torch.int64).reshape(-1) if "labels" in output
              else torch.zeros(n, dtype=torch.int64))
    pred = InstanceData(bboxes=boxes, scores=scores, labels=labels)
    if output.get("masks") is not None:  # bool N×H×W, original pixels like the boxes
        pred.masks = _tensor(output["masks"], torch.bool)
    return pred


def drawable_sample(sample: Mapping[str, Any], output: Any) -> DrawableSample:
    """The image path and a ``DetDataSample`` (ground truth + predictions, original pixels) for one element.

    Args:
        sample: one batch element in any of kiln's three forms.
        output: the model's output for it (``{'boxes', 'scores', 'labels'}`` and optional ``'masks'``,
            original pixels).
    """
    if not isinstance(sample, Mapping):
        raise TypeError(f"DetVisualizationHook: a batch element must be a dict, got {type(sample).__name__}.")
    if "data_samples" in sample:
        path, gt = _from_mmdet3(sample)
        hint = "data_samples.img_path (keep 'img_path' in PackDetInputs(meta_keys=...))"
    elif "img_metas" in sample or "img" in sample:
        path, gt = _from_mmdet2(sample)
        hint = "img_metas['filename'] (keep 'filename' in Collect(meta_keys=...))"
    elif "image" in sample or "file_name" in sample:
        path, gt = _from_detectron2(sample)
        hint = "'file_name' (the dataset dict's key, which DatasetMapper keeps)"
    else:
        raise KeyError(f"DetVisualizationHook: batch element with keys {sorted(sample)} is in no known form; "
                       "expected 'inputs'+'data_samples' (MMDetection 3.x), 'img'+'img_metas' (2.x) or "
                       "'image' (Detectron2).")
    if not path:
        raise KeyError(f"DetVisualizationHook draws on the image file, but this batch element has no path: "
                       f"expected {hint}.")
    data_sample = DetDataSample(pred_instances=_predictions(output))
    if gt is not None:
        data_sample.gt_instances = gt
    return DrawableSample(img_path=str(path), data_sample=data_sample)


def dataset_meta(dataset: Any) -> dict[str, Any] | None:
    """``classes``/``palette`` of a dataset (3.x ``metainfo``, 2.x ``CLASSES``; through wrappers), if any."""
    for _ in range(4):  # wrappers (RepeatDataset, ...) keep the real dataset in .dataset
        if dataset is None:
            return None
        meta = getattr(dataset, "metainfo", None)
        if isinstance(meta, Mapping) and meta.get("classes") is not None:
            return dict(meta)
        classes = getattr(dataset, "CLASSES", None)
        if classes is not None:
            return {"classes": tuple(classes)}
        dataset = getattr(dataset, "dataset", None)
    return None
