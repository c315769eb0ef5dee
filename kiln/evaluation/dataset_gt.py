"""Ground truth read from a dataset, for evaluators that are not given an annotation file.

MMDetection's ``VOCMetric`` (and ``CocoMetric`` without ``ann_file``) take the ground truth from
the evaluated data itself. kiln reads it from the dataset object (never from the batch, whose
boxes are in resized-input pixels): per image its size, the boxes and labels, and the *ignored*
boxes and their labels (VOC ``difficult`` objects, COCO crowd regions, ``ignore_flag``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["ImageAnnotations", "dataset_annotations", "dataset_class_names", "voc_year", "coco_gt_of_dataset"]


@dataclass
class ImageAnnotations:
    """One image's ground truth in original-image pixels (XYXY, contiguous 0-based labels)."""

    image_id: Any
    width: int
    height: int
    bboxes: np.ndarray
    labels: np.ndarray
    bboxes_ignore: np.ndarray
    labels_ignore: np.ndarray | None  # None: the dataset does not say which class an ignored box is

    def as_eval_dict(self) -> dict[str, Any]:
        """The per-image dict :func:`kiln.evaluation.mean_ap.eval_map` reads."""
        return dict(bboxes=self.bboxes, labels=self.labels, bboxes_ignore=self.bboxes_ignore,
                    labels_ignore=self.labels_ignore)


def _leaves(dataset: Any) -> list[Any]:
    """The datasets that hold annotations, through Repeat/ClassBalanced (``.dataset``) and Concat
    (``.datasets``) wrappers."""
    if hasattr(dataset, "data_infos") or hasattr(dataset, "get_data_info"):
        return [dataset]
    if hasattr(dataset, "datasets"):
        return [leaf for d in dataset.datasets for leaf in _leaves(d)]
    if hasattr(dataset, "dataset"):
        return _leaves(dataset.dataset)
    raise TypeError(
        f"{type(dataset).__name__} exposes no annotations (no 'data_infos' with get_ann_info, nor "
        f"'get_data_info'), so the evaluator cannot read the ground truth from it. Use an MM-style "
        f"dataset (CocoDataset, VOCDataset, CustomDataset) or give the metric an ann_file."
    )


def _boxes(rows: list[Any]) -> np.ndarray:
    return np.asarray(rows, dtype=np.float32).reshape(-1, 4)


def _labels(rows: list[Any]) -> np.ndarray:
    return np.asarray(rows, dtype=np.int64).reshape(-1)


def _image_annotations(ds: Any, idx: int) -> ImageAnnotations:
    infos = getattr(ds, "data_infos", None)
    if infos is not None:
        info = infos[idx]
        image_id = info.get("id", idx)
        if "objects" in info:  # kiln's VOC format: label, bbox, difficult per object
            objs = info["objects"]
            keep = [o for o in objs if not o.get("difficult")]
            hard = [o for o in objs if o.get("difficult")]
            return ImageAnnotations(image_id, int(info["width"]), int(info["height"]),
                                    _boxes([o["bbox"] for o in keep]), _labels([o["label"] for o in keep]),
                                    _boxes([o["bbox"] for o in hard]), _labels([o["label"] for o in hard]))
        ann = ds.get_ann_info(idx)
        labels_ignore = ann.get("labels_ignore")
        return ImageAnnotations(image_id, int(info["width"]), int(info["height"]),
                                _boxes(ann["bboxes"]), _labels(ann["labels"]),
                                _boxes(ann.get("bboxes_ignore", [])),
                                None if labels_ignore is None else _labels(labels_ignore))
    # MMEngine-style dataset: get_data_info(i) -> dict(img_id, width, height, instances=[...]).
    info = ds.get_data_info(idx)
    insts = info.get("instances", [])
    keep = [i for i in insts if not i.get("ignore_flag", 0)]
    hard = [i for i in insts if i.get("ignore_flag", 0)]
    return ImageAnnotations(info.get("img_id", idx), int(info["width"]), int(info["height"]),
                            _boxes([i["bbox"] for i in keep]), _labels([i["bbox_label"] for i in keep]),
                            _boxes([i["bbox"] for i in hard]), _labels([i["bbox_label"] for i in hard]))


def dataset_annotations(dataset: Any) -> dict[Any, ImageAnnotations]:
    """Per image id, the ground truth of every image of ``dataset`` (wrappers unwrapped).

    Raises:
        TypeError: the dataset exposes no annotations.
        ValueError: two images share an id (e.g. a ConcatDataset of overlapping splits), so a
            prediction could not be matched to one ground truth.
    """
    out: dict[Any, ImageAnnotations] = {}
    for ds in _leaves(dataset):
        for idx in range(len(ds)):
            ann = _image_annotations(ds, idx)
            if ann.image_id in out:
                raise ValueError(
                    f"{type(dataset).__name__}: image id {ann.image_id!r} occurs twice, so its "
                    f"predictions cannot be matched to one ground truth. Evaluate each split "
                    f"separately or give the images distinct ids."
                )
            out[ann.image_id] = ann
    return out


def dataset_class_names(dataset: Any) -> list[str] | None:
    """Class names of a dataset (``metainfo['classes']`` or ``CLASSES``), through wrappers."""
    seen = 0
    while dataset is not None and seen < 10:
        meta = getattr(dataset, "metainfo", None)
        if isinstance(meta, Mapping) and meta.get("classes"):
            return list(meta["classes"])
        names = getattr(dataset, "CLASSES", None)
        if names:
            return list(names)
        dataset = getattr(dataset, "dataset", None) or (getattr(dataset, "datasets", None) or [None])[0]
        seen += 1
    return None


def voc_year(dataset: Any) -> int | None:
    """The VOC year (2007, 2012) of a dataset, as MMDetection 2.x infers it: from a ``year``
    attribute, else from ``VOC2007``/``VOC2012`` in its image folder or annotation path."""
    for ds in _leaves(dataset):
        year = getattr(ds, "year", None)
        if year:
            return int(year)
        prefix = getattr(ds, "data_prefix", None)
        paths = [getattr(ds, "img_prefix", None), getattr(ds, "ann_file", None)]
        if isinstance(prefix, Mapping):
            paths += list(prefix.values())
        for p in paths:
            if isinstance(p, (str, os.PathLike)):
                for y in (2007, 2012):
                    if f"VOC{y}" in os.fspath(p):
                        return y
    return None


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
