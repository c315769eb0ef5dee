"""Data: catalogs, datasets (COCO, VOC, generated shapes), samplers, resumable loaders, transforms.

Importing ``kiln.data`` arranges Detectron2's built-in dataset names (``coco_2017_train``,
``voc_2007_test``, ...: :mod:`kiln.data.builtin`) and ``shapes_train``/``shapes_val`` to be
registered on first catalog use, and registers the dataset classes (``DATASETS``), samplers
(``SAMPLERS``), loader builders (``DATA_LOADERS``) and transforms (``TRANSFORMS``, in
:mod:`kiln.data.transforms`).
``DatasetMapper`` (:mod:`kiln.data.mapper`) loads on first access.
"""

from __future__ import annotations

import importlib
from typing import Any

from . import (
    builtin,  # noqa: F401  (Detectron2's built-in names, registered on first catalog use)
    fewshot,  # noqa: F401  (DeFRCN's few-shot names, registered on first catalog use)
    transforms,  # noqa: F401  (registers TRANSFORMS)
)
from .build import (
    ResumableLoader,
    build_dataloader,
    build_test_loader,
    build_train_loader,
    sample_seed,
    seeded_rngs,
    trivial_batch_collator,
)
from .catalog import DatasetCatalog, Metadata, MetadataCatalog
from .common import DatasetFromList, MapDataset
from .datasets import (
    ClassBalancedDataset,
    CocoDataset,
    ConcatDataset,
    CustomDataset,
    RepeatDataset,
    ShapesDataset,
    VOCDataset,
    build_dataset,
    generate_shapes_dataset,
    load_coco_json,
    load_voc_instances,
    register_coco_instances,
    register_pascal_voc,
)
from .detection_loaders import (
    build_detection_test_loader,
    build_detection_train_loader,
    get_detection_dataset_dicts,
)
from .loader_cfg import build_dataloader_from_cfg
from .samplers import (
    InferenceSampler,
    RepeatFactorTrainingSampler,
    TrainingSampler,
    repeat_factors_from_category_frequency,
)

__all__ = [
    "ClassBalancedDataset",
    "CocoDataset",
    "ConcatDataset",
    "CustomDataset",
    "RepeatDataset",
    "ShapesDataset",
    "VOCDataset",
    "build_dataset",
    "build_detection_test_loader",
    "build_detection_train_loader",
    "generate_shapes_dataset",
    "get_detection_dataset_dicts",
    "load_coco_json",
    "load_voc_instances",
    "register_coco_instances",
    "register_pascal_voc",
    "DatasetCatalog",
    "DatasetFromList",
    "InferenceSampler",
    "MapDataset",
    "Metadata",
    "MetadataCatalog",
    "RepeatFactorTrainingSampler",
    "ResumableLoader",
    "TrainingSampler",
    "build_dataloader",
    "build_dataloader_from_cfg",
    "build_test_loader",
    "build_train_loader",
    "repeat_factors_from_category_frequency",
    "sample_seed",
    "seeded_rngs",
    "trivial_batch_collator",
]

# The mapper (Detectron2-style) loads on first access.
_LAZY_MODULES = {"mapper": "kiln.data.mapper"}
_LAZY_NAMES = {"DatasetMapper": "kiln.data.mapper"}


def __getattr__(name: str) -> Any:
    if name in _LAZY_MODULES:
        value = importlib.import_module(_LAZY_MODULES[name])
    elif name in _LAZY_NAMES:
        value = getattr(importlib.import_module(_LAZY_NAMES[name]), name)
    else:
        raise AttributeError(f"module 'kiln.data' has no attribute '{name}'")
    globals()[name] = value
    return value
