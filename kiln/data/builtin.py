"""Detectron2's built-in dataset names (``coco_2017_train``, ``voc_2007_test``, ...) in kiln's catalogs.

The names, folders and annotation files are Detectron2's (``detectron2/data/datasets/builtin.py``):
everything lives under one root, ``$DETECTRON2_DATASETS`` (default ``datasets/``)::

    datasets/coco/annotations/instances_{train,val}2017.json   datasets/coco/{train,val}2017/
    datasets/VOC2007/{Annotations,ImageSets,JPEGImages}/       datasets/VOC2012/...

Registration is lazy and touches no file: the first access to ``DatasetCatalog`` or
``MetadataCatalog`` registers every name with its metadata (COCO: the 80 ``thing_classes``,
``thing_dataset_id_to_contiguous_id``, ``json_file``, ``image_root``, ``evaluator_type='coco'``;
VOC: the 20 ``thing_classes``, ``dirname``, ``split``, ``year``, ``evaluator_type='pascal_voc'``).
The files are read when ``DatasetCatalog.get(name)`` is called; a missing one is one error naming
the expected path and ``$DETECTRON2_DATASETS``.

Example::

    >>> from kiln.data import MetadataCatalog
    >>> MetadataCatalog.get('voc_2007_test').year
    2007
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from .builtin_meta import coco_instances_meta, voc_meta
from .catalog import DatasetCatalog, MetadataCatalog, add_lazy_registrar
from .datasets.coco import load_coco_json
from .datasets.pascal_voc import load_voc_instances

__all__ = ["COCO_SPLITS", "VOC_SPLITS", "ENV_VAR", "builtin_dataset_names", "datasets_root",
           "register_all_builtin", "check_builtin_files"]

ENV_VAR = "DETECTRON2_DATASETS"

# name -> (image folder, instances json), relative to the root.
COCO_SPLITS: dict[str, tuple[str, str]] = {
    "coco_2014_train": ("coco/train2014", "coco/annotations/instances_train2014.json"),
    "coco_2014_val": ("coco/val2014", "coco/annotations/instances_val2014.json"),
    "coco_2014_minival": ("coco/val2014", "coco/annotations/instances_minival2014.json"),
    "coco_2014_valminusminival": ("coco/val2014", "coco/annotations/instances_valminusminival2014.json"),
    "coco_2017_train": ("coco/train2017", "coco/annotations/instances_train2017.json"),
    "coco_2017_val": ("coco/val2017", "coco/annotations/instances_val2017.json"),
    "coco_2017_test": ("coco/test2017", "coco/annotations/image_info_test2017.json"),
    "coco_2017_test-dev": ("coco/test2017", "coco/annotations/image_info_test-dev2017.json"),
    "coco_2017_val_100": ("coco/val2017", "coco/annotations/instances_val2017_100.json"),
}
# name -> (year folder, split): the year is the one in the name.
VOC_SPLITS: dict[str, tuple[str, str]] = {
    "voc_2007_trainval": ("VOC2007", "trainval"),
    "voc_2007_train": ("VOC2007", "train"),
    "voc_2007_val": ("VOC2007", "val"),
    "voc_2007_test": ("VOC2007", "test"),
    "voc_2012_trainval": ("VOC2012", "trainval"),
    "voc_2012_train": ("VOC2012", "train"),
    "voc_2012_val": ("VOC2012", "val"),
}

# name -> the loader registered for it, so a re-registration replaces only kiln's own entries.
_REGISTERED: dict[str, Callable[[], list[dict]]] = {}


def datasets_root() -> str:
    """``$DETECTRON2_DATASETS`` (``~`` expanded), default ``datasets``."""
    return os.path.expanduser(os.environ.get(ENV_VAR, "datasets"))


def builtin_dataset_names() -> list[str]:
    """Every built-in name (COCO first, then VOC)."""
    return [*COCO_SPLITS, *VOC_SPLITS]


def _missing(name: str, kind: str, path: str, root: str) -> FileNotFoundError:
    return FileNotFoundError(
        f"Dataset '{name}': its {kind} '{path}' does not exist. Built-in dataset names live under "
        f"${ENV_VAR} (now '{root}'; default 'datasets/'): put the data there in Detectron2's layout "
        f"(coco/annotations/instances_*.json + coco/<split>/, VOC2007/ and VOC2012/ with Annotations/, "
        f"ImageSets/Main/, JPEGImages/), or set {ENV_VAR} to the folder holding it before the first use "
        "of a dataset name."
    )


def check_builtin_files(name: str) -> None:
    """Raise one ``FileNotFoundError`` naming the expected path (and ``$DETECTRON2_DATASETS``) when
    the files of built-in dataset ``name`` are missing; a name that is not built in passes."""
    meta = MetadataCatalog.get(name)
    root = meta.get("datasets_root", datasets_root())
    if name in COCO_SPLITS:
        for kind, path in (("annotation file", meta.json_file), ("image folder", meta.image_root)):
            if not os.path.exists(path):
                raise _missing(name, kind, path, root)
    elif name in VOC_SPLITS:
        split_file = os.path.join(meta.dirname, "ImageSets", "Main", meta.split + ".txt")
        for kind, path in (("VOC folder", meta.dirname), ("split file", split_file)):
            if not os.path.exists(path):
                raise _missing(name, kind, path, root)


def _coco_loader(name: str, json_file: str, image_root: str) -> Callable[[], list[dict]]:
    def load() -> list[dict]:
        check_builtin_files(name)
        return load_coco_json(json_file, image_root, name)

    return load


def _voc_loader(name: str, dirname: str, split: str, classes: list[str]) -> Callable[[], list[dict]]:
    def load() -> list[dict]:
        check_builtin_files(name)
        return load_voc_instances(dirname, split, classes)

    return load


def _unregister_own() -> None:
    for name, loader in list(_REGISTERED.items()):
        current = DatasetCatalog.data.get(name)
        if current is loader:
            DatasetCatalog.remove(name)
        if current is None or current is loader:  # the metadata is still kiln's
            MetadataCatalog.pop(name, None)
        del _REGISTERED[name]


def _register(name: str, loader: Callable[[], list[dict]], meta: dict[str, Any]) -> None:
    DatasetCatalog.register(name, loader)
    MetadataCatalog.get(name).set(**meta)
    _REGISTERED[name] = loader


def register_all_builtin(root: str | None = None) -> None:
    """Register (or re-register, replacing kiln's earlier built-in entries) every built-in name
    under ``root`` (default :func:`datasets_root`). Reads no file.

    A name the user registered themselves (after ``DatasetCatalog.remove``) is left alone and
    kept; every other built-in name gets the new root.
    """
    root = datasets_root() if root is None else os.path.expanduser(os.fspath(root))
    _unregister_own()
    for name, (image_dir, json_rel) in COCO_SPLITS.items():
        if name in DatasetCatalog.data:
            continue
        json_file, image_root = os.path.join(root, json_rel), os.path.join(root, image_dir)
        _register(name, _coco_loader(name, json_file, image_root),
                  dict(coco_instances_meta(), json_file=json_file, image_root=image_root,
                       evaluator_type="coco", datasets_root=root))
    for name, (folder, split) in VOC_SPLITS.items():
        if name in DatasetCatalog.data:
            continue
        dirname, year = os.path.join(root, folder), int(name.split("_")[1])
        classes = voc_meta()["thing_classes"]
        _register(name, _voc_loader(name, dirname, split, classes),
                  dict(thing_classes=classes, dirname=dirname, split=split, year=year,
                       evaluator_type="pascal_voc", datasets_root=root))


add_lazy_registrar(register_all_builtin)
