"""``DatasetMapper``: one standard dataset dict -> one model input (Detectron2 style).

It reads the image, runs the augmentations (which choose primitive transforms), moves the
annotations with those same transforms, and packs ``Instances``. Output keys follow the batch
contract of ``docs/architecture.md``: ``image`` (uint8 C x H x W tensor, not normalized),
``instances`` (``gt_boxes``, ``gt_classes``, optionally ``gt_masks``), ``height``/``width``
(original size), ``file_name``, ``image_id``.

Example::

    from kiln.data import build_train_loader
    from kiln.data import transforms as T
    mapper = DatasetMapper([T.ResizeShortestEdge((640, 800), 1333), T.RandomFlip()], is_train=True)
    loader = build_train_loader(dataset_dicts, mapper=mapper, total_batch_size=2, num_workers=2, seed=0)
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Mapping, Sequence
from typing import Any

import cv2
import numpy as np

from kiln.utils.config_access import cfg_get

from .transforms.augmentation import AugInput, Augmentation, AugmentationList
from .transforms.pipelines import read_image_file
from .transforms.transform import Transform, clip_boxes

__all__ = ["DatasetMapper", "build_augmentation", "read_image", "transform_instance_annotations"]

logger = logging.getLogger(__name__)

_FORMATS = ("BGR", "RGB", "L")


def read_image(file_name: str, image_format: str = "BGR") -> np.ndarray:
    """Read an image as ``H x W x 3`` (``'BGR'``/``'RGB'``) or ``H x W x 1`` (``'L'``) uint8."""
    if image_format not in _FORMATS:
        raise ValueError(f"image_format must be one of {_FORMATS}, got {image_format!r}")
    img = read_image_file(str(file_name), "grayscale" if image_format == "L" else "color")
    if image_format == "RGB":
        img = np.ascontiguousarray(img[:, :, ::-1])
    elif image_format == "L":
        img = img[:, :, None]
    return img


def transform_instance_annotations(annotation: dict, transforms: Transform, image_size: tuple[int, int]
                                   ) -> dict:
    """Move one annotation dict's ``bbox`` (any ``bbox_mode``; result XYXY_ABS, clipped to
    ``image_size`` ``(h, w)``) and polygon ``segmentation`` with ``transforms``.

    RLE segmentations are left for :class:`DatasetMapper`, which decodes and moves them as masks.
    """
    from kiln.structures import BoxMode

    ann = dict(annotation)
    box = BoxMode.convert(np.asarray(ann["bbox"], dtype=np.float64).reshape(1, -1),
                          BoxMode(ann.get("bbox_mode", BoxMode.XYXY_ABS)), BoxMode.XYXY_ABS)
    box = transforms.apply_box(box)
    ann["bbox"] = clip_boxes(box, *image_size)[0]
    ann["bbox_mode"] = BoxMode.XYXY_ABS
    segm = ann.get("segmentation")
    if isinstance(segm, list) and segm:
        polys = transforms.apply_polygons([np.asarray(p, np.float64).reshape(-1, 2) for p in segm])
        ann["segmentation"] = [p.reshape(-1) for p in polys]
    return ann


def _is_config(obj: Any) -> bool:
    """A Detectron2-style config (``cfg.INPUT`` ...), not a list of augmentations."""
    return hasattr(obj, "INPUT") or (isinstance(obj, Mapping) and "INPUT" in obj)


def _config_args(cfg: Any, is_train: bool) -> dict[str, Any]:
    """The mapper arguments a Detectron2 config asks for (Detectron2's ``DatasetMapper.from_config``)."""
    model = cfg_get(cfg, "MODEL")
    if bool(cfg_get(model, "KEYPOINT_ON", False)):
        raise ValueError("DatasetMapper: MODEL.KEYPOINT_ON=True needs keypoint annotations and a keypoint "
                         "head, which kiln does not have; set MODEL.KEYPOINT_ON False.")
    topk = None
    if bool(cfg_get(model, "LOAD_PROPOSALS", False)):
        topk = int(cfg_get(cfg, "DATASETS.PRECOMPUTED_PROPOSAL_TOPK_TRAIN" if is_train
                           else "DATASETS.PRECOMPUTED_PROPOSAL_TOPK_TEST"))
    mask_on = bool(cfg_get(model, "MASK_ON", False))
    mask_format = cfg_get(cfg.INPUT, "MASK_FORMAT", "polygon")
    crop = cfg_get(cfg.INPUT, "CROP")
    crop_on = bool(is_train and crop is not None and cfg_get(crop, "ENABLED", False))
    return dict(augmentations=build_augmentation(cfg, is_train),
                image_format=cfg_get(cfg.INPUT, "FORMAT", "BGR"), use_instance_mask=mask_on,
                instance_mask_format=mask_format, recompute_boxes=mask_on and crop_on, proposal_topk=topk)


class DatasetMapper:
    """Map a dataset dict to the model input, applying ``augmentations``.

    ``DatasetMapper(cfg, is_train)`` (Detectron2's call) builds everything from a config instead:
    ``INPUT.MIN_SIZE_*``/``MAX_SIZE_*``/``RANDOM_FLIP``/``FORMAT``, ``INPUT.CROP`` (a
    :class:`~.transforms.augmentation.RandomCrop` before the resize, in training), ``MODEL.MASK_ON``
    (masks, and boxes recomputed from them after a crop), ``INPUT.MASK_FORMAT``.

    Args:
        augmentations: :class:`Augmentation` or :class:`Transform` objects, applied in order, or a
            Detectron2-style config.
        image_format: ``'BGR'`` (default), ``'RGB'`` or ``'L'``. (With a config as first argument,
            a bool here is ``is_train``, as in ``DatasetMapper(cfg, True)``.)
        is_train: training keeps annotations (as ``instances``); inference drops them.
        use_instance_mask: also produce ``instances.gt_masks`` from the ``segmentation`` of each
            annotation, moved by the same transforms as the image.
        instance_mask_format: ``'polygon'`` (Detectron2's default): a
            :class:`~kiln.structures.PolygonMasks` moved exactly and clipped to the image (RLE
            annotations are refused: use ``'bitmask'``); ``'bitmask'``: a
            :class:`~kiln.structures.BitMasks` (polygons rasterized after moving, RLE decoded and
            moved as pixels).
        recompute_boxes: after augmentation, set boxes to the masks' bounds (needs masks), which is
            tighter than moving the box after crops/rotations.
        min_box_size: boxes with a side (after clipping) at most this are dropped.
        proposal_topk: with precomputed proposals in the dataset dicts (``proposal_boxes``, from
            ``get_detection_dataset_dicts(proposal_files=...)``; ``MODEL.LOAD_PROPOSALS``), move them with
            the image, clip them, drop empty ones and keep the best ``proposal_topk`` as
            ``dataset_dict['proposals']`` (``proposal_boxes``, ``objectness_logits``), in training and
            inference, as Detectron2's mapper does.
    """

    def __init__(self, augmentations: Sequence[Augmentation | Transform] | Any,
                 image_format: str | bool = "BGR", is_train: bool = True, *, use_instance_mask: bool = False,
                 instance_mask_format: str = "polygon", recompute_boxes: bool = False,
                 min_box_size: float = 0.0, proposal_topk: int | None = None) -> None:
        if _is_config(augmentations):
            if isinstance(image_format, bool):  # DatasetMapper(cfg, is_train)
                is_train = image_format
            elif image_format != "BGR":
                raise TypeError("DatasetMapper(cfg, ...): the image format comes from cfg.INPUT.FORMAT; "
                                "call DatasetMapper(cfg, is_train) or DatasetMapper(augmentations, "
                                "image_format, ...).")
            args = _config_args(augmentations, is_train)
            augmentations, image_format = args["augmentations"], args["image_format"]
            use_instance_mask, recompute_boxes = args["use_instance_mask"], args["recompute_boxes"]
            instance_mask_format = args["instance_mask_format"]
            proposal_topk = args["proposal_topk"]
        if image_format not in _FORMATS:
            raise ValueError(f"DatasetMapper image_format must be one of {_FORMATS}, got {image_format!r}")
        if instance_mask_format not in ("polygon", "bitmask"):
            raise ValueError(f"DatasetMapper instance_mask_format (INPUT.MASK_FORMAT) must be 'polygon' or "
                             f"'bitmask', got {instance_mask_format!r}.")
        self.instance_mask_format = instance_mask_format
        if recompute_boxes and not use_instance_mask:
            raise ValueError("DatasetMapper(recompute_boxes=True) needs use_instance_mask=True.")
        self.augmentations = AugmentationList(list(augmentations))
        self.image_format, self.is_train = str(image_format), is_train
        self.use_instance_mask, self.recompute_boxes = use_instance_mask, recompute_boxes
        self.min_box_size = min_box_size
        self.proposal_topk = proposal_topk
        logger.info("DatasetMapper augmentations in %s: %s", "training" if is_train else "inference",
                    self.augmentations.augs)

    @classmethod
    def from_config(cls, cfg: Any, is_train: bool = True) -> DatasetMapper:
        """Build from a Detectron2-style config; the same as ``DatasetMapper(cfg, is_train)``."""
        return cls(cfg, is_train=is_train)

    def __call__(self, dataset_dict: Mapping[str, Any]) -> dict[str, Any]:
        import torch

        from kiln.structures import Boxes, Instances

        d = copy.deepcopy(dict(dataset_dict))  # never mutate the dataset's own dicts
        if "file_name" not in d:
            raise KeyError(f"DatasetMapper needs 'file_name' in the dataset dict; got keys {sorted(d)}")
        image = read_image(d["file_name"], self.image_format)
        h0, w0 = image.shape[:2]
        exp = (d.get("height"), d.get("width"))
        if None not in exp and exp != (h0, w0):
            raise ValueError(f"Image '{d['file_name']}' is {h0}x{w0} (HxW) but its dataset dict says "
                             f"{exp[0]}x{exp[1]}; fix the annotation's height/width or the image file.")
        d["height"], d["width"] = h0, w0
        sem_seg = None
        if "sem_seg_file_name" in d:
            sem_seg = cv2.imread(d.pop("sem_seg_file_name"), cv2.IMREAD_UNCHANGED)
        aug_input = AugInput(image, sem_seg=sem_seg)
        transforms = self.augmentations(aug_input)
        image = aug_input.image
        h, w = image.shape[:2]
        d["image"] = torch.as_tensor(np.ascontiguousarray(image.transpose(2, 0, 1)))
        if aug_input.sem_seg is not None:
            d["sem_seg"] = torch.as_tensor(aug_input.sem_seg.astype(np.int64))
        if self.proposal_topk is not None:
            d["proposals"] = self._proposals(d, transforms, (h, w))
        annos = d.pop("annotations", None)
        if not self.is_train or annos is None:
            return d

        kept = [a for a in annos if int(a.get("iscrowd", 0)) == 0]
        moved = [transform_instance_annotations(a, transforms, (h, w)) for a in kept]
        boxes = np.asarray([a["bbox"] for a in moved], dtype=np.float32).reshape(-1, 4)
        classes = np.asarray([int(a["category_id"]) for a in moved], dtype=np.int64)
        inst = Instances((h, w))
        inst.gt_boxes = Boxes(torch.as_tensor(boxes))
        inst.gt_classes = torch.as_tensor(classes)
        if self.use_instance_mask:
            inst.gt_masks = self._instance_masks(kept, transforms, (h0, w0), (h, w), d["file_name"])
            if self.recompute_boxes:
                inst.gt_boxes = inst.gt_masks.get_bounding_boxes()
        wh = boxes[:, 2:] - boxes[:, :2] if not self.recompute_boxes else (
            inst.gt_boxes.tensor[:, 2:] - inst.gt_boxes.tensor[:, :2]).numpy()
        keep = (wh > self.min_box_size).all(axis=1)
        d["instances"] = inst[torch.as_tensor(keep)]
        return d

    def _instance_masks(self, annos: list[dict], transforms: Transform, orig_size: tuple[int, int],
                        size: tuple[int, int], file_name: str) -> Any:
        """The annotations' masks as Detectron2's ``gt_masks``: moved by the one geometry core of the
        mask structures (polygons exactly, then clipped to the image; RLE as pixels)."""
        from kiln.structures import BitmapMasks, BitMasks, PolygonMasks
        from kiln.structures.polygon_ops import segmentation_to_bitmask, valid_polygons

        segms = []
        for a in annos:
            if a.get("segmentation") is None:
                raise KeyError(f"use_instance_mask=True (MODEL.MASK_ON) but annotation {a.get('id', '?')} of "
                               f"'{file_name}' has no 'segmentation'.")
            segms.append(a["segmentation"])
        rle = [a.get("id", i) for i, (a, s) in enumerate(zip(annos, segms)) if not isinstance(s, list)]
        if self.instance_mask_format == "polygon":
            if rle:
                raise ValueError(f"'{file_name}': annotations {rle[:5]} are RLE masks, which cannot be "
                                 "polygons (INPUT.MASK_FORMAT='polygon'); set INPUT.MASK_FORMAT='bitmask'.")
            polys = PolygonMasks([valid_polygons(s) for s in segms], *orig_size)
            return polys.apply_transform(transforms, size)
        out = np.zeros((len(segms), *size), bool)
        for i, segm in enumerate(segms):
            if isinstance(segm, list):  # move the polygon exactly, rasterize at the output size
                moved = PolygonMasks([valid_polygons(segm)], *orig_size).apply_transform(transforms, size)
                out[i] = moved.to_ndarray()[0]
            else:
                bitmap = BitmapMasks(segmentation_to_bitmask(segm, *orig_size)[None], *orig_size)
                out[i] = bitmap.apply_transform(transforms).to_ndarray()[0]
        return BitMasks(out)

    def _proposals(self, d: dict, transforms: Transform, image_size: tuple[int, int]) -> Any:
        import torch

        from kiln.structures import Boxes, Instances

        if "proposal_boxes" not in d:
            raise KeyError(f"DatasetMapper(proposal_topk=...): '{d.get('file_name')}' has no proposal_boxes; "
                           "load the dataset with get_detection_dataset_dicts(names, proposal_files=...) "
                           "(DATASETS.PROPOSAL_FILES_TRAIN/TEST with MODEL.LOAD_PROPOSALS).")
        boxes = np.asarray(d.pop("proposal_boxes"), dtype=np.float32).reshape(-1, 4)
        logits = np.asarray(d.pop("proposal_objectness_logits"), dtype=np.float32).reshape(-1)
        mode = int(d.pop("proposal_bbox_mode", 0))
        if mode != 0:
            raise ValueError(f"proposal_bbox_mode {mode}: dataset dicts carry XYXY_ABS proposals (mode 0)")
        boxes = transforms.apply_box(boxes) if len(boxes) else boxes
        h, w = image_size
        boxes = np.stack([boxes[:, 0].clip(0, w), boxes[:, 1].clip(0, h), boxes[:, 2].clip(0, w),
                          boxes[:, 3].clip(0, h)], axis=1) if len(boxes) else boxes.reshape(0, 4)
        size = self.min_box_size
        keep = ((boxes[:, 2] - boxes[:, 0]) > size) & ((boxes[:, 3] - boxes[:, 1]) > size)
        boxes, logits = boxes[keep][: self.proposal_topk], logits[keep][: self.proposal_topk]
        inst = Instances(image_size)
        inst.proposal_boxes = Boxes(torch.as_tensor(boxes))
        inst.objectness_logits = torch.as_tensor(logits)
        return inst

    def __repr__(self) -> str:
        return (f"DatasetMapper(augmentations={self.augmentations.augs!r}, "
                f"image_format={self.image_format!r}, "
                f"is_train={self.is_train}, use_instance_mask={self.use_instance_mask})")


def build_augmentation(cfg: Any, is_train: bool) -> list[Augmentation]:
    """Default augmentations from a Detectron2-style config: ``ResizeShortestEdge`` from
    ``INPUT.MIN_SIZE_TRAIN/MAX_SIZE_TRAIN/MIN_SIZE_TRAIN_SAMPLING`` (or ``*_TEST``), an optional
    ``INPUT.CROP`` (``ENABLED``, ``TYPE``, ``SIZE``) first, and ``RandomFlip`` per
    ``INPUT.RANDOM_FLIP`` (``'horizontal'``, ``'vertical'``, ``'none'``) in training."""
    from .transforms.augmentation import RandomCrop, RandomFlip, ResizeShortestEdge

    inp = cfg.INPUT
    if is_train:
        sizes, max_size = inp.MIN_SIZE_TRAIN, inp.MAX_SIZE_TRAIN
        style = cfg_get(inp, "MIN_SIZE_TRAIN_SAMPLING", "choice")
    else:
        sizes, max_size, style = inp.MIN_SIZE_TEST, inp.MAX_SIZE_TEST, "choice"
    if isinstance(sizes, int):
        sizes = (sizes,)
    augs: list[Augmentation] = []
    crop = cfg_get(inp, "CROP")
    if is_train and crop is not None and cfg_get(crop, "ENABLED", False):
        augs.append(RandomCrop(crop.TYPE, crop.SIZE))
    augs.append(ResizeShortestEdge(tuple(sizes), max_size, style))
    flip = cfg_get(inp, "RANDOM_FLIP", "horizontal") if is_train else "none"
    if flip not in ("horizontal", "vertical", "none"):
        raise ValueError(f"INPUT.RANDOM_FLIP must be 'horizontal', 'vertical' or 'none', got {flip!r}")
    if flip != "none":
        augs.append(RandomFlip(horizontal=flip == "horizontal", vertical=flip == "vertical"))
    return augs

