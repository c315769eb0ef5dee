"""The evaluator a catalog dataset asks for, by its metadata's ``evaluator_type``.

Detectron2 leaves ``DefaultTrainer.build_evaluator`` to the user, and its ``tools/train_net.py``
picks the evaluator from ``MetadataCatalog.get(name).evaluator_type``; this is that choice, for
the types kiln evaluates: ``'coco'`` → :class:`COCOEvaluator` and ``'pascal_voc'`` →
:class:`PascalVOCDetectionEvaluator`.

Example::

    class Trainer(DefaultTrainer):
        @classmethod
        def build_evaluator(cls, cfg, dataset_name):
            return evaluator_for_dataset(dataset_name, os.path.join(cfg.OUTPUT_DIR, 'inference'))
"""

from __future__ import annotations

from .evaluator import DatasetEvaluator

__all__ = ["evaluator_for_dataset", "EVALUATOR_TYPES"]

EVALUATOR_TYPES = ("coco", "pascal_voc")


def evaluator_for_dataset(dataset_name: str, output_dir: str | None = None, *, distributed: bool = True
                          ) -> DatasetEvaluator:
    """``COCOEvaluator(dataset_name, output_dir=...)`` or ``PascalVOCDetectionEvaluator(dataset_name)``
    according to the dataset's ``evaluator_type``; any other type is an error naming it."""
    from kiln.data import MetadataCatalog

    kind = MetadataCatalog.get(dataset_name).get("evaluator_type")
    if kind == "coco":
        from .coco_evaluation import COCOEvaluator

        return COCOEvaluator(dataset_name, distributed=distributed, output_dir=output_dir)
    if kind == "pascal_voc":
        from .pascal_voc_evaluation import PascalVOCDetectionEvaluator

        return PascalVOCDetectionEvaluator(dataset_name, distributed=distributed)
    raise ValueError(
        f"Dataset '{dataset_name}' has evaluator_type={kind!r}; kiln evaluates {list(EVALUATOR_TYPES)} "
        "(box AP). Register the dataset with register_coco_instances/register_pascal_voc (they set it), set "
        "MetadataCatalog.get(name).set(evaluator_type='coco'), or build your evaluator yourself.")
