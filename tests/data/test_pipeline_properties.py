"""Property tests: MM geometric steps move boxes through the primitive transforms, consistently
with the pixels they move; instance masks (bitmaps and polygons) move with them, and a moved bitmap
equals the rasterized moved polygon of the same object."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from kiln.data.transforms import Compose, clip_boxes
from kiln.structures import BitmapMasks, PolygonMasks


@st.composite
def sample_and_pipeline(draw):
    h, w = draw(st.integers(16, 80)), draw(st.integers(16, 80))
    n = draw(st.integers(1, 3))
    boxes = []
    for _ in range(n):
        x0, y0 = draw(st.integers(0, w - 6)), draw(st.integers(0, h - 6))
        boxes.append([x0, y0, draw(st.integers(x0 + 6, w)), draw(st.integers(y0 + 6, h))])
    steps = [dict(type="Resize", img_scale=(draw(st.integers(24, 120)), draw(st.integers(24, 120))),
                  keep_ratio=draw(st.booleans()))]
    steps.append(dict(type="RandomFlip", flip_ratio=1.0,
                      direction=draw(st.sampled_from(["horizontal", "vertical", "diagonal"]))))
    if draw(st.booleans()):
        steps.append(dict(type="RandomCrop", crop_size=(0.7, 0.7), crop_type="relative",
                          allow_negative_crop=True))
    steps.append(dict(type="Pad", size_divisor=draw(st.sampled_from([8, 16, 32]))))
    return h, w, np.array(boxes, np.float32), steps, draw(st.integers(0, 2**31 - 1))


def _results(h, w, boxes, polygons=False):
    # Each box is also an instance mask (a filled rectangle), so pixels can be compared with boxes.
    rects = [[np.array([x0, y0, x1, y0, x1, y1, x0, y1], np.float64)] for x0, y0, x1, y1 in boxes]
    polys = PolygonMasks(rects, h, w)
    masks = polys if polygons else polys.to_bitmap()
    return dict(img=np.zeros((h, w, 3), np.uint8), img_shape=(h, w, 3), ori_shape=(h, w, 3),
                gt_bboxes=boxes.copy(), gt_labels=np.arange(len(boxes)), gt_masks=masks,
                bbox_fields=["gt_bboxes"], mask_fields=["gt_masks"])


@settings(max_examples=30, deadline=None)
@given(sample_and_pipeline())
def test_boxes_after_pipeline_equal_recorded_transforms_applied_to_original(case):
    h, w, boxes, steps, seed = case
    np.random.seed(seed % (2**32))
    r = Compose(steps)(_results(h, w, boxes))
    tfms = r["transforms"]
    expected = boxes.astype(np.float64)
    for t in tfms:  # each step clips to its output canvas
        expected = t.apply_box(expected)
        if type(t).__name__ == "CropTransform":
            expected = clip_boxes(expected, t.h, t.w)
        elif type(t).__name__ == "ResizeTransform":
            expected = clip_boxes(expected, t.new_h, t.new_w)
    keep = (expected[:, 2] > expected[:, 0]) & (expected[:, 3] > expected[:, 1])
    np.testing.assert_allclose(r["gt_bboxes"], expected[keep], atol=1e-3)
    assert r["gt_labels"].tolist() == np.arange(len(boxes))[keep].tolist()


@settings(max_examples=30, deadline=None)
@given(sample_and_pipeline())
def test_masks_moved_by_pipeline_stay_inside_their_boxes(case):
    h, w, boxes, steps, seed = case
    np.random.seed(seed % (2**32))
    r = Compose(steps)(_results(h, w, boxes))
    assert isinstance(r["gt_masks"], BitmapMasks)
    assert r["gt_masks"].to_ndarray().shape[1:] == r["img"].shape[:2]
    for box, mask in zip(r["gt_bboxes"], r["gt_masks"].to_ndarray()):
        ys, xs = np.nonzero(mask)
        if len(xs) == 0:  # a sliver left by a crop can vanish at pixel resolution
            assert min(box[2] - box[0], box[3] - box[1]) < 2
            continue
        np.testing.assert_allclose([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], box, atol=1.0 + 1e-3)


@settings(max_examples=30, deadline=None)
@given(sample_and_pipeline())
def test_polygons_moved_by_pipeline_keep_boxes_as_their_bounds(case):
    # The polygon of a box, moved by the same steps, is bounded by exactly the moved (clipped) box.
    h, w, boxes, steps, seed = case
    np.random.seed(seed % (2**32))
    r = Compose(steps)(_results(h, w, boxes, polygons=True))
    masks = r["gt_masks"]
    assert isinstance(masks, PolygonMasks) and (masks.height, masks.width) == r["img"].shape[:2]
    assert len(masks) == len(r["gt_bboxes"])
    np.testing.assert_allclose(masks.get_bboxes(), r["gt_bboxes"], atol=1e-3)


@settings(max_examples=30, deadline=None)
@given(sample_and_pipeline())
def test_moved_bitmap_equals_the_rasterized_moved_polygon(case):
    # Same draws for both runs: the bitmap and the polygon of each object take the same steps.
    h, w, boxes, steps, seed = case
    np.random.seed(seed % (2**32))
    as_bitmap = Compose(steps)(_results(h, w, boxes))
    np.random.seed(seed % (2**32))
    as_polygon = Compose(steps)(_results(h, w, boxes, polygons=True))
    bitmaps = as_bitmap["gt_masks"].to_ndarray().astype(bool)
    rasters = as_polygon["gt_masks"].to_ndarray().astype(bool)
    assert bitmaps.shape == rasters.shape
    for b, p in zip(bitmaps, rasters):
        # Nearest-neighbour resampling may move the boundary by one pixel; nothing else may differ.
        differ = b ^ p
        if differ.any():
            grown = _dilate(b & p)
            assert not (differ & ~grown).any()


def _dilate(mask):
    out = mask.copy()
    out[1:] |= mask[:-1]
    out[:-1] |= mask[1:]
    out[:, 1:] |= out[:, :-1].copy()
    out[:, :-1] |= out[:, 1:].copy()
    return out
