"""``CocoMetric``: COCO box/mask AP and proposal recall with MMDetection 3.x's arguments, names and scale.

MMDetection 3.x configs write ``val_evaluator = dict(type='CocoMetric', ann_file=...,
metric='bbox')`` and ``default_hooks.checkpoint.save_best='coco/bbox_mAP'``. This evaluator
reports exactly those keys, as fractions rounded to 3 decimals (``coco/bbox_mAP = 0.374``), while
kiln's own :class:`~kiln.evaluation.COCOEvaluator` keeps ``bbox/AP`` in percent. The COCO
plumbing (prediction conversion, gathering across ranks, pycocotools) is COCOEvaluator's.
"""

from __future__ import annotations

import contextlib
import io
import itertools
import json
import logging
import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from kiln.registry import EVALUATORS

from .coco_evaluation import COCOEvaluator, _load_coco
from .dataset_gt import _unwrap, coco_gt_of_dataset, dataset_annotations, dataset_class_names
from .mean_ap import eval_recalls
from .metric_args import check_backend_args, check_collect_device, text_table

__all__ = ["CocoMetric", "COCO_METRIC_ITEMS", "coco_dict_from_dataset"]

logger = logging.getLogger(__name__)

# MMDetection's metric item names -> index in pycocotools' COCOeval.stats.
COCO_METRIC_ITEMS = {
    "mAP": 0, "mAP_50": 1, "mAP_75": 2, "mAP_s": 3, "mAP_m": 4, "mAP_l": 5,
    "AR@100": 6, "AR@300": 7, "AR@1000": 8, "AR_s@1000": 9, "AR_m@1000": 10, "AR_l@1000": 11,
}
_BBOX_ITEMS = ("mAP", "mAP_50", "mAP_75", "mAP_s", "mAP_m", "mAP_l")
_PROPOSAL_ITEMS = ("AR@100", "AR@300", "AR@1000", "AR_s@1000", "AR_m@1000", "AR_l@1000")
_METRICS = ("bbox", "segm", "proposal", "proposal_fast")


def coco_dict_from_dataset(dataset: Any) -> tuple[dict[str, Any], dict[Any, int], list[str]]:
    """A COCO-format ground truth built from a dataset's annotations (e.g. a VOC dataset).

    Categories get ids ``0..C-1`` (the contiguous labels); ignored boxes of a known class become
    ``iscrowd=1`` annotations (COCOeval then neither counts them as misses nor detections on them
    as false positives), as MMDetection's CocoMetric converts its ground truth when given no
    ``ann_file``. Integer image ids are kept; other ids (VOC's ``'000001'``) are numbered
    ``0..N-1``. Returns ``(coco_dict, image_id -> COCO id, class_names)``.
    """
    names = dataset_class_names(dataset)
    if not names:
        raise ValueError(f"CocoMetric: {type(dataset).__name__} has no class names (metainfo['classes'] or "
                         "CLASSES), so its ground truth cannot be converted to COCO; give ann_file=.")
    gts = dataset_annotations(dataset)
    keep_ids = all(isinstance(k, (int, np.integer)) and not isinstance(k, bool) for k in gts)
    id_map = {k: (int(k) if keep_ids else n) for n, k in enumerate(gts)}
    images, anns = [], []
    for image_id, gt in gts.items():
        coco_id = id_map[image_id]
        images.append({"id": coco_id, "width": gt.width, "height": gt.height, "file_name": str(image_id)})
        rows = [(b, lab, 0) for b, lab in zip(gt.bboxes.tolist(), gt.labels.tolist())]
        if gt.labels_ignore is not None:  # an ignored box of no known class is dropped, as in MMDetection
            rows += [(b, lab, 1) for b, lab in zip(gt.bboxes_ignore.tolist(), gt.labels_ignore.tolist())]
        for (x0, y0, x1, y1), label, crowd in rows:
            w, h = x1 - x0, y1 - y0
            anns.append({"id": len(anns) + 1, "image_id": coco_id, "category_id": int(label),
                         "bbox": [x0, y0, w, h], "area": w * h, "iscrowd": crowd})
    cats = [{"id": i, "name": n} for i, n in enumerate(names)]
    return {"images": images, "annotations": anns, "categories": cats}, id_map, list(names)


@EVALUATORS.register_module()
class CocoMetric(COCOEvaluator):
    """COCO box AP (``'bbox'``), mask AP (``'segm'``) and proposal recall (``'proposal'``,
    ``'proposal_fast'``), as MMDetection 3.x's ``CocoMetric`` reports them.

    Args:
        ann_file: COCO instances json of the evaluated split. Without it the ground truth is the
            dataset's (its pycocotools index when it is a CocoDataset, else its annotations
            converted by :func:`coco_dict_from_dataset`).
        metric: ``'bbox'``, ``'segm'`` (predictions need masks, the ground truth ``segmentation``),
            ``'proposal'``, ``'proposal_fast'`` or a list.
        classwise: log a per-class AP table and report ``{prefix}/{class}_precision``.
        proposal_nums: COCOeval's ``maxDets`` (AP uses the last), and the ``AR@n`` numbers.
        iou_thrs: COCOeval's IoU thresholds; default 0.50:0.05:0.95.
        metric_items: which of :data:`COCO_METRIC_ITEMS` to report (default ``mAP``... for
            ``bbox``, ``AR@100``... for ``proposal``).
        format_only: only write ``<outfile_prefix>.bbox.json`` (and ``.segm.json`` with ``'segm'``;
            COCO result format, e.g. for the test server) and return ``{}``; needs ``outfile_prefix``.
        outfile_prefix: also write the detections to ``<outfile_prefix>.bbox.json`` (boxes) and, with
            ``'segm'``, ``<outfile_prefix>.segm.json`` (boxes and RLE masks), as MMDetection does.
        file_client_args: refused, as in MMDetection 3.x (use ``backend_args``).
        backend_args: ``None`` or a local backend.
        collect_device: ``'cpu'``/``'gpu'``: how MMEngine gathers across ranks; kiln gathers the
            same results either way.
        prefix: key prefix; default ``'coco'``.
        sort_categories: accepted, changes nothing: MMDetection sorts the file's categories by id
            so its labels follow the dataset's (Objects365); kiln always matches the dataset's
            classes to categories by name, and orders categories by id without dataset classes.
        use_mp_eval: MMDetection's multi-process COCOeval (a speed option; the numbers are
            COCOeval's). kiln runs pycocotools in one process; the results are the same.
        dataset: the evaluated dataset (filled in by :func:`~kiln.evaluation.build_evaluator`).
        distributed: gather the other ranks' predictions before evaluating.

    ``evaluate()`` returns ``{prefix}/bbox_mAP``, ``bbox_mAP_50``, ``bbox_mAP_75``,
    ``bbox_mAP_s/m/l`` (pycocotools' ``stats[0..5]`` rounded to 3 decimals; ``-1.0`` where
    pycocotools cannot define it), the same ``segm_mAP``... for ``segm`` (boxes left out of the
    results so sizes are mask areas, as MMDetection does), ``{prefix}/AR@100``... for
    ``proposal``, and unrounded
    ``{prefix}/AR@n`` (mean recall over ``iou_thrs``) for ``proposal_fast``. Only the processed
    images are evaluated (MMDetection evaluates every image of ``ann_file``; the two agree when the
    whole split is evaluated).

    Example::

        >>> ev = CocoMetric(ann_file='annotations/instances_val2017.json', dataset=val_set)  # doctest: +SKIP
        >>> ev.reset(); ev.process(batch, model(batch)); ev.evaluate()['coco/bbox_mAP']  # doctest: +SKIP
        0.374
    """

    default_prefix: str | None = "coco"

    def __init__(
        self,
        ann_file: str | None = None,
        metric: str | Sequence[str] = "bbox",
        classwise: bool = False,
        proposal_nums: Sequence[int] = (100, 300, 1000),
        iou_thrs: float | Sequence[float] | None = None,
        metric_items: Sequence[str] | None = None,
        format_only: bool = False,
        outfile_prefix: str | None = None,
        file_client_args: Mapping | None = None,
        backend_args: Mapping | None = None,
        collect_device: str = "cpu",
        prefix: str | None = None,
        sort_categories: bool = False,
        use_mp_eval: bool = False,
        *,
        dataset: Any = None,
        distributed: bool = True,
        output_dir: str | None = None,
    ) -> None:
        owner = type(self).__name__
        metrics = [metric] if isinstance(metric, str) else list(metric)
        unknown = [m for m in metrics if m not in _METRICS]
        if unknown or not metrics:
            raise ValueError(f"{owner}: metric {unknown or metrics} is not one of {_METRICS}.")
        if file_client_args is not None:
            raise ValueError(f"{owner}: file_client_args is deprecated (MMDetection 3.x refuses it too); use "
                             "backend_args instead.")
        check_backend_args(backend_args, owner)
        if format_only and not outfile_prefix:
            raise ValueError(f"{owner}: format_only=True writes the results to <outfile_prefix>.bbox.json "
                             "(and .segm.json); set outfile_prefix (e.g. './work_dirs/coco_detection/test').")
        nums = [int(n) for n in proposal_nums]
        if len(nums) != 3 and any(m != "proposal_fast" for m in metrics):
            raise ValueError(f"{owner}: proposal_nums={list(proposal_nums)}: COCOeval's summary needs "
                             "exactly three maxDets values (e.g. (100, 300, 1000)).")
        if metric_items is not None:
            bad = [m for m in metric_items if m not in COCO_METRIC_ITEMS]
            if bad:
                raise ValueError(f"{owner}: metric_items {bad} are not COCO metric items; choose from "
                                 f"{list(COCO_METRIC_ITEMS)}.")
        if iou_thrs is None:
            thrs = np.linspace(0.5, 0.95, int(np.round((0.95 - 0.5) / 0.05)) + 1, endpoint=True)
        else:
            listed = [iou_thrs] if isinstance(iou_thrs, (int, float)) else list(iou_thrs)
            thrs = np.asarray(listed, dtype=np.float64)
        self.metrics = metrics
        self.proposal_nums = nums
        self.iou_thrs = thrs
        self.metric_items = list(metric_items) if metric_items is not None else None
        self.format_only = bool(format_only)
        self.outfile_prefix = outfile_prefix
        self.collect_device = check_collect_device(collect_device, owner)
        self.prefix = prefix or self.default_prefix
        if use_mp_eval:
            logger.info("%s: use_mp_eval=True: kiln runs pycocotools' COCOeval in one process; the "
                        "numbers are the same.", owner)
        self._id_map: dict[Any, int] | None = None
        del sort_categories  # see the docstring: kiln's category order is already the sorted one
        coco_gt, cat_ids, names = self._ground_truth(ann_file, dataset, owner)
        # output_dir (kiln's, given by build_evaluator): coco_instances_results.json for `kiln test --out`
        tasks = ("bbox", "segm") if "segm" in metrics else ("bbox",)  # masks are encoded only for 'segm'
        super().__init__(coco_gt, tasks, cat_ids=cat_ids, class_names=names, output_dir=output_dir,
                         distributed=distributed, max_dets_per_image=nums[-1], backend="pycocotools",
                         classwise=bool(classwise), prefix=self.prefix or "")

    def _ground_truth(self, ann_file: str | None, dataset: Any, owner: str
                      ) -> tuple[Any, list[int], list[str] | None]:
        if ann_file is None:
            if dataset is None:
                raise ValueError(f"{owner}: give ann_file= or the evaluated dataset (build_evaluator(cfg, "
                                 "dataset) passes it) as the ground truth.")
            if getattr(_unwrap(dataset), "coco", None) is not None:
                coco, cat_ids, names = coco_gt_of_dataset(dataset)
                coco = _load_coco(coco)
                return coco, (cat_ids if cat_ids is not None else sorted(coco.getCatIds())), names
            coco_dict, self._id_map, names = coco_dict_from_dataset(dataset)
            logger.info("%s: ground truth converted from %s's annotations (%d images).", owner,
                        type(dataset).__name__, len(coco_dict["images"]))
            return _load_coco(coco_dict), list(range(len(names))), names
        if not os.path.isfile(os.fspath(ann_file)):
            raise FileNotFoundError(f"{owner}: ann_file '{ann_file}' does not exist; it must be the COCO "
                                    "instances json of the evaluated split (check data_root).")
        coco = _load_coco(os.fspath(ann_file))
        # By category id, whatever the file's order: kiln's CocoDataset numbers its labels that way,
        # which is the order MMDetection's sort_categories=True restores (so the flag changes nothing).
        cats = sorted(coco.dataset.get("categories", []), key=lambda c: c["id"])
        names = dataset_class_names(dataset) if dataset is not None else None
        if names is None:  # no dataset classes: every category, by id
            return coco, [int(c["id"]) for c in cats], None
        by_name: dict[str, int] = {}
        for c in cats:
            by_name.setdefault(c["name"], int(c["id"]))
        missing = [n for n in names if n not in by_name]
        if missing:
            raise ValueError(
                f"{owner}: the dataset's classes {missing} are not categories of ann_file '{ann_file}' "
                f"(it has {sorted(by_name)[:10]}...). The metric's ann_file must be the evaluated split's."
            )
        return coco, [by_name[n] for n in names], list(names)

    def _image_id(self, image_id: Any) -> int:
        if self._id_map is not None:
            if image_id not in self._id_map:
                raise KeyError(f"{type(self).__name__}: image id {image_id!r} is not an image of the "
                               "evaluated dataset; build the metric from the dataset the loader iterates.")
            return self._id_map[image_id]
        return int(image_id)

    def _key(self, name: str) -> str:
        return f"{self.prefix}/{name}" if self.prefix else name

    def _evaluate_predictions(self, predictions: list[dict[str, Any]]) -> dict[str, float]:
        if not predictions:
            logger.warning("%s: no images were processed; returning no metrics.", type(self).__name__)
            return {}
        img_ids = self._processed_image_ids(predictions)
        coco_results = list(itertools.chain.from_iterable(p["instances"] for p in predictions))
        self._write_results(coco_results)
        if self.outfile_prefix:
            boxes_only = [{k: v for k, v in r.items() if k != "segmentation"} for r in coco_results]
            self._write_json(f"{self.outfile_prefix}.bbox.json", boxes_only)
            if "segm" in self.metrics:
                self._write_json(f"{self.outfile_prefix}.segm.json", coco_results)
        if self.format_only:
            return {}
        results: dict[str, float] = {}
        for metric in self.metrics:
            if metric == "proposal_fast":
                results.update(self._fast_recall(predictions, img_ids))
            else:
                results.update(self._cocoeval(metric, coco_results, img_ids))
        return results

    def _write_json(self, path: str, coco_results: list[dict[str, Any]]) -> None:
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        with open(path + ".tmp", "w") as f:
            json.dump(coco_results, f)
        os.replace(path + ".tmp", path)
        logger.info("%s: wrote %d detections to %s", type(self).__name__, len(coco_results), path)

    def _fast_recall(self, predictions: list[dict[str, Any]], img_ids: list[int]) -> dict[str, float]:
        by_image = {p["image_id"]: p["instances"] for p in predictions}
        gts, props = [], []
        for img_id in img_ids:
            anns = self._coco_gt.loadAnns(self._coco_gt.getAnnIds(imgIds=img_id))
            gts.append(np.asarray([[x, y, x + w, y + h] for x, y, w, h in
                                   (a["bbox"] for a in anns if not (a.get("ignore") or a.get("iscrowd")))],
                                  np.float64).reshape(-1, 4))
            # In the model's output order (by score), as MMDetection passes the boxes.
            props.append(np.asarray([[x, y, x + w, y + h] for x, y, w, h in
                                     (r["bbox"] for r in by_image[img_id])], np.float64).reshape(-1, 4))
        ar = eval_recalls(gts, props, self.proposal_nums, self.iou_thrs).mean(axis=1)
        logger.info("%s proposal_fast:\n%s", type(self).__name__,
                    "\n".join(f"AR@{n}\t{a:.4f}" for n, a in zip(self.proposal_nums, ar)))
        return {self._key(f"AR@{n}"): float(a) for n, a in zip(self.proposal_nums, ar)}

    def _cocoeval(self, metric: str, coco_results: list[dict[str, Any]], img_ids: list[int]
                  ) -> dict[str, float]:
        _, _, coco_eval = self._make_cocoeval(coco_results, "segm" if metric == "segm" else "bbox")
        coco_eval.params.catIds = list(self._cat_ids)
        coco_eval.params.imgIds = img_ids
        coco_eval.params.maxDets = list(self.proposal_nums)
        coco_eval.params.iouThrs = self.iou_thrs
        if metric == "proposal":
            coco_eval.params.useCats = 0
        text = io.StringIO()
        with contextlib.redirect_stdout(text):
            coco_eval.evaluate()
            coco_eval.accumulate()
            coco_eval.summarize()
        self.coco_eval = coco_eval
        logger.info("%s %s evaluation:\n%s", type(self).__name__, metric, text.getvalue().rstrip())
        stats = coco_eval.stats
        results: dict[str, float] = {}
        if metric == "proposal":
            for item in self.metric_items or _PROPOSAL_ITEMS:
                results[self._key(item)] = round(float(stats[COCO_METRIC_ITEMS[item]]), 3)
            return results
        if self._classwise:
            results.update(self._classwise_results(coco_eval, metric))
        for item in self.metric_items or _BBOX_ITEMS:
            results[self._key(f"{metric}_{item}")] = round(float(stats[COCO_METRIC_ITEMS[item]]), 3)
        logger.info("%s_mAP_copypaste: %s", metric, " ".join(f"{v:.3f}" for v in stats[:6]))
        return results

    def _classwise_results(self, coco_eval: Any, metric: str = "bbox") -> dict[str, float]:
        precision = coco_eval.eval["precision"]  # [iou, recall, category, area, max dets]

        def mean_ap(p: np.ndarray) -> float:
            p = p[p > -1]
            return float(np.mean(p)) if p.size else float("nan")

        rows, results = [], {}
        for k, cat_id in enumerate(self._cat_ids):
            name = self._coco_gt.cats[cat_id]["name"]
            ap = mean_ap(precision[:, :, k, 0, -1])
            by_iou = [mean_ap(precision[t, :, k, 0, -1]) if t < precision.shape[0] else float("nan")
                      for t in (0, 5)]
            by_area = [mean_ap(precision[:, :, k, a, -1]) for a in (1, 2, 3)]
            rows.append([name, *(f"{round(v, 3)}" for v in (ap, *by_iou, *by_area))])
            # MMDetection's key names the class only; a 'segm' run after 'bbox' overwrites it, as there.
            results[self._key(f"{name}_precision")] = round(ap, 3)
        header = ("category", "mAP", "mAP_50", "mAP_75", "mAP_s", "mAP_m", "mAP_l")
        logger.info("Per-class %s AP:\n%s", metric, text_table(header, rows))
        return results
