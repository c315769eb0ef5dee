"""Build an evaluator from a run config's ``evaluation`` entry and the evaluated dataset."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from kiln.registry import EVALUATORS

from .dataset_gt import coco_gt_of_dataset
from .evaluator import DatasetEvaluator

__all__ = ["build_evaluator", "coco_gt_of_dataset", "HOOK_KEYS"]

logger = logging.getLogger(__name__)

# Keys of the MM ``evaluation=dict(...)`` entry that steer the evaluation *hook* (when and how
# often, which checkpoint to keep), not the evaluator. build_evaluator ignores them.
HOOK_KEYS = frozenset({
    "interval", "start", "by_epoch", "save_best", "rule", "greater_keys", "less_keys",
    "gpu_collect", "tmpdir", "broadcast_bn_buffer", "out_dir", "dynamic_intervals",
})
_KILN_METRICS = ("bbox", "segm")
# Metrics only MMDetection 2.x's datasets define (kiln has no spelling of its own for them).
_MMDET2_ONLY = ("proposal", "proposal_fast", "mAP", "recall")
_STYLES = ("kiln", "mmdet2")


def build_evaluator(
    cfg: Mapping | None,
    dataset: Any,
    *,
    output_dir: str | None = None,
    distributed: bool = True,
    style: str = "kiln",
) -> DatasetEvaluator:
    """Build the evaluator a run config asks for.

    ``cfg`` is the config's ``val_evaluator``/``test_evaluator`` (or MMCV ``evaluation``) entry:

    * ``dict(type='CocoMetric', ...)`` / ``dict(type='VOCMetric', ...)`` (MMDetection 3.x): those
      metrics with MMDetection 3.x's names (``coco/bbox_mAP``, ``pascal_voc/mAP``), ground truth
      from ``ann_file`` or ``dataset``.
    * ``dict(type='SomeEvaluator', ...)``: built through ``EVALUATORS``; ``dataset``,
      ``output_dir`` and ``distributed`` are given when the constructor takes them.
    * an untyped ``dict(interval=1, metric=...)`` (MMCV/MMDetection 2.x ``evaluation``, kiln's
      and Detectron2's configs): hook keys (``interval``, ``save_best``, ...) are ignored here.
      ``metric='bbox'`` is kiln's :class:`COCOEvaluator` (``bbox/AP`` in percent) unless
      ``style='mmdet2'``. An entry naming a metric only MMDetection 2.x has (``'mAP'``,
      ``'recall'``, ``'proposal'``, ``'proposal_fast'``), or any entry with ``style='mmdet2'``,
      is evaluated as MMDetection 2.x's dataset would, with its names (``mAP``, ``AP50``,
      ``bbox_mAP``, ``AR@100``; :mod:`.mmdet2_evaluation`).
    * ``None``: ``metric='bbox'``.

    Args:
        style: ``'kiln'`` or ``'mmdet2'`` (an MMDetection 2.x config: 2.x result names for
            ``metric='bbox'`` too, so ``save_best='bbox_mAP'`` works).

    Example::

        >>> ev = build_evaluator(cfg.val_evaluator, val_dataset, output_dir=cfg.work_dir)  # doctest: +SKIP
    """
    if style not in _STYLES:
        raise ValueError(f"build_evaluator: style={style!r} is not one of {_STYLES}.")
    cfg = dict(cfg or {})
    for key in HOOK_KEYS:
        cfg.pop(key, None)
    if "type" in cfg:
        import inspect

        cls = cfg["type"] if not isinstance(cfg["type"], str) else EVALUATORS.get(cfg["type"])
        default_args: dict[str, Any] = {}
        if cls is not None:
            params = inspect.signature(cls).parameters
            if "dataset" in params:
                default_args["dataset"] = dataset
            if "output_dir" in params and output_dir is not None:
                default_args["output_dir"] = output_dir
            if "distributed" in params:
                default_args["distributed"] = distributed
        return EVALUATORS.build(cfg, default_args=default_args, cfg_path="evaluation")
    metrics = cfg.pop("metric", "bbox")
    metrics = list(dict.fromkeys([metrics] if isinstance(metrics, str) else metrics))
    known = _KILN_METRICS + _MMDET2_ONLY
    unsupported = [m for m in metrics if m not in known]
    if unsupported or not metrics:
        raise ValueError(
            f"evaluation.metric: {unsupported or metrics} is not supported; kiln evaluates {known} "
            f"('bbox'/'segm' are COCO box/mask AP; 'mAP'/'recall' Pascal VOC's; 'proposal'/'proposal_fast' "
            f"proposal recall). Or give evaluation.type a custom evaluator registered in EVALUATORS."
        )
    if style == "mmdet2" or any(m in _MMDET2_ONLY for m in metrics):
        from .mmdet2_evaluation import build_mmdet2_evaluator

        return build_mmdet2_evaluator(cfg, metrics, dataset, distributed=distributed)
    classwise = cfg.pop("classwise", True)
    if cfg:
        raise KeyError(
            f"evaluation: unknown keys {sorted(cfg)} for the COCO evaluator. Known: metric, "
            f"classwise, and the hook keys {sorted(HOOK_KEYS)}."
        )
    from .coco_evaluation import COCOEvaluator

    coco_gt, cat_ids, names = coco_gt_of_dataset(dataset)
    return COCOEvaluator(coco_gt, tuple(metrics), cat_ids=cat_ids, class_names=names, output_dir=output_dir,
                         distributed=distributed, classwise=bool(classwise))
