"""MMDetection 2.x ``evaluation=dict(metric=...)`` entries: the dataset's ``evaluate()`` arguments
and result names.

In MMDetection 2.x the metric belongs to the dataset: ``CocoDataset.evaluate(metric='bbox' | 'segm' |
'proposal' | 'proposal_fast', classwise, proposal_nums, iou_thrs, metric_items,
jsonfile_prefix)`` reports ``bbox_mAP``, ``AR@100``...; ``VOCDataset.evaluate(metric='mAP' |
'recall', iou_thr, proposal_nums, scale_ranges)`` reports ``mAP``, ``AP50``,
``recall@100@0.5``... and uses 11-point AP for VOC2007, area AP otherwise. Here those are
:class:`CocoMetric` / :class:`VOCMetric` without a key prefix, with the 2.x argument spellings.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from .coco_metric import CocoMetric
from .dataset_gt import voc_year
from .evaluator import DatasetEvaluator
from .voc_metric import VOCMetric

__all__ = ["MMDET2_COCO_METRICS", "MMDET2_VOC_METRICS", "build_mmdet2_evaluator"]

logger = logging.getLogger(__name__)

MMDET2_COCO_METRICS = ("bbox", "segm", "proposal", "proposal_fast")
MMDET2_VOC_METRICS = ("mAP", "recall")
_COCO_KEYS = ("classwise", "proposal_nums", "iou_thrs", "metric_items", "jsonfile_prefix")
_VOC_KEYS = ("iou_thr", "proposal_nums", "scale_ranges")


class _Mmdet2CocoMetric(CocoMetric):
    """CocoMetric reporting MMDetection 2.x's unprefixed names (``bbox_mAP``)."""

    default_prefix = None


class _Mmdet2VOCMetric(VOCMetric):
    """VOCMetric reporting MMDetection 2.x's unprefixed names (``mAP``, ``AP50``)."""

    default_prefix = None


def _check_keys(cfg: Mapping[str, Any], known: tuple[str, ...], metrics: list[str]) -> None:
    unknown = sorted(set(cfg) - set(known))
    if unknown:
        raise KeyError(
            f"evaluation: unknown keys {unknown} for metric={metrics} (MMDetection 2.x's dataset.evaluate "
            f"takes {list(known)} for it, besides the hook keys such as interval/save_best)."
        )


def build_mmdet2_evaluator(cfg: Mapping[str, Any], metrics: list[str], dataset: Any, *,
                           distributed: bool = True) -> DatasetEvaluator:
    """The evaluator of an MMDetection 2.x ``evaluation`` entry (hook keys and ``metric`` removed).

    ``metrics`` are COCO metrics (``bbox``, ``proposal``, ``proposal_fast``) or one VOC metric
    (``mAP`` or ``recall``), as the 2.x datasets accept them.
    """
    cfg = dict(cfg)
    voc = [m for m in metrics if m in MMDET2_VOC_METRICS]
    if voc:
        if len(metrics) != 1:
            raise ValueError(f"evaluation.metric={metrics}: a VOC metric ({list(MMDET2_VOC_METRICS)}) is "
                             "evaluated alone, as MMDetection 2.x's VOCDataset.evaluate does; give one.")
        _check_keys(cfg, _VOC_KEYS, metrics)
        year = voc_year(dataset)
        eval_mode = "11points" if year == 2007 else "area"
        logger.info("evaluation: VOC %s with %s AP (%s).", metrics[0], eval_mode,
                    "VOC2007" if year == 2007 else f"dataset year {year}")
        return _Mmdet2VOCMetric(dataset, iou_thrs=cfg.get("iou_thr", 0.5), metric=metrics[0],
                                proposal_nums=cfg.get("proposal_nums", (100, 300, 1000)),
                                scale_ranges=cfg.get("scale_ranges"), eval_mode=eval_mode,
                                distributed=distributed)
    _check_keys(cfg, _COCO_KEYS, metrics)
    return _Mmdet2CocoMetric(metric=metrics, classwise=bool(cfg.get("classwise", False)),
                             proposal_nums=cfg.get("proposal_nums", (100, 300, 1000)),
                             iou_thrs=cfg.get("iou_thrs"), metric_items=cfg.get("metric_items"),
                             outfile_prefix=cfg.get("jsonfile_prefix"), dataset=dataset,
                             distributed=distributed)
