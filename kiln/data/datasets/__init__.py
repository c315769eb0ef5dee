"""Datasets: COCO/VOC loaders for the catalogs, MM-style dataset classes, the generated shapes data.

Importing this package registers every dataset class in ``DATASETS`` and the built-in
``shapes_train``/``shapes_val`` entries in ``DatasetCatalog``.
"""

from __future__ import annotations

from .coco import CocoParse, coco_api_from_dict, load_coco_json, parse_coco_json, register_coco_instances
from .coco_dataset import CocoDataset
from .custom import CustomDataset
from .pascal_voc import VOC_CLASSES, VOCDataset, load_voc_instances, parse_voc_xml, register_pascal_voc
from .shapes import (
    SHAPE_CLASSES,
    ShapesDataset,
    default_data_root,
    generate_shapes_dataset,
    register_shapes,
    shapes_paths,
)
from .wrappers import ClassBalancedDataset, ConcatDataset, RepeatDataset, build_dataset

__all__ = [
    "ClassBalancedDataset",
    "CocoDataset",
    "CocoParse",
    "ConcatDataset",
    "CustomDataset",
    "RepeatDataset",
    "SHAPE_CLASSES",
    "ShapesDataset",
    "VOCDataset",
    "VOC_CLASSES",
    "build_dataset",
    "coco_api_from_dict",
    "default_data_root",
    "generate_shapes_dataset",
    "load_coco_json",
    "load_voc_instances",
    "parse_coco_json",
    "parse_voc_xml",
    "register_coco_instances",
    "register_pascal_voc",
    "register_shapes",
    "shapes_paths",
]
