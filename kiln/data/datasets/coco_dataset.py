"""MM-style ``CocoDataset``: a COCO json with any categories, built from config."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from kiln.registry import DATASETS

from .coco import coco_api_from_dict, parse_coco_json
from .custom import CustomDataset

__all__ = ["CocoDataset"]


@DATASETS.register_module()
class CocoDataset(CustomDataset):
    """COCO instances json → pipeline results; classes come from the json unless ``classes=``.

    Exposes what evaluation needs: ``coco`` (pycocotools ``COCO``), ``cat_ids`` (COCO category id
    of each label), ``cat2label``, ``img_ids``. Crowd boxes go to ``bboxes_ignore``; invalid boxes
    are skipped and counted (see :mod:`kiln.data.datasets.coco`). With the MMDetection 2.x keys,
    training mode drops images without boxes (``filter_empty_gt``) and smaller than ``min_size``
    (default 32, as MMDetection 2.x); with the 3.x keys ``filter_cfg`` says what to drop (see
    :class:`CustomDataset`). A class subset (``classes=`` / ``metainfo=dict(classes=...)``) keeps only
    those categories' annotations, labelled in the given order.

    Example::

        >>> ds = CocoDataset(ann_file='ann.json', img_prefix='images/', pipeline=[...])   # doctest: +SKIP
        >>> ds = CocoDataset(ann_file='annotations/train.json', data_root='data/coco/',  # doctest: +SKIP
        ...                  data_prefix=dict(img='train2017/'), metainfo=dict(classes=('person',)),
        ...                  filter_cfg=dict(filter_empty_gt=True, min_size=32), pipeline=[...])
    """

    CLASSES: Sequence[str] | None = None
    MM2_MIN_SIZE = 32  # MMDetection 2.x's CocoDataset default

    def load_annotations(self, ann_file: str) -> list[dict[str, Any]]:
        """Parse and validate the json; set ``CLASSES``, ``cat_ids``, ``cat2label``, ``img_ids``."""
        parsed = parse_coco_json(ann_file, self.img_prefix, classes=self.CLASSES)
        self._parsed = parsed
        self.CLASSES = tuple(parsed.classes)
        self.cat_ids = list(parsed.cat_ids)
        self.cat2label = parsed.cat2label
        self._coco = None
        infos = []
        for img in parsed.images:
            info = dict(img)
            info["filename"] = img["file_name"]
            infos.append(info)
        self.img_ids = [info["id"] for info in infos]
        return infos

    @property
    def coco(self) -> Any:
        """pycocotools ``COCO`` over the full json (built on first use, without re-reading it)."""
        if self._coco is None:
            self._coco = coco_api_from_dict(self._parsed.raw)
        return self._coco

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_coco"] = None  # rebuilt on demand; pycocotools indexes are large to pickle
        return state

    def get_ann_info(self, idx: int) -> dict[str, Any]:
        """``bboxes`` XYXY float32, ``labels`` int64, ``bboxes_ignore`` (crowd), ``masks`` (each
        instance's COCO ``segmentation``: polygons or RLE) and ``masks_ignore`` (the crowds')."""
        img_id = self.data_infos[idx]["id"]
        anns = self._parsed.anns_by_image.get(img_id, [])
        bboxes, labels, ignore, ignore_labels, masks, ignore_masks = [], [], [], [], [], []
        for ann in anns:
            x, y, w, h = (float(v) for v in ann["bbox"])
            box = [x, y, x + w, y + h]
            if ann.get("iscrowd", 0):
                ignore.append(box)
                ignore_labels.append(self.cat2label[ann["category_id"]])
                ignore_masks.append(ann.get("segmentation"))
                continue
            bboxes.append(box)
            labels.append(self.cat2label[ann["category_id"]])
            masks.append(ann.get("segmentation"))
        info = self.data_infos[idx]
        return dict(
            bboxes=np.asarray(bboxes, dtype=np.float32).reshape(-1, 4),
            labels=np.asarray(labels, dtype=np.int64),
            bboxes_ignore=np.asarray(ignore, dtype=np.float32).reshape(-1, 4),
            labels_ignore=np.asarray(ignore_labels, dtype=np.int64),
            masks=masks,
            masks_ignore=ignore_masks,
            seg_map=info["filename"].rsplit(".", 1)[0] + ".png",
        )

    def get_cat_ids(self, idx: int) -> list[int]:
        """Contiguous labels of the (non-crowd) boxes of image ``idx``."""
        return self.get_ann_info(idx)["labels"].tolist()
