"""Pascal VOC style mean AP and proposal recall, in numpy.

These are the quantities MMDetection's ``eval_map`` / ``eval_recalls`` report (the facts: VOC's
legacy pixel convention where a box ``[x0, y0, x1, y1]`` is ``x1 - x0 + 1`` wide, greedy matching
of detections by descending score, ignored ground truth that neither counts as a miss nor turns a
detection into a false positive, 11-point or area-under-curve AP), written for kiln's evaluators
(:class:`~kiln.evaluation.voc_metric.VOCMetric`, ``proposal_fast`` in
:class:`~kiln.evaluation.coco_metric.CocoMetric`).

Example::

    >>> import numpy as np
    >>> gt = [dict(bboxes=np.array([[0., 0., 9., 9.]]), labels=np.array([0]))]
    >>> det = [[np.array([[0., 0., 9., 9., 0.9]])]]
    >>> mean_ap, _ = eval_map(det, gt, iou_thr=0.5)
    >>> round(mean_ap, 3)
    1.0
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

__all__ = ["bbox_overlaps", "average_precision", "eval_map", "eval_recalls", "EVAL_MODES"]

EVAL_MODES = ("area", "11points")
_EPS = float(np.finfo(np.float32).eps)


def bbox_overlaps(boxes1: np.ndarray, boxes2: np.ndarray, legacy: bool = False) -> np.ndarray:
    """IoU matrix (len(boxes1) × len(boxes2)) of XYXY boxes.

    ``legacy=True`` uses VOC's inclusive pixel convention (width ``x1 - x0 + 1``), the one
    MMDetection uses for VOC mAP and recall.
    """
    b1 = np.asarray(boxes1, dtype=np.float64).reshape(-1, 4)
    b2 = np.asarray(boxes2, dtype=np.float64).reshape(-1, 4)
    if len(b1) == 0 or len(b2) == 0:
        return np.zeros((len(b1), len(b2)), dtype=np.float64)
    extra = 1.0 if legacy else 0.0
    area1 = (b1[:, 2] - b1[:, 0] + extra) * (b1[:, 3] - b1[:, 1] + extra)
    area2 = (b2[:, 2] - b2[:, 0] + extra) * (b2[:, 3] - b2[:, 1] + extra)
    lt = np.maximum(b1[:, None, :2], b2[None, :, :2])
    rb = np.minimum(b1[:, None, 2:], b2[None, :, 2:])
    wh = np.clip(rb - lt + extra, 0, None)
    inter = wh[..., 0] * wh[..., 1]
    union = np.maximum(area1[:, None] + area2[None, :] - inter, _EPS)
    return inter / union


def average_precision(recalls: np.ndarray, precisions: np.ndarray, mode: str = "area") -> float:
    """AP of one precision/recall curve (detections sorted by descending score).

    ``'area'``: the area under the curve made monotonically non-increasing (VOC2010+);
    ``'11points'``: the mean of the best precision at recall >= 0, 0.1, ..., 1 (VOC2007).
    """
    recalls = np.asarray(recalls, dtype=np.float64).reshape(-1)
    precisions = np.asarray(precisions, dtype=np.float64).reshape(-1)
    if mode == "area":
        mrec = np.concatenate([[0.0], recalls, [1.0]])
        mpre = np.concatenate([[0.0], precisions, [0.0]])
        mpre = np.maximum.accumulate(mpre[::-1])[::-1]  # precision envelope
        steps = np.where(mrec[1:] != mrec[:-1])[0]
        return float(np.sum((mrec[steps + 1] - mrec[steps]) * mpre[steps + 1]))
    if mode == "11points":
        total = 0.0
        for thr in np.arange(0, 1 + 1e-3, 0.1):
            reached = precisions[recalls >= thr]
            total += float(reached.max()) if reached.size else 0.0
        return total / 11
    raise ValueError(f"eval_mode must be one of {EVAL_MODES}, got {mode!r}.")


def _tp_fp(dets: np.ndarray, gts: np.ndarray, gts_ignore: np.ndarray, iou_thr: float,
           legacy: bool) -> tuple[np.ndarray, np.ndarray]:
    """True/false-positive flags of one image's detections of one class (in the given order)."""
    num_dets = len(dets)
    tp = np.zeros(num_dets, dtype=np.float64)
    fp = np.zeros(num_dets, dtype=np.float64)
    all_gts = np.concatenate([gts.reshape(-1, 4), gts_ignore.reshape(-1, 4)])
    ignored = np.concatenate([np.zeros(len(gts), bool), np.ones(len(gts_ignore), bool)])
    if len(all_gts) == 0:
        fp[:] = 1
        return tp, fp
    ious = bbox_overlaps(dets[:, :4], all_gts, legacy=legacy)
    best_iou = ious.max(axis=1)
    best_gt = ious.argmax(axis=1)
    covered = np.zeros(len(all_gts), dtype=bool)
    for i in np.argsort(-dets[:, 4], kind="stable"):
        if best_iou[i] >= iou_thr:
            g = best_gt[i]
            if ignored[g]:
                continue  # a detection of an ignored (difficult) object is neither right nor wrong
            if covered[g]:
                fp[i] = 1  # a duplicate of an object already found
            else:
                covered[g] = True
                tp[i] = 1
        else:
            fp[i] = 1
    return tp, fp


def eval_map(det_results: Sequence[Sequence[np.ndarray]], annotations: Sequence[Mapping[str, Any]],
             iou_thr: float = 0.5, eval_mode: str = "area", legacy: bool = True
             ) -> tuple[float, list[dict[str, Any]]]:
    """Mean AP over classes at one IoU threshold.

    Args:
        det_results: per image, per class (contiguous label) a ``K×5`` array
            ``[x0, y0, x1, y1, score]``.
        annotations: per image ``dict(bboxes N×4, labels N, bboxes_ignore M×4, labels_ignore M)``;
            ``labels_ignore`` absent means the ignored boxes belong to no class (they are dropped,
            as MMDetection does).
        iou_thr: the IoU a detection needs with a ground-truth box to count as found.
        eval_mode: ``'area'`` or ``'11points'`` (:func:`average_precision`).
        legacy: VOC's inclusive pixel convention (``x1 - x0 + 1``).

    Returns:
        ``(mean_ap, per_class)``: the mean over classes that have ground truth (0.0 when none
        has), and per class ``dict(num_gts, num_dets, recall, precision, ap)``.
    """
    if eval_mode not in EVAL_MODES:
        raise ValueError(f"eval_mode must be one of {EVAL_MODES}, got {eval_mode!r}.")
    if len(det_results) != len(annotations):
        raise ValueError(f"eval_map: {len(det_results)} images of detections but {len(annotations)} of "
                         "annotations; they must correspond one to one.")
    num_classes = len(det_results[0]) if det_results else 0
    # Per image once (not once per class): the boxes and labels as arrays.
    images = []
    for ann in annotations:
        labels = np.asarray(ann["labels"]).reshape(-1)
        boxes = np.asarray(ann["bboxes"], dtype=np.float64).reshape(-1, 4)
        if ann.get("labels_ignore") is not None:
            ign_labels = np.asarray(ann["labels_ignore"]).reshape(-1)
            ign_boxes = np.asarray(ann["bboxes_ignore"], dtype=np.float64).reshape(-1, 4)
        else:  # ignored boxes of unknown class are dropped
            ign_labels, ign_boxes = np.zeros(0, np.int64), np.zeros((0, 4))
        images.append((boxes, labels, ign_boxes, ign_labels))
    per_class = []
    for c in range(num_classes):
        tps, fps, scores = [], [], []
        num_gts = 0
        for dets_of_image, (boxes, labels, ign_boxes, ign_labels) in zip(det_results, images):
            dets = np.asarray(dets_of_image[c], dtype=np.float64).reshape(-1, 5)
            gts = boxes[labels == c]
            num_gts += len(gts)
            if len(dets) == 0:
                continue
            tp, fp = _tp_fp(dets, gts, ign_boxes[ign_labels == c], iou_thr, legacy)
            tps.append(tp)
            fps.append(fp)
            scores.append(dets[:, 4])
        score = np.concatenate(scores) if scores else np.zeros(0)
        order = np.argsort(-score, kind="stable")
        tp = np.cumsum(np.concatenate(tps)[order]) if tps else np.zeros(0)
        fp = np.cumsum(np.concatenate(fps)[order]) if fps else np.zeros(0)
        recall = tp / max(num_gts, _EPS)
        precision = tp / np.maximum(tp + fp, _EPS)
        per_class.append(dict(num_gts=num_gts, num_dets=len(score), recall=recall, precision=precision,
                              ap=average_precision(recall, precision, eval_mode)))
    aps = [r["ap"] for r in per_class if r["num_gts"] > 0]
    return (float(np.mean(aps)) if aps else 0.0), per_class


def eval_recalls(gts: Sequence[np.ndarray], proposals: Sequence[np.ndarray], proposal_nums: Sequence[int],
                 iou_thrs: Sequence[float], legacy: bool = False) -> np.ndarray:
    """Recall of ground-truth boxes by the top proposals, ``len(proposal_nums) × len(iou_thrs)``.

    ``proposals[i]`` is ``K×4`` (taken in the given order) or ``K×5`` (sorted by the score
    column first). Each ground-truth box is paired with at most one proposal among the top ``n``:
    repeatedly the pair with the highest IoU left is taken and both leave the pool; a box is
    recalled at threshold ``t`` when its pair's IoU is at least ``t``.
    """
    proposal_nums = [int(n) for n in proposal_nums]
    iou_thrs = np.asarray(list(iou_thrs), dtype=np.float64).reshape(-1)
    if len(gts) != len(proposals):
        raise ValueError(f"eval_recalls: {len(gts)} images of ground truth but {len(proposals)} of "
                         "proposals.")
    pair_ious = [[] for _ in proposal_nums]  # per proposal number: the IoU of every gt's pair
    for gt, props in zip(gts, proposals):
        props = np.asarray(props, dtype=np.float64)
        props = props.reshape(-1, props.shape[-1] if props.ndim == 2 else 4)
        if props.shape[1] == 5:
            props = props[np.argsort(-props[:, 4], kind="stable")]
        gt = np.asarray(gt, dtype=np.float64).reshape(-1, 4)
        all_ious = bbox_overlaps(gt, props[:max(proposal_nums), :4], legacy=legacy)
        for k, n in enumerate(proposal_nums):
            ious = all_ious[:, :n].copy()
            best = np.zeros(len(gt))
            if ious.size:
                for j in range(len(gt)):
                    g, p = np.unravel_index(np.argmax(ious), ious.shape)
                    best[j] = max(ious[g, p], 0.0)
                    ious[g, :] = -1
                    ious[:, p] = -1
            pair_ious[k].append(best)
    total = sum(len(np.asarray(g).reshape(-1, 4)) for g in gts)
    recalls = np.zeros((len(proposal_nums), len(iou_thrs)))
    for k in range(len(proposal_nums)):
        ious = np.concatenate(pair_ious[k]) if pair_ious[k] else np.zeros(0)
        for t, thr in enumerate(iou_thrs):
            recalls[k, t] = (ious >= thr).sum() / max(float(total), _EPS) if total else 0.0
    return recalls
