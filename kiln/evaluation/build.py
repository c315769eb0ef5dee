"""Build an evaluator from a run config's ``evaluation`` entry and the evaluated dataset."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from kiln.registry import EVALUATORS

from .evaluator import DatasetEvaluator

__all__ = ["build_evaluator", "coco_gt_of_dataset", "HOOK_KEYS"]

logger = logging.getLogger(__name__)

# Keys of the MM ``evaluation=dict(...)`` entry that steer the evaluation *hook* (when and how
# often, which checkpoint to keep), not the evaluator. build_evaluator ignores them.
HOOK_KEYS = frozenset({
    "interval", "start", "by_epoch", "save_best", "rule", "greater_keys", "less_keys",
    "gpu_collect", "tmpdir", "broadcast_bn_buffer", "out_dir", "dynamic_intervals",
})
_SUPPORTED_METRICS = ("bbox",)
_MM3_COCO_NAMES = ("CocoMetric", "COCOMetric")


def _unwrap(dataset: Any) -> Any:
    # RepeatDataset / ClassBalancedDataset / MapDataset wrap the real dataset in `.dataset`.
    seen = 0
    while not hasattr(dataset, "coco") and hasattr(dataset, "dataset") and seen < 10:
        dataset = dataset.dataset
        seen += 1
    return dataset


def coco_gt_of_dataset(dataset: Any) -> tuple[Any, list[int] | None, list[str] | None]:
    """Return ``(coco_gt, cat_ids, class_names)`` for a dataset, for :class:`COCOEvaluator`.

    Accepts kiln's ``CocoDataset`` (its ``coco``, ``cat_ids``, ``CLASSES``), wrappers around it
    (``.dataset``), a path to a COCO json, or the name of a catalog dataset whose metadata has
    ``json_file``.
    """
    import os

    if isinstance(dataset, (str, os.PathLike)):
        path = os.fspath(dataset)
        if os.path.isfile(path):
            return path, None, None
        from kiln.data import MetadataCatalog

        meta = MetadataCatalog.get(path)
        json_file = getattr(meta, "json_file", None)
        if not json_file:
            raise ValueError(
                f"build_evaluator: dataset '{path}' is neither a file nor a catalog dataset with "
                f"metadata 'json_file'; register it with register_coco_instances(...) or pass "
                f"the CocoDataset object."
            )
        cat_map = getattr(meta, "thing_dataset_id_to_contiguous_id", None)
        cat_ids = [d for d, _ in sorted(cat_map.items(), key=lambda kv: kv[1])] if cat_map else None
        return json_file, cat_ids, getattr(meta, "thing_classes", None)
    inner = _unwrap(dataset)
    coco = getattr(inner, "coco", None)
    if coco is None:
        raise TypeError(
            f"build_evaluator: {type(dataset).__name__} has no 'coco' attribute (a pycocotools COCO "
            f"object), so COCO box AP cannot be computed for it. Use a CocoDataset (or a dataset "
            f"exposing `coco` and `cat_ids`), or give evaluation=dict(type=..., ...) an evaluator "
            f"that needs no COCO ground truth."
        )
    cat_ids = getattr(inner, "cat_ids", None)
    names = getattr(inner, "CLASSES", None)
    return coco, (list(cat_ids) if cat_ids is not None else None), (list(names) if names else None)


def build_evaluator(
    cfg: Mapping | None,
    dataset: Any,
    *,
    output_dir: str | None = None,
    distributed: bool = True,
) -> DatasetEvaluator:
    """Build the evaluator a run config asks for.

    ``cfg`` is the config's ``evaluation`` entry:

    * MM style ``dict(interval=1, metric='bbox')`` (``metric`` a str or list; ``classwise``
      passes through): a :class:`COCOEvaluator` over ``dataset``'s COCO ground truth.
      Hook keys (``interval``, ``save_best``, ``rule``, ...) are ignored here.
    * MMDetection 3 ``dict(type='CocoMetric', ann_file=..., metric='bbox')``: the same
      :class:`COCOEvaluator`, over ``ann_file`` when given (else over ``dataset``).
    * ``dict(type='SomeEvaluator', ...)``: built through ``EVALUATORS``; ``dataset`` is given as
      the ``dataset`` argument when the evaluator's constructor takes one.
    * ``None``: ``metric='bbox'``.

    Example::

        >>> ev = build_evaluator(cfg.evaluation, val_dataset, output_dir=cfg.work_dir)  # doctest: +SKIP
    """
    cfg = dict(cfg or {})
    for key in HOOK_KEYS:
        cfg.pop(key, None)
    if cfg.get("type") in _MM3_COCO_NAMES:
        # MMDetection 3 style val_evaluator=dict(type='CocoMetric', ann_file=..., metric='bbox').
        cfg.pop("type")
        ann_file = cfg.pop("ann_file", None)
        for key in ("format_only", "backend_args", "outfile_prefix", "proposal_nums", "sort_categories"):
            cfg.pop(key, None)
        if ann_file is not None:
            dataset = ann_file
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
    unsupported = [m for m in metrics if m not in _SUPPORTED_METRICS]
    if unsupported:
        raise ValueError(
            f"evaluation.metric: {unsupported} is not supported; kiln evaluates {_SUPPORTED_METRICS} "
            f"(COCO box AP). Set evaluation=dict(metric='bbox') or give evaluation.type a custom "
            f"evaluator registered in EVALUATORS."
        )
    classwise = cfg.pop("classwise", True)
    if cfg:
        raise KeyError(
            f"evaluation: unknown keys {sorted(cfg)} for the COCO evaluator. Known: metric, "
            f"classwise, and the hook keys {sorted(HOOK_KEYS)}."
        )
    from .coco_evaluation import COCOEvaluator

    coco_gt, cat_ids, names = coco_gt_of_dataset(dataset)
    # Only 'bbox' exists today, so one evaluator; more metrics would each add one here.
    return COCOEvaluator(coco_gt, cat_ids=cat_ids, class_names=names, output_dir=output_dir,
                         distributed=distributed, classwise=bool(classwise))
