"""Evaluation: the evaluator interface, COCO box AP, and running a model over a dataset.

Importing this package registers its evaluators in ``kiln.registry.EVALUATORS``.
pycocotools and torch load lazily, when an evaluator is built or run.
"""

from .build import build_evaluator, coco_gt_of_dataset
from .coco_evaluation import COCOEvaluator, instances_to_coco_json
from .evaluator import DatasetEvaluator, DatasetEvaluators
from .inference import inference_context, inference_on_dataset

__all__ = [
    "DatasetEvaluator",
    "DatasetEvaluators",
    "COCOEvaluator",
    "instances_to_coco_json",
    "inference_on_dataset",
    "inference_context",
    "build_evaluator",
    "coco_gt_of_dataset",
]
