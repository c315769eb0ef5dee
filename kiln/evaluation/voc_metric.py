"""``VOCMetric``: Pascal VOC mAP and proposal recall with MMDetection's names and arguments.

MMDetection 3.x configs write ``val_evaluator = dict(type='VOCMetric', metric='mAP',
eval_mode='11points')`` and read ``pascal_voc/mAP``; MMDetection 2.x configs write
``evaluation = dict(interval=1, metric='mAP')`` and read ``mAP``. Both are this class
(:func:`~kiln.evaluation.build.build_evaluator` gives the 2.x entry no prefix). Values are
fractions (0–1), as MMDetection reports them, not kiln's percent.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from kiln.registry import EVALUATORS

from .coco_evaluation import _distributed_run
from .coco_results import unpack_prediction
from .dataset_gt import dataset_annotations, dataset_class_names, voc_year
from .evaluator import DatasetEvaluator
from .mean_ap import EVAL_MODES, eval_map, eval_recalls
from .metric_args import check_backend_args, check_collect_device, text_table

__all__ = ["VOCMetric"]

logger = logging.getLogger(__name__)

_METRICS = ("mAP", "recall")


@EVALUATORS.register_module()
class VOCMetric(DatasetEvaluator):
    """Pascal VOC mean AP (``metric='mAP'``) or recall of the top proposals (``'recall'``).

    Args:
        dataset: the evaluated dataset; its annotations are the ground truth (``difficult``
            VOC objects and other ignored boxes neither count as misses nor make a detection a
            false positive). Filled in by :func:`~kiln.evaluation.build_evaluator`.
        iou_thrs: one IoU threshold or a list; ``AP50``, ``AP75``... are reported per threshold
            and ``mAP`` is their mean.
        scale_ranges: must be ``None``: MMDetection 3.3.0 and 2.28.2 both fail on any other value
            (their mAP per scale range is a list they round as one number), so no config can rely
            on it.
        metric: ``'mAP'`` or ``'recall'`` (a one-element list is accepted, as in MMDetection).
        proposal_nums: for ``'recall'``: how many top-scoring boxes per image count.
        eval_mode: ``'11points'`` (VOC2007's AP) or ``'area'`` (VOC2010+).
        collect_device: ``'cpu'`` or ``'gpu'`` (how MMEngine gathers across ranks; kiln gathers
            the same results either way).
        prefix: key prefix; default ``'pascal_voc'``.
        backend_args: ``None`` or a local backend (VOCMetric reads no file: its ground truth is the
            dataset's); a remote backend is refused. (MMDetection 3.3.0's VOCMetric has no such
            argument; accepted for configs that pass the dataset's ``backend_args`` along.)
        distributed: gather the other ranks' predictions before evaluating.

    ``evaluate()`` returns, for ``'mAP'``, ``{prefix}/mAP`` (mean over thresholds) and
    ``{prefix}/AP50`` (rounded to 3 decimals, as MMDetection rounds it); for ``'recall'``,
    ``{prefix}/recall@{n}@{iou}`` and, with several thresholds, ``{prefix}/AR@{n}``. Recall is
    class-agnostic: every predicted box of an image is a proposal (a proposal model predicts one
    class; MMDetection 3.x would count only label 0). Boxes use VOC's inclusive pixel convention
    (``x1 - x0 + 1``), as MMDetection does for VOC.

    Example::

        >>> ev = VOCMetric(dataset=voc_test, eval_mode='area', iou_thrs=[0.5, 0.75])  # doctest: +SKIP
        >>> ev.reset(); ev.process(batch, model(batch)); ev.evaluate()  # doctest: +SKIP
        {'pascal_voc/mAP': 0.61, 'pascal_voc/AP50': 0.802, 'pascal_voc/AP75': 0.418}
    """

    default_prefix: str | None = "pascal_voc"

    def __init__(
        self,
        dataset: Any = None,
        *,
        iou_thrs: float | Sequence[float] = 0.5,
        scale_ranges: Sequence[tuple] | None = None,
        metric: str | Sequence[str] = "mAP",
        proposal_nums: Sequence[int] = (100, 300, 1000),
        eval_mode: str = "11points",
        collect_device: str = "cpu",
        prefix: str | None = None,
        backend_args: Mapping | None = None,
        distributed: bool = True,
    ) -> None:
        check_backend_args(backend_args, "VOCMetric")
        if dataset is None:
            raise ValueError("VOCMetric needs the evaluated dataset (its annotations are the ground truth): "
                             "build it with build_evaluator(cfg, dataset) or pass dataset=.")
        if not isinstance(metric, str):
            if len(metric) != 1:
                raise ValueError(f"VOCMetric: metric={list(metric)}: give one of {_METRICS} (a list must "
                                 "have exactly one entry, as in MMDetection).")
            metric = metric[0]
        if metric not in _METRICS:
            raise ValueError(f"VOCMetric: metric={metric!r} is not one of {_METRICS}.")
        if eval_mode not in EVAL_MODES:
            raise ValueError(f"VOCMetric: eval_mode={eval_mode!r} is not one of {EVAL_MODES} ('11points' is "
                             "VOC2007's AP, 'area' VOC2010+).")
        if scale_ranges is not None:
            raise ValueError(
                f"VOCMetric: scale_ranges={scale_ranges!r} is not supported: MMDetection 3.3.0 and 2.28.2 "
                "both fail on it (one mAP per range, rounded as one number). Remove scale_ranges; for "
                "AP by object size use CocoMetric (mAP_s/mAP_m/mAP_l)."
            )
        thrs = [iou_thrs] if isinstance(iou_thrs, (int, float)) else list(iou_thrs)
        if not thrs or any(not 0 < float(t) <= 1 for t in thrs):
            raise ValueError(f"VOCMetric: iou_thrs={iou_thrs!r}: give IoU thresholds in (0, 1].")
        self.iou_thrs = [float(t) for t in thrs]
        self.metric = metric
        self.proposal_nums = [int(n) for n in proposal_nums]
        self.eval_mode = eval_mode
        self.collect_device = check_collect_device(collect_device, "VOCMetric")
        self.prefix = prefix or self.default_prefix
        self._distributed = distributed
        self._gt = dataset_annotations(dataset)
        year = voc_year(dataset)
        usual = {2007: "11points", 2012: "area"}.get(year)
        if usual is not None and usual != eval_mode:
            logger.warning("VOCMetric: Pascal VOC%d's AP is eval_mode=%r, but %r is used; results will not "
                           "compare with published VOC%d numbers.", year, usual, eval_mode, year)
        names = dataset_class_names(dataset)
        self._class_names = list(names) if names else None
        self.reset()

    def reset(self) -> None:
        """Drop the predictions collected so far."""
        self._predictions: list[tuple[Any, np.ndarray, np.ndarray, np.ndarray]] = []

    def process(self, inputs: Sequence[Any], outputs: Sequence[Any]) -> None:
        """Keep each image's predicted boxes, scores and labels (numpy, CPU)."""
        from kiln.structures import sample_image_id

        if len(inputs) != len(outputs):
            raise ValueError(f"VOCMetric.process: {len(inputs)} inputs but {len(outputs)} outputs; the model "
                             "must return one prediction dict per image of the batch.")
        for sample, output in zip(inputs, outputs):
            boxes, scores, labels = unpack_prediction(output)
            self._predictions.append((sample_image_id(sample), boxes.astype(np.float64),
                                      scores.astype(np.float64), labels.astype(np.int64)))

    def _key(self, name: str) -> str:
        return f"{self.prefix}/{name}" if self.prefix else name

    def evaluate(self) -> dict[str, float]:
        """Gather predictions (distributed), compute the metric on the main rank, share it."""
        predictions: list | None = self._predictions
        if _distributed_run(self._distributed):
            from kiln.engine import comm

            gathered = comm.gather(self._predictions, dst=0)
            predictions = list(itertools.chain.from_iterable(gathered)) if comm.is_main_process() else None
        results = self._compute(predictions) if predictions is not None else {}
        if _distributed_run(self._distributed):
            from kiln.engine import comm

            results = comm.all_gather(results)[0]
        return results

    def _compute(self, predictions: list) -> dict[str, float]:
        if not predictions:
            logger.warning("VOCMetric: no images were processed; returning no metrics.")
            return {}
        anns = []
        for image_id, *_ in predictions:
            if image_id not in self._gt:
                some = list(itertools.islice(self._gt, 5))
                raise KeyError(
                    f"VOCMetric: image id {image_id!r} is not an image of the evaluated dataset (ids look "
                    f"like {some}); build the metric from the dataset the loader iterates."
                )
            anns.append(self._gt[image_id])
        if self.metric == "recall":
            return self._recall(predictions, anns)
        num_classes = self._num_classes(predictions, anns)
        dets = []
        for _, boxes, scores, labels in predictions:
            bad = labels[(labels < 0) | (labels >= num_classes)]
            if bad.size:
                raise ValueError(f"VOCMetric: predicted label {int(bad[0])} but the dataset has "
                                 f"{num_classes} classes; check the head's num_classes against the "
                                 "dataset's classes.")
            with_score = np.concatenate([boxes, scores[:, None]], axis=1)
            dets.append([with_score[labels == c] for c in range(num_classes)])
        gts = [a.as_eval_dict() for a in anns]
        results: dict[str, float] = {}
        mean_aps = []
        for thr in self.iou_thrs:
            mean_ap, per_class = eval_map(dets, gts, iou_thr=thr, eval_mode=self.eval_mode, legacy=True)
            mean_aps.append(mean_ap)
            results[self._key(f"AP{int(thr * 100):02d}")] = round(mean_ap, 3)
            self._log_classes(thr, mean_ap, per_class)
        # mAP first and unrounded (the mean of the per-threshold means), as MMDetection orders it.
        return {self._key("mAP"): float(sum(mean_aps) / len(mean_aps)), **results}

    def _num_classes(self, predictions: list, anns: list) -> int:
        if self._class_names is not None:
            return len(self._class_names)
        seen = [int(p[3].max()) for p in predictions if p[3].size] + [int(a.labels.max()) for a in anns
                                                                       if a.labels.size]
        return max(seen, default=-1) + 1

    def _log_classes(self, thr: float, mean_ap: float, per_class: list[dict]) -> None:
        names = self._class_names or [str(c) for c in range(len(per_class))]
        rows = [(n, r["num_gts"], r["num_dets"],
                 f"{float(r['recall'][-1]) if len(r['recall']) else 0.0:.3f}", f"{r['ap']:.3f}")
                for n, r in zip(names, per_class)]
        rows.append(("mAP", "", "", "", f"{mean_ap:.3f}"))
        logger.info("VOC AP (iou_thr=%s, %s):\n%s", thr, self.eval_mode,
                    text_table(("class", "gts", "dets", "recall", "ap"), rows))

    def _recall(self, predictions: list, anns: list) -> dict[str, float]:
        proposals = [np.concatenate([boxes, scores[:, None]], axis=1) for _, boxes, scores, _ in predictions]
        recalls = eval_recalls([a.bboxes for a in anns], proposals, self.proposal_nums, self.iou_thrs,
                               legacy=True)
        results: dict[str, float] = {}
        for i, num in enumerate(self.proposal_nums):
            for j, thr in enumerate(self.iou_thrs):
                results[self._key(f"recall@{num}@{thr}")] = float(recalls[i, j])
        if recalls.shape[1] > 1:
            for i, num in enumerate(self.proposal_nums):
                results[self._key(f"AR@{num}")] = float(recalls[i].mean())
        logger.info("VOC recall:\n%s", text_table(["proposals", *[str(t) for t in self.iou_thrs]],
                                               [[n, *[f"{v:.3f}" for v in recalls[i]]]
                                                for i, n in enumerate(self.proposal_nums)]))
        return results
