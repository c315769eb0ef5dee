"""COCO-style box and mask AP through pycocotools (or faster-coco-eval, which gives the same numbers).

Units: every AP kiln reports is in **percent** (0–100), like Detectron2 — ``bbox/AP`` of 41.2
means 0.412 in pycocotools' ``stats[0]``. A metric pycocotools marks undefined (``-1``: no
ground truth in that area range or class) is reported as ``nan``.
"""

from __future__ import annotations

import contextlib
import copy
import io
import itertools
import json
import logging
import math
import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from kiln.registry import EVALUATORS

from .coco_results import instances_to_coco_json
from .evaluator import DatasetEvaluator

__all__ = ["COCOEvaluator", "instances_to_coco_json", "coco_metric_table", "segm_results"]

logger = logging.getLogger(__name__)

# Order of pycocotools' COCOeval.stats for bbox and segm.
_STAT_NAMES = ("AP", "AP50", "AP75", "APs", "APm", "APl")
_TASKS = ("bbox", "segm")
_BACKENDS = ("auto", "pycocotools", "faster_coco_eval")


def _load_coco(coco_gt: Any) -> Any:
    from pycocotools.coco import COCO

    if isinstance(coco_gt, COCO) or (hasattr(coco_gt, "dataset") and hasattr(coco_gt, "imgs")):
        return coco_gt
    if isinstance(coco_gt, (str, os.PathLike)):
        path = os.fspath(coco_gt)
        if not os.path.isfile(path):
            raise FileNotFoundError(
                f"COCOEvaluator: annotation file '{path}' does not exist. Pass the path of a COCO "
                f"instances json, a pycocotools COCO object, or the dataset (build_evaluator)."
            )
        with contextlib.redirect_stdout(io.StringIO()):
            return COCO(path)
    if isinstance(coco_gt, Mapping):
        coco = COCO()
        coco.dataset = copy.deepcopy(dict(coco_gt))
        with contextlib.redirect_stdout(io.StringIO()):
            coco.createIndex()
        return coco
    raise TypeError(
        f"COCOEvaluator: coco_gt must be a pycocotools COCO object, a path to a COCO json or a "
        f"COCO-format dict, got {type(coco_gt).__name__}."
    )


def _resolve_backend(backend: str) -> str:
    if backend not in _BACKENDS:
        raise ValueError(f"COCOEvaluator: backend must be one of {_BACKENDS}, got {backend!r}.")
    if backend == "pycocotools":
        return backend
    try:
        import faster_coco_eval  # noqa: F401
    except ImportError as exc:
        if backend == "faster_coco_eval":
            raise ImportError(
                "COCOEvaluator(backend='faster_coco_eval') needs the faster-coco-eval package: "
                "pip install faster-coco-eval (or use backend='pycocotools')."
            ) from exc
        return "pycocotools"
    return "faster_coco_eval"


def coco_metric_table(rows: Sequence[tuple[str, float]], ncols: int = 3) -> str:
    """Format ``(name, value)`` pairs as a fixed-width text table, ``ncols`` pairs per line."""
    if not rows:
        return ""
    cells = [(str(n), "nan" if math.isnan(v) else f"{v:.3f}") for n, v in rows]
    wn = max(len(n) for n, _ in cells)
    wv = max(len(v) for _, v in cells)
    lines = []
    for start in range(0, len(cells), ncols):
        chunk = cells[start:start + ncols]
        lines.append(" | ".join(f"{n:<{wn}} {v:>{wv}}" for n, v in chunk))
    return "\n".join(lines)


@EVALUATORS.register_module()
class COCOEvaluator(DatasetEvaluator):
    """Box and mask AP over a COCO-format ground truth, computed by pycocotools' COCOeval.

    Args:
        coco_gt: the ground truth — a pycocotools ``COCO`` object (e.g. ``CocoDataset.coco``),
            a path to a COCO instances json, a COCO-format dict, or (Detectron2's first argument)
            the name of a catalog dataset (:mod:`.catalog_coco`: its ``json_file``, or its dicts
            converted). ``ann_file`` and ``dataset_name`` are aliases.
        tasks: Detectron2's ``tasks``: ``'bbox'`` and/or ``'segm'`` (mask AP: predictions carry masks,
            which are RLE-encoded; the ground truth needs ``segmentation``). ``None`` evaluates
            ``'bbox'``, plus ``'segm'`` when the predictions have masks (as Detectron2 infers them).
            ``'keypoints'`` is refused (kiln has no keypoint heads).
        distributed: gather predictions from all ranks before evaluating.
        output_dir: where ``coco_instances_results.json`` (the detections in COCO result
            format) is written; ``None`` writes nothing.
        cat_ids: dataset category id of each contiguous label (``cat_ids[label]``); default
            the catalog's ``thing_dataset_id_to_contiguous_id`` or the sorted category ids of
            ``coco_gt`` (kiln's CocoDataset order).
        class_names: names for the per-class AP table; default the categories' names.
        max_dets_per_image: the last entry of COCOeval's ``maxDets`` (AP uses it); ``None`` is 100.
        backend: ``'pycocotools'``, ``'faster_coco_eval'`` or ``'auto'`` (the faster one when
            installed). Both give the same numbers.
        use_fast_impl: Detectron2's spelling of the backend: ``True`` is ``'auto'``, ``False``
            ``'pycocotools'``.
        kpt_oks_sigmas: must be empty (keypoint AP is not supported).
        allow_cached_coco: reuse ``<output_dir>/<name>_coco_format.json`` when a catalog dataset
            without ``json_file`` was converted before.
        classwise: also report ``bbox/AP-<class>`` per class.
        prefix: key prefix of the box results (mask results use ``'segm'``, or ``<prefix>_segm``
            when ``prefix`` is not the default).

    ``evaluate()`` returns ``{'bbox/AP', 'bbox/AP50', 'bbox/AP75', 'bbox/APs', 'bbox/APm',
    'bbox/APl'}`` and the same ``segm/...`` keys for masks (+ per-class entries) in percent; only the
    images that were processed are evaluated, so a subset run gives that subset's AP. Mask AP is
    computed as Detectron2 and MMDetection do: the results' boxes are left out, so COCOeval's
    small/medium/large split uses the mask area.

    Example::

        >>> ev = COCOEvaluator('annotations/val.json', output_dir='work_dirs/eval')
        >>> ev.reset(); ev.process(batch, model(batch)); ev.evaluate()['bbox/AP']  # doctest: +SKIP
        >>> ev = COCOEvaluator('coco_2017_val', ('bbox',), False, output_dir='out')  # Detectron2's call
    """

    def __init__(
        self,
        coco_gt: Any = None,
        tasks: Sequence[str] | None = None,
        distributed: bool = True,
        output_dir: str | None = None,
        *,
        dataset_name: str | None = None,
        ann_file: str | None = None,
        cat_ids: Sequence[int] | None = None,
        class_names: Sequence[str] | None = None,
        max_dets_per_image: int | None = None,
        backend: str | None = None,
        use_fast_impl: bool | None = None,
        kpt_oks_sigmas: Sequence[float] = (),
        allow_cached_coco: bool = True,
        classwise: bool = True,
        prefix: str = "bbox",
    ) -> None:
        from .catalog_coco import coco_gt_of_dataset_name, is_catalog_name

        given = [k for k, v in (("coco_gt", coco_gt), ("ann_file", ann_file), ("dataset_name", dataset_name))
                 if v is not None]
        if not given:
            raise ValueError("COCOEvaluator needs the ground truth: pass a dataset name (Detectron2), "
                             "coco_gt= (COCO object, json path or dict) or ann_file=.")
        if len(given) > 1:
            raise ValueError(f"COCOEvaluator: pass one of coco_gt, ann_file and dataset_name, not {given}.")
        self._tasks = _check_detectron2_args(tasks, kpt_oks_sigmas)
        if use_fast_impl is not None and backend is not None:
            raise ValueError("COCOEvaluator: pass backend= or use_fast_impl= (Detectron2's name), not both.")
        if backend is None:
            backend = "pycocotools" if use_fast_impl is False else "auto"
        if dataset_name is None and is_catalog_name(coco_gt):
            dataset_name, coco_gt = coco_gt, None
        if dataset_name is not None:
            coco_gt, name_cat_ids, name_classes = coco_gt_of_dataset_name(dataset_name, output_dir,
                                                                          allow_cached_coco)
            cat_ids = name_cat_ids if cat_ids is None else cat_ids
            class_names = name_classes if class_names is None and cat_ids == name_cat_ids else class_names
        max_dets_per_image = 100 if max_dets_per_image is None else max_dets_per_image
        self._coco_gt = _load_coco(coco_gt if coco_gt is not None else ann_file)
        gt_cat_ids = sorted(self._coco_gt.getCatIds())
        self._cat_ids = [int(c) for c in (cat_ids if cat_ids is not None else gt_cat_ids)]
        unknown = sorted(set(self._cat_ids) - set(gt_cat_ids))
        if unknown:
            raise ValueError(
                f"COCOEvaluator: cat_ids {unknown} are not categories of the ground truth "
                f"(which has {gt_cat_ids}). cat_ids must map contiguous labels to the json's ids."
            )
        if class_names is None:
            class_names = [self._coco_gt.cats[c]["name"] for c in self._cat_ids]
        if len(class_names) != len(self._cat_ids):
            raise ValueError(
                f"COCOEvaluator: {len(class_names)} class_names for {len(self._cat_ids)} cat_ids; "
                f"they must correspond one to one."
            )
        self._class_names = list(class_names)
        # Ground truth converted from dicts with non-integer image ids keeps them as 'kiln_image_id'.
        self._converted_ids = {img["kiln_image_id"]: img["id"]
                               for img in self._coco_gt.dataset.get("images", []) if "kiln_image_id" in img}
        self._output_dir = output_dir
        self._distributed = distributed
        self._max_dets = int(max_dets_per_image)
        self._backend = _resolve_backend(backend)
        self._classwise = classwise
        self._prefix = prefix
        self.coco_eval: Any = None  # the last COCOeval object, for users who want more detail
        self._fast_gt: Any = None  # faster-coco-eval's own COCO index of the ground truth
        self.reset()

    @property
    def coco_gt(self) -> Any:
        """The ground-truth COCO object."""
        return self._coco_gt

    @property
    def cat_ids(self) -> list[int]:
        """Dataset category id of each contiguous label."""
        return list(self._cat_ids)

    def reset(self) -> None:
        """Drop the predictions collected so far."""
        self._predictions: list[dict[str, Any]] = []  # per image: image_id + COCO result dicts

    def process(self, inputs: Sequence[Any], outputs: Sequence[Any]) -> None:
        """Convert a batch's predictions to COCO result dicts (kept on CPU as plain python)."""
        from kiln.structures import sample_image_id

        if len(inputs) != len(outputs):
            raise ValueError(
                f"COCOEvaluator.process: {len(inputs)} inputs but {len(outputs)} outputs; the "
                f"model must return one prediction dict per image of the batch."
            )
        for sample, output in zip(inputs, outputs):
            image_id = self._image_id(sample_image_id(sample))
            with_masks = None if self._tasks is None else "segm" in self._tasks
            self._predictions.append(
                {"image_id": image_id,
                 "instances": instances_to_coco_json(output, image_id, self._cat_ids, with_masks)}
            )

    def _image_id(self, image_id: Any) -> Any:
        """The ground truth's id of a sample's ``image_id`` (COCO ids are integers; a dataset converted
        from dicts with other ids, e.g. VOC's, numbered them)."""
        if image_id in self._converted_ids:
            return self._converted_ids[image_id]
        return int(image_id)

    def _gather(self) -> list[dict[str, Any]] | None:
        if not _distributed_run(self._distributed):
            return self._predictions
        from kiln.engine import comm

        gathered = comm.gather(self._predictions, dst=0)
        if not comm.is_main_process():
            return None
        return list(itertools.chain.from_iterable(gathered))

    def evaluate(self) -> dict[str, float]:
        """Gather predictions (distributed), write the result json, run COCOeval, return metrics."""
        predictions = self._gather()
        results = self._evaluate_predictions(predictions) if predictions is not None else {}
        if _distributed_run(self._distributed):
            from kiln.engine import comm

            # Every rank gets the main rank's numbers, so hooks (save-best) agree across ranks.
            results = comm.all_gather(results)[0]
        return results

    def _evaluate_predictions(self, predictions: list[dict[str, Any]]) -> dict[str, float]:
        if not predictions:
            logger.warning("COCOEvaluator: no images were processed; returning no metrics.")
            return {}
        img_ids = self._processed_image_ids(predictions)
        coco_results = list(itertools.chain.from_iterable(p["instances"] for p in predictions))
        self._write_results(coco_results)
        if not coco_results:
            logger.warning("COCOEvaluator: the model predicted no boxes on %d images.", len(img_ids))
        results: dict[str, float] = {}
        for task in self._tasks_of(coco_results):
            results.update(self._run_cocoeval(coco_results, img_ids, task))
        return results

    def _tasks_of(self, coco_results: list[dict[str, Any]]) -> tuple[str, ...]:
        """The asked tasks, or bbox plus segm when the results carry masks (Detectron2's inference)."""
        if self._tasks is not None:
            return self._tasks
        return ("bbox", "segm") if any("segmentation" in r for r in coco_results) else ("bbox",)

    def _task_prefix(self, task: str) -> str:
        if task == "bbox":
            return self._prefix
        return task if self._prefix == "bbox" else f"{self._prefix}_{task}"

    def _write_results(self, coco_results: list[dict[str, Any]]) -> None:
        """``<output_dir>/coco_instances_results.json`` (written atomically) when an output dir is set."""
        if not self._output_dir:
            return
        os.makedirs(self._output_dir, exist_ok=True)
        path = os.path.join(self._output_dir, "coco_instances_results.json")
        tmp = path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(coco_results, f)
        os.replace(tmp, path)
        logger.info("%s: wrote %d detections to %s", type(self).__name__, len(coco_results), path)

    def _processed_image_ids(self, predictions: list[dict[str, Any]]) -> list[int]:
        """Sorted ids of the processed images; one missing from the ground truth is an error."""
        img_ids = sorted({p["image_id"] for p in predictions})
        missing = [i for i in img_ids if i not in self._coco_gt.imgs]
        if missing:
            raise KeyError(
                f"{type(self).__name__}: image ids {missing[:10]} (of {len(missing)}) are not in the "
                f"ground truth annotations; the evaluator's annotation file and the evaluated dataset "
                f"differ. Build the evaluator from the same dataset (build_evaluator(cfg, dataset))."
            )
        return img_ids

    def _run_cocoeval(self, coco_results: list[dict[str, Any]], img_ids: list[int],
                      iou_type: str = "bbox") -> dict[str, float]:
        coco_gt, coco_dt, coco_eval = self._make_cocoeval(coco_results, iou_type)
        coco_eval.params.imgIds = img_ids
        coco_eval.params.maxDets = [1, 10, self._max_dets]
        text = io.StringIO()
        with contextlib.redirect_stdout(text):
            coco_eval.evaluate()
            coco_eval.accumulate()
            coco_eval.summarize()
        self.coco_eval = coco_eval
        logger.info("COCO %s evaluation (%s):\n%s", iou_type, self._backend, text.getvalue().rstrip())
        stats = np.asarray(coco_eval.stats, dtype=np.float64)
        prefix = self._task_prefix(iou_type)
        results = {
            f"{prefix}/{name}": (float(stats[i] * 100) if stats[i] >= 0 else float("nan"))
            for i, name in enumerate(_STAT_NAMES)
        }
        if self._classwise:
            per_class = self._per_class_ap(coco_eval)
            logger.info("Per-class %s AP (%%):\n%s", prefix, coco_metric_table(per_class))
            for name, ap in per_class:
                results[f"{prefix}/AP-{name}"] = ap
        return results

    def _make_cocoeval(self, coco_results: list[dict[str, Any]], iou_type: str = "bbox"
                       ) -> tuple[Any, Any, Any]:
        if iou_type == "segm":
            coco_results = segm_results(coco_results, self._coco_gt)
        if self._backend == "faster_coco_eval":
            from faster_coco_eval import COCO, COCOeval_faster

            if self._fast_gt is None:  # indexed once; evaluate() may run every epoch
                self._fast_gt = COCO(copy.deepcopy(self._coco_gt.dataset))
            coco_gt = self._fast_gt
            coco_dt = coco_gt.loadRes(coco_results) if coco_results else _empty_dt(COCO, coco_gt)
            return coco_gt, coco_dt, COCOeval_faster(coco_gt, coco_dt, iou_type, print_function=print)
        from pycocotools.coco import COCO
        from pycocotools.cocoeval import COCOeval

        coco_gt = self._coco_gt
        with contextlib.redirect_stdout(io.StringIO()):
            # loadRes on an empty list fails inside pycocotools; an empty result set is valid.
            coco_dt = coco_gt.loadRes(coco_results) if coco_results else _empty_dt(COCO, coco_gt)
        return coco_gt, coco_dt, COCOeval(coco_gt, coco_dt, iou_type)

    def _per_class_ap(self, coco_eval: Any) -> list[tuple[str, float]]:
        # precision: [iou thresholds, recall points, categories, area ranges, max dets]
        precision = coco_eval.eval["precision"]
        cat_index = {c: k for k, c in enumerate(coco_eval.params.catIds)}
        rows = []
        for name, cat_id in zip(self._class_names, self._cat_ids):
            p = precision[:, :, cat_index[cat_id], 0, -1]
            p = p[p > -1]
            rows.append((name, float(np.mean(p) * 100) if p.size else float("nan")))
        return rows


def _check_detectron2_args(tasks: Sequence[str] | None, kpt_oks_sigmas: Sequence[float]
                           ) -> tuple[str, ...] | None:
    """The evaluated tasks (``None``: decided by the predictions); refuses keypoint AP, which kiln
    cannot compute."""
    if len(kpt_oks_sigmas):
        raise ValueError("COCOEvaluator: kpt_oks_sigmas is for keypoint AP, which kiln does not compute (no "
                         "keypoint heads); remove it (TEST.KEYPOINT_OKS_SIGMAS must stay empty).")
    if tasks is None:
        return None
    tasks = [tasks] if isinstance(tasks, str) else list(tasks)
    other = [t for t in tasks if t not in _TASKS]
    if other or not tasks:
        raise ValueError(f"COCOEvaluator: tasks={tasks}: kiln evaluates {_TASKS} (it has no keypoint "
                         "heads); pass a subset of them or None.")
    return tuple(t for t in _TASKS if t in tasks)


def segm_results(coco_results: list[dict[str, Any]], coco_gt: Any) -> list[dict[str, Any]]:
    """The results as COCOeval's ``segm`` needs them: with their masks and without their boxes.

    pycocotools' ``loadRes`` takes a result's area from its box when it has one; mask AP's
    small/medium/large split must use the mask area (Detectron2 and MMDetection drop the boxes too).
    Refuses results without masks and a ground truth without ``segmentation``, naming what to fix.
    """
    bare = [r for r in coco_results if "segmentation" not in r]
    if bare:
        raise KeyError(f"COCO 'segm' evaluation: {len(bare)} results (e.g. image {bare[0]['image_id']}) "
                       "have no mask; the model must predict masks (a mask head) or evaluate 'bbox' only.")
    lacking = [a["id"] for a in coco_gt.dataset.get("annotations", []) if not a.get("segmentation")]
    if lacking:
        raise ValueError(f"COCO 'segm' evaluation: {len(lacking)} ground-truth annotations (ids "
                         f"{lacking[:5]}) have no 'segmentation'; mask AP needs instance masks in the "
                         "annotation json (a box-only dataset can only be evaluated with 'bbox').")
    return [{k: v for k, v in r.items() if k != "bbox"} for r in coco_results]


def _distributed_run(enabled: bool) -> bool:
    """True inside an initialized process group of more than one rank."""
    if not enabled:
        return False
    from kiln.utils.dist import get_world_size

    return get_world_size() > 1


def _empty_dt(coco_cls: Any, coco_gt: Any) -> Any:
    dt = coco_cls()
    dt.dataset = {"images": list(coco_gt.dataset.get("images", [])),
                  "categories": copy.deepcopy(coco_gt.dataset.get("categories", [])),
                  "annotations": []}
    with contextlib.redirect_stdout(io.StringIO()):
        dt.createIndex()
    return dt
