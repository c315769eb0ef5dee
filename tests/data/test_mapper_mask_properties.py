"""Property tests, Detectron2 style: DatasetMapper moves instance masks with any augmentation list
exactly as the image; a moved bitmap equals the rasterized moved polygon, and boxes recomputed from
masks are the masks' tight boxes."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kiln.data.mapper import DatasetMapper
from kiln.data.transforms import FixedSizeCrop, RandomCrop, RandomFlip, RandomRotation, ResizeShortestEdge
from kiln.structures import BitMasks, BoxMode, PolygonMasks

H, W = 60, 80
POLYS = [[12.0, 8.0, 40.0, 14.0, 22.0, 40.0], [45.0, 20.0, 75.0, 20.0, 75.0, 50.0, 45.0, 50.0],
         [5.0, 45.0, 30.0, 45.0, 30.0, 58.0]]


@pytest.fixture(scope="module")
def record(tmp_path_factory):
    path = tmp_path_factory.mktemp("mapper_masks") / "img.png"
    cv2.imwrite(str(path), np.full((H, W, 3), 90, np.uint8))
    annos = []
    for i, p in enumerate(POLYS):
        xs, ys = p[0::2], p[1::2]
        annos.append(dict(bbox=[min(xs), min(ys), max(xs), max(ys)], bbox_mode=BoxMode.XYXY_ABS,
                          category_id=i, iscrowd=0, segmentation=[p]))
    return dict(file_name=str(path), height=H, width=W, image_id=1, annotations=annos)


@st.composite
def augmentations(draw):
    augs = []
    if draw(st.booleans()):
        augs.append(RandomCrop("relative", (draw(st.floats(0.5, 1.0)), draw(st.floats(0.5, 1.0)))))
    augs.append(ResizeShortestEdge(draw(st.integers(30, 120)), 200))
    if draw(st.booleans()):
        augs.append(RandomRotation((draw(st.floats(-40, 40)),) * 2, expand=draw(st.booleans())))
    horizontal = draw(st.booleans())
    augs.append(RandomFlip(1.0, horizontal=horizontal, vertical=not horizontal))
    if draw(st.booleans()):
        augs.append(FixedSizeCrop((draw(st.integers(40, 100)), draw(st.integers(40, 100)))))
    return augs, draw(st.integers(0, 2**31 - 1))


def _run(record, augs, seed, fmt):
    np.random.seed(seed)
    mapper = DatasetMapper(augs, use_instance_mask=True, instance_mask_format=fmt, recompute_boxes=True)
    return mapper(record)


def _near(region, mask):
    """``mask`` grown by one pixel in each direction."""
    grown = mask.copy()
    grown[1:] |= mask[:-1]
    grown[:-1] |= mask[1:]
    grown[:, 1:] |= grown[:, :-1].copy()
    grown[:, :-1] |= grown[:, 1:].copy()
    return not (region & ~grown).any()


@settings(max_examples=25, deadline=None)
@given(augmentations())
def test_bitmask_equals_the_rasterized_polygon_after_any_augmentations(record, case):
    augs, seed = case
    polys = _run(record, augs, seed, "polygon")
    bits = _run(record, augs, seed, "bitmask")
    h, w = polys["image"].shape[1:]
    p_masks, b_masks = polys["instances"].gt_masks, bits["instances"].gt_masks
    assert isinstance(p_masks, PolygonMasks) and isinstance(b_masks, BitMasks)
    assert (p_masks.height, p_masks.width) == (b_masks.height, b_masks.width) == (h, w)
    # each annotation has its own class: match the instances of both runs by it
    raster = dict(zip(polys["instances"].gt_classes.tolist(), p_masks.to_ndarray().astype(bool)))
    bitmap = dict(zip(bits["instances"].gt_classes.tolist(), b_masks.tensor.numpy()))
    empty = np.zeros((h, w), bool)
    for cls in set(raster) | set(bitmap):
        r, b = raster.get(cls, empty), bitmap.get(cls, empty)
        common = r & b
        if common.any():  # nearest-neighbour resampling may move the boundary by a pixel, no more
            assert _near(r ^ b, common)
        else:  # a sliver cut by a crop (kept in one format only): a few pixels at most
            assert r.sum() <= 3 and b.sum() <= 3


@settings(max_examples=25, deadline=None)
@given(augmentations())
def test_recomputed_boxes_are_the_masks_boxes(record, case):
    augs, seed = case
    bits = _run(record, augs, seed, "bitmask")["instances"]
    for box, mask in zip(bits.gt_boxes.tensor.numpy(), bits.gt_masks.tensor.numpy()):
        ys, xs = np.nonzero(mask)
        assert box.tolist() == [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]
    polys = _run(record, augs, seed, "polygon")["instances"]
    for box, parts in zip(polys.gt_boxes.tensor.numpy(), polys.gt_masks.polygons):
        pts = np.concatenate(parts).reshape(-1, 2)
        np.testing.assert_allclose(box, [*pts.min(0), *pts.max(0)], rtol=1e-5, atol=1e-4)
