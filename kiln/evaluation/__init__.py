"""Evaluation: the evaluator interface, COCO box AP, Pascal VOC mAP, and running a model over a dataset.

Importing this package registers its evaluators in ``kiln.registry.EVALUATORS`` (kiln's
``COCOEvaluator`` and Detectron2's ``PascalVOCDetectionEvaluator``; MMDetection 3.x's
``CocoMetric`` and ``VOCMetric``). pycocotools and torch load lazily, when an evaluator is built or run.
"""

from .build import build_evaluator
from .by_name import evaluator_for_dataset
from .coco_evaluation import COCOEvaluator, instances_to_coco_json
from .coco_metric import CocoMetric
from .dataset_gt import coco_gt_of_dataset
from .evaluator import DatasetEvaluator, DatasetEvaluators
from .fewshot_evaluation import FewShotCOCOEvaluator, FewShotPascalVOCEvaluator
from .inference import inference_context, inference_on_dataset
from .pascal_voc_evaluation import PascalVOCDetectionEvaluator
from .testing import print_csv_format, verify_results
from .voc_metric import VOCMetric

__all__ = [
    "FewShotCOCOEvaluator",
    "FewShotPascalVOCEvaluator",
    "DatasetEvaluator",
    "DatasetEvaluators",
    "COCOEvaluator",
    "CocoMetric",
    "VOCMetric",
    "PascalVOCDetectionEvaluator",
    "instances_to_coco_json",
    "inference_on_dataset",
    "inference_context",
    "build_evaluator",
    "evaluator_for_dataset",
    "print_csv_format",
    "verify_results",
    "coco_gt_of_dataset",
]
