"""Data structures shared by data, models and evaluation: boxes, instance masks, instances, padded batches."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .boxes import Boxes, BoxMode, pairwise_intersection, pairwise_iou
from .det_data_sample import DetDataSample, InstanceData
from .image_list import ImageList
from .instances import Instances
from .masks import BitmapMasks, BitMasks, PolygonMasks, polygons_to_bitmask
from .shape_spec import ShapeSpec

__all__ = [
    "BitMasks",
    "BitmapMasks",
    "BoxMode",
    "Boxes",
    "DetDataSample",
    "InstanceData",
    "ImageList",
    "Instances",
    "PolygonMasks",
    "ShapeSpec",
    "pairwise_intersection",
    "pairwise_iou",
    "polygons_to_bitmask",
    "sample_image_id",
]


def sample_image_id(sample: Mapping[str, Any]) -> Any:
    """Return the ``image_id`` of one batch element, whichever producer made it.

    DatasetMapper output has ``sample['image_id']``; MM pipeline output keeps it in
    ``sample['img_metas']['image_id']`` (a list of metas under test-time augmentation); MMDetection
    3.x ``PackDetInputs`` output in ``sample['data_samples'].img_id`` (a list under ``TestTimeAug``).
    """
    if not isinstance(sample, Mapping):
        raise TypeError(f"sample_image_id expects a per-image dict, got {type(sample).__name__}.")
    if "image_id" in sample:
        return sample["image_id"]
    packed = sample.get("data_samples")
    if isinstance(packed, (list, tuple)) and packed:
        packed = packed[0]
    if packed is not None and hasattr(packed, "metainfo") and "img_id" in packed.metainfo:
        return packed.metainfo["img_id"]
    metas = sample.get("img_metas")
    if isinstance(metas, (list, tuple)) and metas:
        metas = metas[0]
    # img_metas may be wrapped (e.g. a DataContainer-like object with .data)
    if metas is not None and not isinstance(metas, Mapping) and hasattr(metas, "data"):
        metas = metas.data
    if isinstance(metas, Mapping) and "image_id" in metas:
        return metas["image_id"]
    raise KeyError(
        f"sample_image_id: no 'image_id' in the sample (keys: {sorted(sample)}) nor in its 'img_metas'. "
        "Datasets must put image_id in each dataset dict / results dict, and Collect must keep "
        "'image_id' in meta_keys."
    )
