"""The base/novel class splits few-shot detection papers use (TFA, DeFRCN): Pascal VOC splits 1/2/3
(15 base + 5 novel classes each, the "all" order = base classes then novel classes) and COCO's 60/20
(the 20 novel classes are the VOC categories; COCO ids)."""

from __future__ import annotations

__all__ = ["VOC_NOVEL_CLASSES", "VOC_BASE_CLASSES", "VOC_ALL_CLASSES", "COCO_NOVEL_IDS", "voc_classes",
           "coco_split_ids"]

VOC_NOVEL_CLASSES = {
    1: ["bird", "bus", "cow", "motorbike", "sofa"],
    2: ["aeroplane", "bottle", "cow", "horse", "sofa"],
    3: ["boat", "cat", "motorbike", "sheep", "sofa"],
}
VOC_BASE_CLASSES = {
    1: ["aeroplane", "bicycle", "boat", "bottle", "car", "cat", "chair", "diningtable", "dog", "horse",
        "person", "pottedplant", "sheep", "train", "tvmonitor"],
    2: ["bicycle", "bird", "boat", "bus", "car", "cat", "chair", "diningtable", "dog", "motorbike",
        "person", "pottedplant", "sheep", "train", "tvmonitor"],
    3: ["aeroplane", "bicycle", "bird", "bottle", "bus", "car", "chair", "cow", "diningtable", "dog",
        "horse", "person", "pottedplant", "train", "tvmonitor"],
}
#: class order of a split's 20-class ("all") model: base classes, then novel classes
VOC_ALL_CLASSES = {s: VOC_BASE_CLASSES[s] + VOC_NOVEL_CLASSES[s] for s in (1, 2, 3)}

#: COCO category ids of the 20 novel classes (the VOC categories); the other 60 are base
COCO_NOVEL_IDS = [1, 2, 3, 4, 5, 6, 7, 9, 16, 17, 18, 19, 20, 21, 44, 62, 63, 64, 67, 72]


def voc_classes(split: int, which: str) -> list[str]:
    """Class names of VOC few-shot ``split`` (1, 2 or 3); ``which``: ``'base'``, ``'novel'`` or ``'all'``."""
    if split not in VOC_ALL_CLASSES:
        raise ValueError(f"VOC few-shot split must be 1, 2 or 3, got {split!r}")
    table = {"base": VOC_BASE_CLASSES, "novel": VOC_NOVEL_CLASSES, "all": VOC_ALL_CLASSES}
    if which not in table:
        raise ValueError(f"class set must be 'base', 'novel' or 'all', got {which!r}")
    return list(table[which][split])


def coco_split_ids(all_ids: list[int]) -> tuple[list[int], list[int]]:
    """(base ids, novel ids) of COCO's 60/20 split, each sorted, given the 80 category ids."""
    novel = sorted(i for i in all_ids if i in COCO_NOVEL_IDS)
    return sorted(i for i in all_ids if i not in COCO_NOVEL_IDS), novel
