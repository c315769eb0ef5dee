"""``PascalVOCDetectionEvaluator``: Pascal VOC box AP as Detectron2 reports it, for a catalog name.

Detectron2's numbers, not MMDetection's: for every IoU threshold 0.50, 0.55, ..., 0.95 the VOC
devkit's per-class AP (11-point when the dataset's ``year`` is 2007, area under the curve
otherwise) is averaged over classes; ``bbox/AP`` is the mean over the thresholds, ``bbox/AP50``
and ``bbox/AP75`` the values at 0.50 and 0.75, all in percent. The facts it follows, so the
numbers match: the ground truth is every image of the split file (``ImageSets/Main/<split>.txt``),
read from the xml files (not from the images that were run); predictions are written as the
devkit's text (score to 3 decimals, 1-based box corners to 1 decimal); a detection is a true
positive when its IoU with a not yet matched object is *strictly* greater than the threshold
(inclusive pixel widths, ``x1 - x0 + 1``); a detection matched to a ``difficult`` object counts
neither way.

Example::

    >>> ev = PascalVOCDetectionEvaluator('voc_2007_test')  # doctest: +SKIP
    >>> inference_on_dataset(model, loader, ev)['bbox/AP50']  # doctest: +SKIP
"""

from __future__ import annotations

import logging
import os
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import numpy as np

from kiln.registry import EVALUATORS

from .coco_evaluation import _distributed_run
from .coco_results import unpack_prediction
from .evaluator import DatasetEvaluator
from .metric_args import text_table

__all__ = ["PascalVOCDetectionEvaluator", "voc_devkit_ap"]

logger = logging.getLogger(__name__)

_THRESHOLDS = tuple(range(50, 100, 5))  # IoU in percent


def voc_devkit_ap(rec: np.ndarray, prec: np.ndarray, use_07_metric: bool) -> float:
    """AP of one precision/recall curve as the VOC devkit computes it (11-point for VOC2007)."""
    rec = np.asarray(rec, dtype=np.float64)
    prec = np.asarray(prec, dtype=np.float64)
    if use_07_metric:
        ap = 0.0
        for t in np.arange(0.0, 1.1, 0.1):
            reached = prec[rec >= t]
            ap += (float(np.max(reached)) if reached.size else 0.0) / 11.0
        return ap
    mrec = np.concatenate(([0.0], rec, [1.0]))
    mpre = np.concatenate(([0.0], prec, [0.0]))
    mpre = np.maximum.accumulate(mpre[::-1])[::-1]
    idx = np.where(mrec[1:] != mrec[:-1])[0]
    return float(np.sum((mrec[idx + 1] - mrec[idx]) * mpre[idx + 1]))


def _class_ap(dets: list[tuple], gts: dict[str, dict[str, np.ndarray]],
              npos: int, thresholds: Sequence[float], use_07_metric: bool) -> list[float]:
    """One class: the AP at each IoU threshold. ``dets`` are (image id, score, 1-based box)."""
    if dets:
        image_ids = [d[0] for d in dets]
        confidence = np.asarray([d[1] for d in dets], dtype=np.float64)
        boxes = np.asarray([d[2:] for d in dets], dtype=np.float64)
        order = np.argsort(-confidence)  # the devkit's sort (quicksort: ties as it orders them)
        boxes = boxes[order]
        image_ids = [image_ids[i] for i in order]
    else:
        image_ids, boxes = [], np.zeros((0, 4))
    # IoU of each detection with the objects of its image, once for all thresholds.
    best: list[tuple[float, int]] = []
    for img, bb in zip(image_ids, boxes):
        gt = gts[img]["bbox"]
        if gt.size == 0:
            best.append((-np.inf, -1))
            continue
        iw = np.maximum(np.minimum(gt[:, 2], bb[2]) - np.maximum(gt[:, 0], bb[0]) + 1.0, 0.0)
        ih = np.maximum(np.minimum(gt[:, 3], bb[3]) - np.maximum(gt[:, 1], bb[1]) + 1.0, 0.0)
        inters = iw * ih
        uni = ((bb[2] - bb[0] + 1.0) * (bb[3] - bb[1] + 1.0)
               + (gt[:, 2] - gt[:, 0] + 1.0) * (gt[:, 3] - gt[:, 1] + 1.0) - inters)
        overlaps = inters / uni
        best.append((float(overlaps.max()), int(overlaps.argmax())))
    aps = []
    for thr in thresholds:
        matched = {img: np.zeros(len(g["difficult"]), dtype=bool) for img, g in gts.items()}
        tp = np.zeros(len(image_ids))
        fp = np.zeros(len(image_ids))
        for d, (img, (ovmax, jmax)) in enumerate(zip(image_ids, best)):
            if ovmax > thr:
                if gts[img]["difficult"][jmax]:
                    continue
                if not matched[img][jmax]:
                    tp[d] = 1.0
                    matched[img][jmax] = True
                else:
                    fp[d] = 1.0
            else:
                fp[d] = 1.0
        fp, tp = np.cumsum(fp), np.cumsum(tp)
        with np.errstate(divide="ignore", invalid="ignore"):  # a class without objects: as the devkit
            rec = tp / float(npos)
        prec = tp / np.maximum(tp + fp, np.finfo(np.float64).eps)
        aps.append(voc_devkit_ap(rec, prec, use_07_metric))
    return aps


@EVALUATORS.register_module()
class PascalVOCDetectionEvaluator(DatasetEvaluator):
    """Detectron2's Pascal VOC evaluator for a dataset registered by name (see the module docstring).

    Args:
        dataset_name: a catalog name whose metadata has ``dirname``, ``split``, ``year`` (2007 or
            2012) and ``thing_classes`` (``voc_2007_test``, or one registered with
            :func:`kiln.data.register_pascal_voc`).
        distributed: gather the other ranks' predictions before evaluating.

    ``evaluate()`` returns ``{'bbox/AP', 'bbox/AP50', 'bbox/AP75'}`` in percent.
    """

    def __init__(self, dataset_name: str, *, distributed: bool = True) -> None:
        from kiln.data import MetadataCatalog

        meta = MetadataCatalog.get(dataset_name)
        missing = [k for k in ("dirname", "split", "year", "thing_classes") if meta.get(k) is None]
        if missing:
            raise ValueError(
                f"PascalVOCDetectionEvaluator('{dataset_name}'): the dataset's metadata has no {missing}; it "
                "needs dirname, split, year and thing_classes. Register the dataset with "
                "register_pascal_voc(name, dirname, split, year, class_names), or use a built-in VOC name "
                "(voc_2007_test, ...).")
        if int(meta.year) not in (2007, 2012):
            raise ValueError(f"PascalVOCDetectionEvaluator('{dataset_name}'): year={meta.year!r}; Pascal "
                             "VOC's AP is defined for year 2007 (11-point) or 2012 (area).")
        self._dataset_name = dataset_name
        self._dirname = str(meta.dirname)
        self._image_set_path = os.path.join(self._dirname, "ImageSets", "Main", f"{meta.split}.txt")
        self._class_names = list(meta.thing_classes)
        self._is_2007 = int(meta.year) == 2007
        self._distributed = distributed
        self.reset()

    def reset(self) -> None:
        """Drop the predictions collected so far."""
        # class id -> (image id, score, x0, y0, x1, y1) as the devkit's result files hold them
        self._predictions: dict[int, list[tuple]] = defaultdict(list)

    def process(self, inputs: Sequence[Any], outputs: Sequence[Any]) -> None:
        """Keep each detection as the devkit's text would (1-based corners, rounded)."""
        from kiln.structures import sample_image_id

        if len(inputs) != len(outputs):
            raise ValueError(f"PascalVOCDetectionEvaluator.process: {len(inputs)} inputs but {len(outputs)} "
                             "outputs; the model must return one prediction per image of the batch.")
        for sample, output in zip(inputs, outputs):
            image_id = str(sample_image_id(sample))
            boxes, scores, labels = unpack_prediction(output)
            for (x0, y0, x1, y1), score, cls in zip(boxes.tolist(), scores.tolist(), labels.tolist()):
                # VOC's 1-based first pixel: the inverse of the loader's "- 1".
                self._predictions[int(cls)].append((
                    image_id, float(f"{score:.3f}"), float(f"{x0 + 1:.1f}"), float(f"{y0 + 1:.1f}"),
                    float(f"{x1:.1f}"), float(f"{y1:.1f}")))

    def evaluate(self) -> dict[str, float]:
        """Gather predictions (distributed), compute AP on the main rank, share the numbers."""
        per_rank = [self._predictions]
        if _distributed_run(self._distributed):
            from kiln.engine import comm

            gathered = comm.gather(dict(self._predictions), dst=0)
            per_rank = gathered if comm.is_main_process() else []
        results: dict[str, float] = {}
        if per_rank:
            predictions: dict[int, list[tuple]] = defaultdict(list)
            for rank_predictions in per_rank:
                for cls, dets in rank_predictions.items():
                    predictions[cls].extend(dets)
            results = self._compute(predictions)
        if _distributed_run(self._distributed):
            from kiln.engine import comm

            results = comm.all_gather(results)[0]
        return results

    def _ground_truth(self) -> tuple[list[str], dict[str, dict[str, Any]]]:
        from kiln.data.datasets.pascal_voc import parse_voc_xml, read_voc_split

        ids = read_voc_split(self._image_set_path)
        records = {}
        for image_id in ids:
            parsed = parse_voc_xml(os.path.join(self._dirname, "Annotations", image_id + ".xml"),
                                   self._class_names, skip_unknown=True)
            records[image_id] = parsed["objects"]
        return ids, records

    def _compute(self, predictions: dict[int, list[tuple]]) -> dict[str, float]:
        ids, records = self._ground_truth()
        unknown = sorted({d[0] for dets in predictions.values() for d in dets} - set(records))
        if unknown:
            raise KeyError(
                f"PascalVOCDetectionEvaluator('{self._dataset_name}'): predicted image ids {unknown[:5]} "
                f"are not in '{self._image_set_path}'; evaluate the dataset the evaluator names.")
        bad = sorted(c for c in predictions if not 0 <= c < len(self._class_names))
        if bad:
            raise ValueError(f"PascalVOCDetectionEvaluator: predicted class {bad[0]} but the dataset has "
                             f"{len(self._class_names)} classes; check the head's num_classes.")
        logger.info("Evaluating %s using %d metric (%d images). Note that results do not use the official "
                    "Matlab API.", self._dataset_name, 2007 if self._is_2007 else 2012, len(ids))
        thresholds = [t / 100.0 for t in _THRESHOLDS]
        aps: dict[int, list[float]] = defaultdict(list)
        for cls, name in enumerate(self._class_names):
            gts, npos = {}, 0
            for image_id, objs in records.items():
                # 1-based corners again (the parser made them 0-based), as the devkit reads the xml.
                mine = [o for o in objs if o["label"] == cls]
                bbox = np.asarray([[o["bbox"][0] + 1, o["bbox"][1] + 1, o["bbox"][2], o["bbox"][3]]
                                   for o in mine], dtype=np.float64).reshape(-1, 4)
                difficult = np.asarray([bool(o["difficult"]) for o in mine], dtype=bool)
                gts[image_id] = {"bbox": bbox, "difficult": difficult}
                npos += int((~difficult).sum())
            if npos == 0:
                logger.warning("PascalVOCDetectionEvaluator: class '%s' has no (non-difficult) object in %s; "
                               "its AP is undefined.", name, self._image_set_path)
            for thr, ap in zip(_THRESHOLDS, _class_ap(predictions.get(cls, []), gts, npos, thresholds,
                                                       self._is_2007)):
                aps[thr].append(ap * 100)
        mean_ap = {thr: float(np.mean(v)) for thr, v in aps.items()}
        rows = [(n, f"{aps[50][i]:.3f}") for i, n in enumerate(self._class_names)]
        logger.info("Per-class AP50 (%%):\n%s", text_table(("class", "AP50"), rows))
        return {"bbox/AP": float(np.mean(list(mean_ap.values()))), "bbox/AP50": mean_ap[50],
                "bbox/AP75": mean_ap[75]}

