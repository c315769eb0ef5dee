"""Instance masks from COCO annotations through the MM pipelines: polygons, uncompressed and compressed
RLE, crowd regions, both MMDetection generations' batch forms."""

from __future__ import annotations

import numpy as np
import pytest
from data_helpers import make_coco
from pycocotools import mask as mask_utils

from kiln.data import CocoDataset
from kiln.data.transforms import Compose
from kiln.structures import BitmapMasks, DetDataSample, PolygonMasks

H, W = 40, 60
POLY = [2, 3, 22, 3, 22, 25, 2, 25]  # a 20x22 rectangle


def _region() -> np.ndarray:
    m = np.zeros((H, W), np.uint8)
    m[10:30, 30:55] = 1
    m[12:18, 35:40] = 0  # a hole: only a bitmap/RLE can say this
    return m


def _compressed(m: np.ndarray) -> dict:
    rle = mask_utils.encode(np.asfortranarray(m))
    return dict(size=rle["size"], counts=rle["counts"].decode("ascii"))


def _uncompressed(m: np.ndarray) -> dict:
    # COCO's crowd form: run lengths over the column-major pixels, starting with zeros
    flat = m.flatten(order="F")
    changes = np.flatnonzero(np.diff(flat)) + 1
    bounds = np.concatenate([[0], changes, [flat.size]])
    counts = np.diff(bounds).tolist()
    if flat[0] == 1:
        counts = [0] + counts
    return dict(size=[H, W], counts=counts)


@pytest.fixture
def coco(tmp_path):
    anns = [
        dict(id=1, image_id=1, category_id=7, bbox=[2, 3, 20, 22], area=440, iscrowd=0, segmentation=[POLY]),
        dict(id=2, image_id=1, category_id=3, bbox=[30, 10, 25, 20], area=470, iscrowd=0,
             segmentation=_compressed(_region())),
        dict(id=3, image_id=1, category_id=3, bbox=[30, 10, 25, 20], area=470, iscrowd=1,
             segmentation=_uncompressed(_region())),
    ]
    images = [dict(id=1, file_name="a.jpg", height=H, width=W)]
    return make_coco(tmp_path, images=images, annotations=anns)


def _dataset(coco, pipeline):
    json_file, root = coco
    return CocoDataset(json_file, pipeline, img_prefix=root, min_size=None)


LOAD = [dict(type="LoadImageFromFile"), dict(type="LoadAnnotations", with_bbox=True, with_mask=True)]


def test_polygons_and_rle_load_as_bitmaps_equal_to_pycocotools(coco):
    r = _dataset(coco, LOAD)[0]
    masks = r["gt_masks"]
    assert isinstance(masks, BitmapMasks) and masks.to_ndarray().shape == (2, H, W)
    direct = mask_utils.decode(mask_utils.merge(mask_utils.frPyObjects([POLY], H, W)))
    np.testing.assert_array_equal(masks.to_ndarray()[0], direct)
    np.testing.assert_array_equal(masks.to_ndarray()[1], _region())


def test_crowd_regions_load_as_ignored_masks_next_to_their_boxes(coco):
    r = _dataset(coco, LOAD)[0]
    assert len(r["gt_bboxes_ignore"]) == 1
    assert isinstance(r["gt_masks_ignore"], BitmapMasks)
    np.testing.assert_array_equal(r["gt_masks_ignore"].to_ndarray()[0], _region())


def test_poly2mask_false_keeps_polygons_and_refuses_rle(coco, tmp_path):
    pipeline = [dict(type="LoadImageFromFile"),
                dict(type="LoadAnnotations", with_bbox=True, with_mask=True, poly2mask=False)]
    with pytest.raises(ValueError, match=r"instances \[1\] are RLE.*poly2mask=True"):
        _dataset(coco, pipeline)[0]
    json_file, root = make_coco(tmp_path / "polys", images=[dict(id=1, file_name="a.jpg", height=H, width=W)],
                                annotations=[dict(id=1, image_id=1, category_id=7, bbox=[2, 3, 20, 22],
                                                  area=440, iscrowd=0, segmentation=[POLY, [1, 1, 2, 2]])])
    r = CocoDataset(json_file, pipeline, img_prefix=root, min_size=None)[0]
    assert isinstance(r["gt_masks"], PolygonMasks)
    # the 2-point part covers nothing and is dropped, as MMDetection's loader does
    assert len(r["gt_masks"].masks[0]) == 1
    np.testing.assert_allclose(r["gt_masks"].masks[0][0], POLY)


def test_an_instance_without_segmentation_is_named(tmp_path):
    json_file, root = make_coco(tmp_path)  # its image 2 has a box without segmentation
    ds = CocoDataset(json_file, LOAD, img_prefix=root, min_size=None)
    with pytest.raises(KeyError, match="instance 0 has no 'segmentation'"):
        ds[1]


def test_mmdet3_pipeline_packs_masks_into_gt_and_ignored_instances(coco):
    pipeline = LOAD + [dict(type="Resize", scale=(120, 80), keep_ratio=True),
                       dict(type="RandomFlip", prob=1.0), dict(type="PackDetInputs")]
    out = _dataset(coco, pipeline)[0]
    sample = out["data_samples"]
    assert isinstance(sample, DetDataSample)
    gt = sample.gt_instances
    assert isinstance(gt.masks, BitmapMasks) and len(gt.masks) == len(gt.bboxes) == 2
    assert (gt.masks.height, gt.masks.width) == tuple(out["inputs"].shape[1:]) == (80, 120)
    # resized 2x and flipped: the rectangle [2, 22] x [3, 25] lands on x in [120 - 44, 120 - 4]
    np.testing.assert_array_equal(gt.masks.get_bboxes()[0], [76, 6, 116, 50])
    np.testing.assert_allclose(gt.bboxes[0].numpy(), [76, 6, 116, 50])
    ignored = sample.ignored_instances
    assert len(ignored.masks) == len(ignored.bboxes) == 1
    np.testing.assert_array_equal(ignored.masks.to_ndarray()[0], _region().repeat(2, 0).repeat(2, 1)[:, ::-1])


def test_mmdet2_pipeline_collects_mask_structures(coco):
    pipeline = LOAD + [dict(type="Resize", img_scale=(120, 80), keep_ratio=True),
                       dict(type="Pad", size_divisor=32), dict(type="DefaultFormatBundle"),
                       dict(type="Collect", keys=["img", "gt_bboxes", "gt_labels", "gt_masks"])]
    out = _dataset(coco, pipeline)[0]
    assert isinstance(out["gt_masks"], BitmapMasks)
    # padded with the image, as MMDetection pads masks
    assert out["gt_masks"].to_ndarray().shape == (2, *out["img"].shape[1:]) == (2, 96, 128)


def test_crops_drop_the_masks_of_dropped_boxes(coco):
    np.random.seed(0)
    pipeline = LOAD + [dict(type="RandomCrop", crop_size=(40, 25), allow_negative_crop=True)]
    for _ in range(10):
        r = _dataset(coco, pipeline)[0]
        assert len(r["gt_masks"]) == len(r["gt_bboxes"]) == len(r["gt_labels"])
        assert len(r["gt_masks_ignore"]) == len(r["gt_bboxes_ignore"])
        np.testing.assert_allclose(r["gt_masks"].get_bboxes(), r["gt_bboxes"], atol=1.0)


def test_filter_annotations_by_mask_area_measures_both_mask_kinds(coco, tmp_path):
    flt = dict(type="FilterAnnotations", min_gt_bbox_wh=(1, 1), min_gt_mask_area=445, by_mask=True)
    r = Compose([flt])(dict(_dataset(coco, LOAD)[0]))
    # pixel areas: the rectangle 440, the holed region 470
    assert r["gt_labels"].tolist() == [0] and len(r["gt_masks"]) == 1
    np.testing.assert_array_equal(r["gt_masks"].to_ndarray()[0], _region())
    polys = PolygonMasks([[np.array(POLY, float)], [np.array([0, 0, 30, 0, 0, 30], float)]], H, W)
    r = Compose([flt])(dict(gt_bboxes=np.array([[2, 3, 22, 25], [0, 0, 30, 30]], np.float32),
                            gt_labels=np.array([4, 5]), gt_masks=polys))
    assert r["gt_labels"].tolist() == [5]  # polygon areas: 440 and 450


def test_masks_as_raw_arrays_are_refused_by_the_geometry_core():
    res = dict(img=np.zeros((H, W, 3), np.uint8), gt_masks=np.zeros((1, H, W), np.uint8),
               mask_fields=["gt_masks"])
    with pytest.raises(TypeError, match="BitmapMasks or PolygonMasks"):
        Compose([dict(type="RandomFlip", prob=1.0)])(res)


def test_mmdet3_image_without_annotations_gets_empty_masks(coco):
    json_file, root = coco
    pipeline = LOAD + [dict(type="PackDetInputs")]
    ds = CocoDataset(json_file, pipeline, img_prefix=root, test_mode=True)  # no ann_info in test mode
    gt = ds[0]["data_samples"].gt_instances
    assert isinstance(gt.masks, BitmapMasks) and len(gt.masks) == len(gt.bboxes) == 0
    assert (gt.masks.height, gt.masks.width) == (H, W)
