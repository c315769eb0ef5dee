"""Few-shot evaluation: box AP split into base classes (``bAP``) and novel classes (``nAP``), as DeFRCN's
VOC and COCO evaluators report it.

Both evaluators add ``bbox/bAP``, ``bbox/bAP50``, ``bbox/bAP75`` (means over the base classes) and
``bbox/nAP``, ``bbox/nAP50``, ``bbox/nAP75`` (over the novel classes) to their parent's ``bbox/AP...``;
a test set of only novel (only base) classes reports its AP as ``nAP`` (``bAP``) too, so a summary
over fine-tunes reads one name whatever the setting. Values are in percent.

The Detectron2 translator picks them for a test set registered with ``base_classes``/``novel_classes``
metadata (:mod:`kiln.data.fewshot`); MM-style configs name them::

    val_evaluator = dict(type='FewShotCOCOEvaluator', base_classes=[...], novel_classes=[...])
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Sequence
from typing import Any

import numpy as np

from kiln.registry import EVALUATORS

from .coco_evaluation import COCOEvaluator
from .pascal_voc_evaluation import PascalVOCDetectionEvaluator

__all__ = ["FewShotCOCOEvaluator", "FewShotPascalVOCEvaluator", "split_class_ids"]

_ITEMS = (("", 0), ("50", 1), ("75", 2))  # name suffix, index in COCOeval.stats


def split_class_ids(class_names: Sequence[str], base: Sequence[str], novel: Sequence[str]
                    ) -> dict[str, list[int]]:
    """``{'b': base label ids, 'n': novel label ids}`` of ``class_names``; a class in neither is an error."""
    names = list(class_names)
    unknown = [c for c in names if c not in base and c not in novel]
    if unknown:
        raise ValueError(f"classes {unknown} are neither in base_classes {list(base)} nor in novel_classes "
                         f"{list(novel)}; the few-shot split must cover every evaluated class")
    return {"b": [i for i, c in enumerate(names) if c in base],
            "n": [i for i, c in enumerate(names) if c in novel]}


@EVALUATORS.register_module()
class FewShotCOCOEvaluator(COCOEvaluator):
    """:class:`~.coco_evaluation.COCOEvaluator` plus COCO AP over the base and over the novel categories
    (COCOeval rerun with ``params.catIds`` restricted to each part, as DeFRCN does).

    Args:
        dataset: the evaluated dataset (ground truth; given by the evaluator builder).
        base_classes, novel_classes: class names of each part.
        dataset_name: a catalog name instead of ``dataset`` (Detectron2-style use).
        other arguments: as :class:`~.coco_evaluation.COCOEvaluator`.
    """

    def __init__(self, dataset: Any = None, *, base_classes: Sequence[str], novel_classes: Sequence[str],
                 dataset_name: str | None = None, output_dir: str | None = None, distributed: bool = True,
                 classwise: bool = True) -> None:
        if dataset_name is not None:
            super().__init__(dataset_name=dataset_name, output_dir=output_dir, distributed=distributed,
                             classwise=classwise)
        else:
            if dataset is None:
                raise ValueError("FewShotCOCOEvaluator needs the evaluated dataset (or dataset_name=)")
            from .dataset_gt import coco_gt_of_dataset

            coco_gt, cat_ids, names = coco_gt_of_dataset(dataset)
            super().__init__(coco_gt, cat_ids=cat_ids, class_names=names, output_dir=output_dir,
                             distributed=distributed, classwise=classwise)
        self._parts = split_class_ids(self._class_names, base_classes, novel_classes)

    def _run_cocoeval(self, coco_results: list[dict[str, Any]], img_ids: list[int],
                      iou_type: str = "bbox") -> dict[str, float]:
        results = super()._run_cocoeval(coco_results, img_ids, iou_type)
        prefix = self._task_prefix(iou_type)  # bbox/bAP ..., and segm/bAP ... for a mask model
        for part, labels in self._parts.items():
            if not labels:
                continue
            _, _, ev = self._make_cocoeval(coco_results, iou_type)
            ev.params.imgIds = img_ids
            ev.params.maxDets = [1, 10, self._max_dets]
            ev.params.catIds = [self._cat_ids[i] for i in labels]
            with contextlib.redirect_stdout(io.StringIO()):
                ev.evaluate()
                ev.accumulate()
                ev.summarize()
            for suffix, i in _ITEMS:
                v = float(ev.stats[i])
                results[f"{prefix}/{part}AP{suffix}"] = v * 100 if v >= 0 else float("nan")
        return results


@EVALUATORS.register_module()
class FewShotPascalVOCEvaluator(PascalVOCDetectionEvaluator):
    """:class:`~.pascal_voc_evaluation.PascalVOCDetectionEvaluator` plus the means of the per-class APs
    over the base and over the novel classes.

    Args:
        dataset_name: the registered VOC test set.
        base_classes, novel_classes: class names of each part.
    """

    def __init__(self, dataset_name: str, *, base_classes: Sequence[str], novel_classes: Sequence[str],
                 distributed: bool = True) -> None:
        super().__init__(dataset_name, distributed=distributed)
        self._parts = split_class_ids(self._class_names, base_classes, novel_classes)

    def _compute(self, predictions: dict[int, list[tuple]]) -> dict[str, float]:
        results = super()._compute(predictions)
        aps = self.per_class_aps
        for part, labels in self._parts.items():
            if not labels:
                continue
            per_thr = {thr: float(np.mean([v[i] for i in labels])) for thr, v in aps.items()}
            results[f"bbox/{part}AP"] = float(np.mean(list(per_thr.values())))
            results[f"bbox/{part}AP50"] = per_thr[50]
            results[f"bbox/{part}AP75"] = per_thr[75]
        return results
