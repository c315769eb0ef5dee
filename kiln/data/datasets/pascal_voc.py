"""Pascal VOC: one xml parser shared by ``load_voc_instances`` (dataset dicts) and ``VOCDataset`` (MM).

VOC pixel coordinates are 1-based and inclusive; both loaders convert them to kiln's 0-based
XYXY by subtracting 1 from ``xmin``/``ymin`` (the box then covers the same pixels).
``difficult`` objects are kept with ``difficult=1`` in dataset dicts (Detectron2 drops them for
training via the mapper when asked) and go to ``bboxes_ignore`` in ``VOCDataset``.
"""

from __future__ import annotations

import os.path as osp
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from kiln.registry import DATASETS
from kiln.structures import BoxMode

from ..catalog import DatasetCatalog, MetadataCatalog
from .custom import CustomDataset

__all__ = ["VOC_CLASSES", "parse_voc_xml", "read_voc_split", "load_voc_instances", "register_pascal_voc",
           "VOCDataset"]

VOC_CLASSES = (
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow", "diningtable",
    "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor",
)


def parse_voc_xml(xml_file: str, class_names: Sequence[str], skip_unknown: bool = False) -> dict[str, Any]:
    """Read one VOC annotation xml.

    Returns ``dict(filename, width, height, objects=[dict(label, bbox XYXY 0-based, difficult)])``.
    An object of a class not in ``class_names`` is an error naming the file and the class, or left
    out with ``skip_unknown`` (a class subset).
    """
    if not osp.isfile(xml_file):
        raise FileNotFoundError(f"VOC annotation '{xml_file}' does not exist; check the dataset folder and "
                                "the ids in ImageSets/Main/<split>.txt.")
    try:
        root = ET.parse(xml_file).getroot()
    except ET.ParseError as exc:
        raise ValueError(f"VOC annotation '{xml_file}' is not valid xml: {exc}.") from exc
    size = root.find("size")
    if size is None:
        raise ValueError(f"VOC annotation '{xml_file}' has no <size> element (width/height).")
    width = int(float(size.findtext("width", "0")))
    height = int(float(size.findtext("height", "0")))
    name_to_label = {n: i for i, n in enumerate(class_names)}
    objects = []
    for obj in root.findall("object"):
        name = (obj.findtext("name") or "").strip()
        if name not in name_to_label:
            if skip_unknown:
                continue
            raise ValueError(f"VOC annotation '{xml_file}': object class '{name}' is not in the class list "
                             f"{list(class_names)}; pass class_names/classes= including it.")
        bnd = obj.find("bndbox")
        if bnd is None:
            raise ValueError(f"VOC annotation '{xml_file}': object '{name}' has no <bndbox>.")
        x0, y0, x1, y1 = (float(bnd.findtext(k, "nan")) for k in ("xmin", "ymin", "xmax", "ymax"))
        objects.append(dict(label=name_to_label[name], bbox=[x0 - 1.0, y0 - 1.0, x1, y1],
                            difficult=int(obj.findtext("difficult", "0") or 0)))
    return dict(filename=root.findtext("filename", ""), width=width, height=height, objects=objects)


def read_voc_split(split_file: str) -> list[str]:
    """The image ids listed in a VOC split file (``ImageSets/Main/<split>.txt``), in order."""
    if not osp.isfile(split_file):
        raise FileNotFoundError(f"VOC split file '{split_file}' does not exist (expected "
                                "<VOCdevkit>/VOC20xx/ImageSets/Main/<split>.txt).")
    with open(split_file, encoding="utf-8") as f:
        return [line.strip() for line in f if line.strip()]


def load_voc_instances(dirname: str, split: str, class_names: Sequence[str] = VOC_CLASSES
                       ) -> list[dict[str, Any]]:
    """Load a VOC-format folder (``Annotations/``, ``JPEGImages/``, ``ImageSets/Main/``) as dataset dicts."""
    ids = read_voc_split(osp.join(dirname, "ImageSets", "Main", split + ".txt"))
    dicts = []
    for fileid in ids:
        parsed = parse_voc_xml(osp.join(dirname, "Annotations", fileid + ".xml"), class_names)
        jpeg = osp.join(dirname, "JPEGImages", fileid + ".jpg")
        dicts.append(dict(
            file_name=jpeg, image_id=fileid, height=parsed["height"], width=parsed["width"],
            annotations=[dict(category_id=o["label"], bbox=o["bbox"], bbox_mode=BoxMode.XYXY_ABS,
                              difficult=o["difficult"], iscrowd=0) for o in parsed["objects"]],
        ))
    return dicts


def register_pascal_voc(name: str, dirname: str, split: str, year: int = 2007,
                        class_names: Sequence[str] = VOC_CLASSES) -> None:
    """Register a VOC split in the catalogs (``evaluator_type='pascal_voc'``)."""
    class_names = list(class_names)
    DatasetCatalog.register(name, lambda: load_voc_instances(dirname, split, class_names))
    MetadataCatalog.get(name).set(thing_classes=class_names, dirname=dirname, year=year, split=split,
                                  evaluator_type="pascal_voc")


@DATASETS.register_module()
class VOCDataset(CustomDataset):
    """MM-style Pascal VOC dataset.

    ``ann_file`` is the split list (``VOC2007/ImageSets/Main/trainval.txt``); the year folder
    (``VOC2007/``, holding ``Annotations/`` and ``JPEGImages/``) is ``img_prefix`` (MMDetection 2.x) or
    ``data_prefix=dict(sub_data_root=...)`` (3.x). ``img_subdir``/``ann_subdir`` (3.x) rename the two
    sub-folders. Difficult objects are ignored boxes. With ``filter_cfg=dict(bbox_min_size=n)`` (3.x)
    objects narrower or lower than ``n`` pixels are ignored boxes too. With a class subset
    (``classes=``/``metainfo=dict(classes=...)``) objects of other classes are left out, as in
    MMDetection; with the full VOC list an unknown class name is an error.
    """

    CLASSES: Sequence[str] | None = VOC_CLASSES
    DATA_PREFIX_KEYS: Mapping[str, str] = {"sub_data_root": "img_prefix"}
    FILTER_CFG_KEYS = ("filter_empty_gt", "min_size", "bbox_min_size")

    def __init__(self, ann_file: str, pipeline: Sequence[Any] | None = None, *, test_mode: bool = False,
                 img_subdir: str = "JPEGImages", ann_subdir: str = "Annotations", **kwargs: Any) -> None:
        self.img_subdir, self.ann_subdir = img_subdir, ann_subdir
        super().__init__(ann_file, pipeline, test_mode=test_mode, **kwargs)

    def load_annotations(self, ann_file: str) -> list[dict[str, Any]]:
        """Read the split file and every listed xml (boxes are kept with the image info)."""
        skip_unknown = list(self.CLASSES) != list(VOC_CLASSES)
        infos = []
        for fileid in read_voc_split(ann_file):
            parsed = parse_voc_xml(osp.join(self.img_prefix, self.ann_subdir, fileid + ".xml"), self.CLASSES,
                                   skip_unknown=skip_unknown)
            infos.append(dict(id=fileid, filename=osp.join(self.img_subdir, fileid + ".jpg"),
                              width=parsed["width"], height=parsed["height"], objects=parsed["objects"]))
        return infos

    def _ignored(self, obj: Mapping[str, Any]) -> bool:
        if obj["difficult"]:
            return True
        if self.bbox_min_size is None:
            return False
        x0, y0, x1, y1 = obj["bbox"]
        return (x1 - x0) < self.bbox_min_size or (y1 - y0) < self.bbox_min_size

    def get_ann_info(self, idx: int) -> dict[str, Any]:
        """Boxes and labels; ``difficult`` (and too small, see ``bbox_min_size``) objects in
        ``bboxes_ignore``/``labels_ignore``."""
        objs = self.data_infos[idx]["objects"]
        keep = [o for o in objs if not self._ignored(o)]
        hard = [o for o in objs if self._ignored(o)]
        return dict(
            bboxes=np.asarray([o["bbox"] for o in keep], dtype=np.float32).reshape(-1, 4),
            labels=np.asarray([o["label"] for o in keep], dtype=np.int64),
            bboxes_ignore=np.asarray([o["bbox"] for o in hard], dtype=np.float32).reshape(-1, 4),
            labels_ignore=np.asarray([o["label"] for o in hard], dtype=np.int64),
        )
