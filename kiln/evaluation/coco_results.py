"""Model outputs -> COCO result dicts (``bbox`` XYWH, ``score``, ``category_id`` and, for instance
segmentation, ``segmentation`` as a compressed RLE).

The evaluators accept one prediction per image in any of kiln's output forms: the detector's dict
(``boxes``, ``scores``, ``labels``, optional ``masks``), Detectron2's ``{'instances': Instances}``
(``pred_boxes``, ``scores``, ``pred_classes``, optional ``pred_masks``) and MMDetection 3.x's
``DetDataSample`` (``pred_instances`` with ``bboxes``, ``scores``, ``labels``, optional ``masks``).
Masks are bool ``(N, H, W)`` at the original image size.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

__all__ = ["instances_to_coco_json", "unpack_prediction", "prediction_masks", "encode_masks"]


def _to_numpy(x: Any) -> np.ndarray:
    if hasattr(x, "detach"):  # torch tensor, without importing torch here
        return x.detach().cpu().numpy()
    if hasattr(x, "tensor") and hasattr(x.tensor, "detach"):  # kiln Boxes / BitMasks
        return x.tensor.detach().cpu().numpy()
    if hasattr(x, "to_ndarray"):  # BitmapMasks / PolygonMasks
        return x.to_ndarray()
    return np.asarray(x)


def _fields(output: Any) -> tuple[Any, Any, Any, Any]:
    """(boxes, scores, labels, masks-or-None) of one prediction in any accepted form."""
    if isinstance(output, Mapping) and "instances" in output:  # Detectron2-style output
        inst = output["instances"]
        masks = inst.pred_masks if inst.has("pred_masks") else None
        return inst.pred_boxes, inst.scores, inst.pred_classes, masks
    pred = getattr(output, "pred_instances", None) if not isinstance(output, Mapping) else None
    if pred is not None:  # MMDetection 3.x DetDataSample
        masks = pred.masks if "masks" in pred.keys() else None
        return pred.bboxes, pred.scores, pred.labels, masks
    if not isinstance(output, Mapping) or not {"boxes", "scores", "labels"} <= set(output):
        keys = sorted(output) if isinstance(output, Mapping) else type(output).__name__
        raise KeyError(
            f"COCOEvaluator: a model output must be a dict with 'boxes' (N×4 XYXY, original-image "
            f"pixels), 'scores' (N), 'labels' (N, contiguous 0-based) and optionally 'masks' (N×H×W), or "
            f"with 'instances', or a DetDataSample with pred_instances; got {keys}. Check that the model "
            f"is in eval mode (model.eval()) when producing outputs."
        )
    return output["boxes"], output["scores"], output["labels"], output.get("masks")


def unpack_prediction(output: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(boxes XYXY N×4, scores N, labels N) from any output form the evaluators accept."""
    boxes, scores, labels, _ = _fields(output)
    return (_to_numpy(boxes).reshape(-1, 4), _to_numpy(scores).reshape(-1), _to_numpy(labels).reshape(-1))


def prediction_masks(output: Any) -> np.ndarray | None:
    """The prediction's bool ``(N, H, W)`` masks, or ``None`` when it has none."""
    masks = _fields(output)[3]
    if masks is None:
        return None
    arr = _to_numpy(masks)
    if arr.ndim != 3:
        raise ValueError(f"COCOEvaluator: predicted masks must be N×H×W, got shape {arr.shape}.")
    return arr.astype(bool, copy=False)


def encode_masks(masks: np.ndarray) -> list[dict[str, Any]]:
    """Compressed RLE (pycocotools) of each ``(H, W)`` mask of ``masks``, with ``counts`` as text so
    the result json can be written."""
    from pycocotools import mask as mask_utils

    rles = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # pycocotools vs numpy 2, harmless
        for m in masks:
            # pycocotools wants H×W×1, column-major, uint8; one mask at a time is faster than one
            # transposed copy of the whole stack (benchmarks/mask_data.py).
            rle = mask_utils.encode(np.asfortranarray(m[:, :, None], dtype=np.uint8))[0]
            rle["counts"] = rle["counts"].decode("ascii")
            rles.append(rle)
    return rles


def instances_to_coco_json(output: Any, image_id: int, cat_ids: Sequence[int],
                           with_masks: bool | None = None) -> list[dict[str, Any]]:
    """Convert one image's predictions to COCO result dicts.

    Boxes go from XYXY to COCO's XYWH; contiguous labels ``l`` become ``cat_ids[l]``. Masks, when the
    prediction has them (or ``with_masks=True``, which then requires them), become ``segmentation`` RLEs.

    Example::

        >>> instances_to_coco_json({'boxes': [[0, 0, 10, 5]], 'scores': [0.9], 'labels': [0]},
        ...                        image_id=7, cat_ids=[3])
        [{'image_id': 7, 'category_id': 3, 'bbox': [0.0, 0.0, 10.0, 5.0], 'score': 0.9}]
    """
    boxes, scores, labels = unpack_prediction(output)
    masks = prediction_masks(output) if with_masks is not False else None
    if with_masks and masks is None:
        raise KeyError(f"COCOEvaluator: 'segm' is evaluated but the prediction for image {image_id} has no "
                       "masks ('masks' / instances.pred_masks / pred_instances.masks); evaluate 'bbox' only "
                       "or use a model with a mask head.")
    if masks is not None and len(masks) != len(boxes):
        raise ValueError(f"COCOEvaluator: image {image_id} has {len(boxes)} boxes but {len(masks)} masks.")
    if len(boxes) == 0:
        return []
    labels = labels.astype(np.int64)
    bad = labels[(labels < 0) | (labels >= len(cat_ids))]
    if bad.size:
        raise ValueError(
            f"COCOEvaluator: image {image_id} has predicted label {int(bad[0])}, but the dataset "
            f"has {len(cat_ids)} categories (contiguous labels 0..{len(cat_ids) - 1}). Check the "
            f"model's num_classes against the dataset's classes."
        )
    xywh = boxes.astype(np.float64)
    xywh[:, 2:] = xywh[:, 2:] - xywh[:, :2]
    # Full precision (no rounding): the numbers must equal pycocotools' on the raw detections.
    cats = np.asarray(cat_ids, dtype=np.int64)[labels].tolist()
    results = [
        {"image_id": image_id, "category_id": c, "bbox": b, "score": s}
        for b, s, c in zip(xywh.tolist(), scores.astype(np.float64).tolist(), cats)
    ]
    if masks is not None:
        for res, rle in zip(results, encode_masks(masks)):
            res["segmentation"] = rle
    return results
