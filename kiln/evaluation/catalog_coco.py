"""The COCO ground truth of a catalog dataset name, for ``COCOEvaluator(dataset_name)``.

A name whose metadata has ``json_file`` (``register_coco_instances``, the built-in COCO names) is
evaluated against that json. Any other name (VOC, a custom loader) is converted from its dataset
dicts to a COCO instances dict, as Detectron2 does: boxes become XYWH, ``category_id`` goes back
to the dataset's ids (``thing_dataset_id_to_contiguous_id`` reversed, or the contiguous label),
boxes are rounded to 3 decimals, ``area`` is the polygon (shoelace) or RLE area when there is a
segmentation and the box area otherwise, and non-integer image ids (VOC's) are numbered 1, 2, ...
(the original kept as ``kiln_image_id``). With an ``output_dir`` the conversion is cached as
``<output_dir>/<name>_coco_format.json`` and reused when ``allow_cached_coco``.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping
from typing import Any

import numpy as np

__all__ = ["convert_to_coco_dict", "coco_gt_of_dataset_name", "is_catalog_name"]

logger = logging.getLogger(__name__)


def is_catalog_name(value: Any) -> bool:
    """True when ``value`` is a dataset name registered in ``DatasetCatalog`` (and not a file)."""
    from kiln.data import DatasetCatalog

    return isinstance(value, str) and not os.path.isfile(value) and value in DatasetCatalog.list()


def _contiguous_to_dataset_ids(meta: Any, num_classes: int) -> list[int]:
    mapping = meta.get("thing_dataset_id_to_contiguous_id")
    if not mapping:
        return list(range(num_classes))
    inverse = {v: k for k, v in mapping.items()}
    return [int(inverse[i]) for i in range(num_classes)]


def _segmentation_area(segm: Any, height: int, width: int) -> float:
    """Polygons: the sum of their shoelace areas (as Detectron2 computes it); RLE: its pixel count."""
    if isinstance(segm, Mapping):
        from pycocotools import mask as mask_utils

        rle = mask_utils.frPyObjects(segm, height, width) if isinstance(segm.get("counts"), list) else segm
        return float(mask_utils.area(rle))
    area = 0.0
    for poly in segm:
        xy = np.asarray(poly, dtype=np.float64).reshape(-1, 2)
        x, y = xy[:, 0], xy[:, 1]
        area += 0.5 * abs(float(np.dot(x, np.roll(y, 1)) - np.dot(y, np.roll(x, 1))))
    return area


def convert_to_coco_dict(dataset_name: str) -> dict[str, Any]:
    """The COCO instances dict (``images``, ``annotations``, ``categories``) of a catalog dataset."""
    from kiln.data import DatasetCatalog, MetadataCatalog
    from kiln.structures import BoxMode

    dicts = DatasetCatalog.get(dataset_name)
    meta = MetadataCatalog.get(dataset_name)
    classes = meta.get("thing_classes")
    if not classes:
        raise ValueError(f"COCOEvaluator('{dataset_name}'): the dataset's metadata has no thing_classes, "
                         "so its categories are unknown. Set "
                         "MetadataCatalog.get(name).set(thing_classes=[...]).")
    dataset_ids = _contiguous_to_dataset_ids(meta, len(classes))
    images, annotations = [], []
    # COCO tools want integer image ids; other ids (VOC's '000005') get 1, 2, ... and are kept as
    # 'kiln_image_id', which COCOEvaluator matches predictions by.
    int_ids = all(isinstance(d["image_id"], int) for d in dicts)
    for k, d in enumerate(dicts):
        image_id = d["image_id"] if int_ids else k + 1
        h, w = int(d["height"]), int(d["width"])
        images.append({"id": image_id, "width": w, "height": h, "file_name": str(d.get("file_name", ""))})
        if not int_ids:
            images[-1]["kiln_image_id"] = d["image_id"]
        for ann in d.get("annotations", []):
            box = BoxMode.convert(np.asarray(ann["bbox"], dtype=np.float64).reshape(1, 4),
                                  BoxMode(ann.get("bbox_mode", BoxMode.XYXY_ABS)), BoxMode.XYWH_ABS)[0]
            segm = ann.get("segmentation")
            area = _segmentation_area(segm, h, w) if segm else float(box[2] * box[3])
            label = int(ann["category_id"])
            if not 0 <= label < len(classes):
                raise ValueError(f"COCOEvaluator('{dataset_name}'): image {image_id} has category_id "
                                 f"{label}, outside the {len(classes)} thing_classes (contiguous labels "
                                 "expected).")
            coco_ann = {"id": len(annotations) + 1, "image_id": image_id,
                        "bbox": [round(float(v), 3) for v in box],
                        "area": area, "iscrowd": int(ann.get("iscrowd", 0)),
                        "category_id": dataset_ids[label]}
            if isinstance(segm, list) and segm:
                coco_ann["segmentation"] = [list(map(float, p)) for p in segm]
            elif isinstance(segm, Mapping):  # RLE, kept for mask AP (bytes counts as text, for json)
                counts = segm["counts"]
                coco_ann["segmentation"] = {"size": [int(v) for v in segm["size"]],
                                            "counts": counts.decode("ascii") if isinstance(counts, bytes)
                                            else counts}
            annotations.append(coco_ann)
    categories = [{"id": cid, "name": name} for cid, name in zip(dataset_ids, classes)]
    logger.info("Converted %d images and %d annotations of '%s' to COCO format.", len(images),
                len(annotations), dataset_name)
    return {"info": {"description": f"kiln conversion of {dataset_name}"}, "images": images,
            "annotations": annotations, "categories": categories}


def coco_gt_of_dataset_name(dataset_name: str, output_dir: str | None = None, allow_cached_coco: bool = True
                            ) -> tuple[Any, list[int], list[str]]:
    """``(coco_gt, cat_ids, class_names)`` of a catalog name: its ``json_file``, or its dicts converted."""
    from kiln.data import MetadataCatalog

    meta = MetadataCatalog.get(dataset_name)
    json_file = meta.get("json_file")
    classes = meta.get("thing_classes")
    if json_file:
        if not os.path.isfile(json_file):
            raise FileNotFoundError(f"COCOEvaluator('{dataset_name}'): its json_file '{json_file}' does not "
                                    "exist; check the dataset's registration (or $DETECTRON2_DATASETS for a "
                                    "built-in name).")
        if not (classes and meta.get("thing_dataset_id_to_contiguous_id")):
            return json_file, None, None  # the json's own sorted category ids and names
        return json_file, _contiguous_to_dataset_ids(meta, len(classes)), list(classes)
    cache = os.path.join(output_dir, f"{dataset_name}_coco_format.json") if output_dir else None
    if cache and allow_cached_coco and os.path.isfile(cache):
        logger.info("Using the cached COCO-format annotations of '%s': %s", dataset_name, cache)
        with open(cache) as f:
            coco = json.load(f)
    else:
        coco = convert_to_coco_dict(dataset_name)
        if cache:
            os.makedirs(output_dir, exist_ok=True)  # type: ignore[arg-type]
            tmp = cache + ".tmp"
            with open(tmp, "w") as f:
                json.dump(coco, f)
            os.replace(tmp, cache)
    return coco, [c["id"] for c in coco["categories"]], [c["name"] for c in coco["categories"]]
