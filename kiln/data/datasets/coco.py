"""COCO-format json: one validated parser shared by ``load_coco_json`` and ``CocoDataset``.

Malformed-annotation policy (also in docs/datasets.md):

* **skipped, counted, logged once per file**: boxes with width or height <= 0 (or missing area),
  boxes lying entirely outside their image, annotations of categories excluded by ``classes=``.
* **kept, flagged**: crowd annotations (``iscrowd=1``) stay in the dataset dicts; training
  targets ignore them (the mapper drops them, ``CocoDataset`` puts them in ``bboxes_ignore``).
* **errors** naming the json file, the id and the fix: unknown category id, duplicate image or
  annotation id, annotation of an image that is not in ``images``, a bbox that is not 4 numbers,
  an image file missing under ``image_root``.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import os.path as osp
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from kiln.structures import BoxMode

from ..catalog import DatasetCatalog, MetadataCatalog

logger = logging.getLogger(__name__)

__all__ = ["CocoParse", "parse_coco_json", "load_coco_json", "register_coco_instances", "coco_api_from_dict"]


@dataclass
class CocoParse:
    """A validated COCO json: images in id order, valid annotations per image, category mapping."""

    json_file: str
    raw: dict[str, Any]
    cat_ids: list[int]
    classes: list[str]
    images: list[dict[str, Any]]
    anns_by_image: dict[int, list[dict[str, Any]]]
    skipped: dict[str, int] = field(default_factory=dict)

    @property
    def cat2label(self) -> dict[int, int]:
        """COCO category id → contiguous 0-based label."""
        return {c: i for i, c in enumerate(self.cat_ids)}


def _read_json(json_file: str) -> dict[str, Any]:
    if not osp.isfile(json_file):
        raise FileNotFoundError(
            f"COCO annotation file '{json_file}' does not exist. Check ann_file/json_file (relative paths "
            f"are resolved from the working directory {os.getcwd()!r}, or from data_root if given)."
        )
    with open(json_file, encoding="utf-8") as f:
        try:
            data = json.load(f)
        except json.JSONDecodeError as exc:
            raise ValueError(f"COCO annotation file '{json_file}' is not valid json: {exc}.") from exc
    if not isinstance(data, dict) or "images" not in data or "categories" not in data:
        keys = sorted(data) if isinstance(data, dict) else type(data).__name__
        raise ValueError(
            f"'{json_file}' is not a COCO instances file: expected a dict with 'images', 'annotations' and "
            f"'categories', got {keys}."
        )
    return data


def parse_coco_json(
    json_file: str, image_root: str | None = None, classes: Sequence[str] | None = None,
    check_files: bool = True,
) -> CocoParse:
    """Read and validate a COCO instances json (see the module docstring for the policy).

    Args:
        json_file: path of the json.
        image_root: folder the images' ``file_name`` are relative to (checked when ``check_files``).
        classes: keep only these category names, in this order (labels follow it).
        check_files: raise if an image file is missing.
    """
    json_file = os.fspath(json_file)
    data = _read_json(json_file)
    categories = data["categories"]
    all_cats: dict[int, str] = {}
    for c in categories:
        if c["id"] in all_cats:
            raise ValueError(f"'{json_file}': category id {c['id']} appears twice in 'categories'; "
                             "make category ids unique.")
        all_cats[c["id"]] = c["name"]
    if classes is None:
        cat_ids = sorted(all_cats)
        names = [all_cats[c] for c in cat_ids]
    else:
        by_name = {n: i for i, n in all_cats.items()}
        missing = [n for n in classes if n not in by_name]
        if missing:
            raise ValueError(f"'{json_file}': classes {missing} are not among the json's categories "
                             f"{sorted(by_name)}; fix `classes=`.")
        names = list(classes)
        cat_ids = [by_name[n] for n in names]
    kept_cats = set(cat_ids)

    images: dict[int, dict[str, Any]] = {}
    for img in data["images"]:
        if img["id"] in images:
            raise ValueError(f"'{json_file}': image id {img['id']} appears twice in 'images' "
                             f"(file_name {img.get('file_name')!r}); make image ids unique.")
        images[img["id"]] = img

    skipped: dict[str, int] = defaultdict(int)
    examples: dict[str, list] = defaultdict(list)
    anns_by_image: dict[int, list[dict[str, Any]]] = defaultdict(list)
    seen_ann_ids: set[Any] = set()
    for ann in data.get("annotations", []):
        ann_id = ann.get("id")
        if ann_id is not None:
            if ann_id in seen_ann_ids:
                raise ValueError(f"'{json_file}': annotation id {ann_id} appears twice; annotation ids "
                                 "must be unique (re-number the annotations).")
            seen_ann_ids.add(ann_id)
        img_id = ann.get("image_id")
        if img_id not in images:
            raise ValueError(f"'{json_file}': annotation {ann_id} refers to image_id {img_id!r}, which is "
                             "not in 'images'. Remove the annotation or add the image entry.")
        cat = ann.get("category_id")
        if cat not in all_cats:
            raise ValueError(f"'{json_file}': annotation {ann_id} has category_id {cat!r}, which is not in "
                             f"'categories' (ids {sorted(all_cats)}). Fix the id or add the category.")
        if cat not in kept_cats:
            skipped["category not in classes"] += 1
            continue
        bbox = ann.get("bbox")
        if not isinstance(bbox, (list, tuple)) or len(bbox) != 4:
            raise ValueError(f"'{json_file}': annotation {ann_id} has bbox {bbox!r}; expected [x, y, w, h].")
        x, y, w, h = (float(v) for v in bbox)
        img = images[img_id]
        if w <= 0 or h <= 0:
            skipped["non-positive width/height"] += 1
            examples["non-positive width/height"].append(ann_id)
            continue
        iw, ih = img.get("width"), img.get("height")
        if iw is not None and ih is not None and (x >= iw or y >= ih or x + w <= 0 or y + h <= 0):
            skipped["box outside its image"] += 1
            examples["box outside its image"].append(ann_id)
            continue
        if ann.get("iscrowd", 0):
            skipped["crowd (kept as iscrowd=1)"] += 1
        anns_by_image[img_id].append(ann)

    for reason, n in skipped.items():
        ex = examples.get(reason)
        ids = f" (annotation ids {ex[:5]}{'...' if len(ex) > 5 else ''})" if ex else ""
        verb = "noted" if reason.startswith("crowd") else "skipped"
        logger.warning("%s: %s %d annotations: %s%s", json_file, verb, n, reason, ids)

    ordered = [images[i] for i in sorted(images)]
    if check_files and image_root is not None:
        missing = [im for im in ordered if not osp.isfile(osp.join(image_root, im["file_name"]))]
        if missing:
            raise FileNotFoundError(
                f"'{json_file}': {len(missing)} of {len(ordered)} image files are missing under "
                f"image_root '{image_root}', e.g. image id {missing[0]['id']} ({missing[0]['file_name']!r}). "
                "Check image_root/img_prefix, or pass check_files=False to defer the error to loading time."
            )
    return CocoParse(json_file, data, cat_ids, names, ordered, dict(anns_by_image), dict(skipped))


def coco_api_from_dict(data: dict[str, Any]) -> Any:
    """A pycocotools ``COCO`` object built from an already loaded dict (no second read, no prints)."""
    from pycocotools.coco import COCO

    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO()
        coco.dataset = data
        coco.createIndex()
    return coco


def load_coco_json(
    json_file: str,
    image_root: str,
    dataset_name: str | None = None,
    extra_annotation_keys: Sequence[str] | None = None,
    check_files: bool = True,
) -> list[dict[str, Any]]:
    """Load a COCO instances json as standard dataset dicts.

    ``category_id`` in the result is the contiguous 0-based label (the COCO id order). When
    ``dataset_name`` is given, its metadata gets ``thing_classes``,
    ``thing_dataset_id_to_contiguous_id``, ``json_file``, ``image_root`` and
    ``evaluator_type='coco'``. Segmentation (polygons or RLE) and ``iscrowd`` are kept.

    Example::

        >>> dicts = load_coco_json('ann.json', 'images/')   # doctest: +SKIP
        >>> dicts[0]['annotations'][0]['bbox_mode'] is BoxMode.XYWH_ABS   # doctest: +SKIP
    """
    parsed = parse_coco_json(json_file, image_root, check_files=check_files)
    if dataset_name is not None:
        meta = MetadataCatalog.get(dataset_name)
        meta.set(thing_classes=parsed.classes,
                 thing_dataset_id_to_contiguous_id=parsed.cat2label,
                 json_file=os.fspath(json_file), image_root=os.fspath(image_root), evaluator_type="coco")
    cat2label = parsed.cat2label
    keys = ["iscrowd", "bbox", "category_id", "segmentation", "area", "id"]
    keys += list(extra_annotation_keys or [])
    dicts = []
    for img in parsed.images:
        record: dict[str, Any] = {
            "file_name": osp.join(image_root, img["file_name"]),
            "height": img["height"],
            "width": img["width"],
            "image_id": img["id"],
        }
        objs = []
        for ann in parsed.anns_by_image.get(img["id"], []):
            obj = {k: ann[k] for k in keys if k in ann}
            obj.setdefault("iscrowd", 0)
            obj["bbox"] = [float(v) for v in ann["bbox"]]
            obj["bbox_mode"] = BoxMode.XYWH_ABS
            obj["category_id"] = cat2label[ann["category_id"]]
            seg = obj.get("segmentation")
            if isinstance(seg, list):
                # Polygons need >= 3 points (6 numbers); shorter ones cannot be rasterized.
                seg = [p for p in seg if len(p) % 2 == 0 and len(p) >= 6]
                if seg:
                    obj["segmentation"] = seg
                else:
                    obj.pop("segmentation")
            objs.append(obj)
        record["annotations"] = objs
        dicts.append(record)
    logger.info("Loaded %d images with %d annotations from %s", len(dicts), sum(len(d["annotations"])
                for d in dicts), json_file)
    return dicts


def register_coco_instances(name: str, metadata: dict[str, Any], json_file: str, image_root: str) -> None:
    """Register a COCO-format dataset under ``name`` (loaded lazily on ``DatasetCatalog.get``).

    Example::

        >>> register_coco_instances('my_train', {}, 'ann/train.json', 'images/train')   # doctest: +SKIP
        >>> DatasetCatalog.get('my_train')   # doctest: +SKIP
    """
    if not isinstance(name, str):
        raise TypeError(f"register_coco_instances: name must be a str, got {name!r}.")
    json_file, image_root = os.fspath(json_file), os.fspath(image_root)
    DatasetCatalog.register(name, lambda: load_coco_json(json_file, image_root, name))
    MetadataCatalog.get(name).set(json_file=json_file, image_root=image_root, evaluator_type="coco",
                                  **metadata)
