"""Metadata of the built-in datasets: COCO's 80 thing categories (with their json ids) and VOC's 20.

Detectron2 hard-codes these so a model trained on COCO can name its classes without the
annotation files; kiln's built-in names (:mod:`kiln.data.builtin`) carry the same facts.
"""

from __future__ import annotations

from typing import Any

from .datasets.pascal_voc import VOC_CLASSES

__all__ = ["COCO_CATEGORIES", "coco_instances_meta", "voc_meta"]

# (COCO category id, name): the ids of instances_*.json, with the gaps COCO left (12, 26, 29, ...).
COCO_CATEGORIES: tuple[tuple[int, str], ...] = (
    (1, "person"), (2, "bicycle"), (3, "car"), (4, "motorcycle"), (5, "airplane"), (6, "bus"),
    (7, "train"), (8, "truck"), (9, "boat"), (10, "traffic light"), (11, "fire hydrant"),
    (13, "stop sign"), (14, "parking meter"), (15, "bench"), (16, "bird"), (17, "cat"), (18, "dog"),
    (19, "horse"), (20, "sheep"), (21, "cow"), (22, "elephant"), (23, "bear"), (24, "zebra"),
    (25, "giraffe"), (27, "backpack"), (28, "umbrella"), (31, "handbag"), (32, "tie"), (33, "suitcase"),
    (34, "frisbee"), (35, "skis"), (36, "snowboard"), (37, "sports ball"), (38, "kite"),
    (39, "baseball bat"), (40, "baseball glove"), (41, "skateboard"), (42, "surfboard"),
    (43, "tennis racket"), (44, "bottle"), (46, "wine glass"), (47, "cup"), (48, "fork"), (49, "knife"),
    (50, "spoon"), (51, "bowl"), (52, "banana"), (53, "apple"), (54, "sandwich"), (55, "orange"),
    (56, "broccoli"), (57, "carrot"), (58, "hot dog"), (59, "pizza"), (60, "donut"), (61, "cake"),
    (62, "chair"), (63, "couch"), (64, "potted plant"), (65, "bed"), (67, "dining table"), (70, "toilet"),
    (72, "tv"), (73, "laptop"), (74, "mouse"), (75, "remote"), (76, "keyboard"), (77, "cell phone"),
    (78, "microwave"), (79, "oven"), (80, "toaster"), (81, "sink"), (82, "refrigerator"), (84, "book"),
    (85, "clock"), (86, "vase"), (87, "scissors"), (88, "teddy bear"), (89, "hair drier"),
    (90, "toothbrush"),
)


def coco_instances_meta() -> dict[str, Any]:
    """``thing_classes`` (80 names, contiguous label order) and ``thing_dataset_id_to_contiguous_id``."""
    return dict(
        thing_classes=[name for _, name in COCO_CATEGORIES],
        thing_dataset_id_to_contiguous_id={cid: i for i, (cid, _) in enumerate(COCO_CATEGORIES)},
    )


def voc_meta() -> dict[str, Any]:
    """``thing_classes``: the 20 Pascal VOC classes in the order of the VOC devkit."""
    return dict(thing_classes=list(VOC_CLASSES))
