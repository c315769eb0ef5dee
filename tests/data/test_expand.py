"""``Expand`` (SSD's zoom-out): canvas size, fill colour, and everything moving with the image."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from kiln.data.transforms import Compose
from kiln.registry import TRANSFORMS


def _results(h=10, w=20):
    img = np.full((h, w, 3), 200, np.uint8)
    return dict(img=img, img_shape=img.shape, gt_bboxes=np.array([[2, 3, 12, 8]], np.float32),
                gt_labels=np.array([1]), bbox_fields=["gt_bboxes"])


def _as_array(masks):
    # Bitmap masks as an (N, H, W) array, whether the pipeline holds them as arrays or BitmapMasks.
    return masks.to_ndarray() if hasattr(masks, "to_ndarray") else np.asarray(masks)


def _placement(out):
    """(top, left) of the original image inside the canvas, read from the pixels (the image is 200s)."""
    ys, xs = np.nonzero(out["img"][..., 0] == 200)
    return ys.min(), xs.min()


@pytest.mark.parametrize("seed", range(5))
def test_expand_places_the_image_on_a_mean_filled_canvas_and_moves_boxes_with_it(seed):
    np.random.seed(seed)
    out = Expand(mean=(10, 20, 30), to_rgb=True, ratio_range=(2, 3), prob=1.0)(_results())
    h, w = out["img"].shape[:2]
    assert 20 <= h <= 30 and 40 <= w <= 60 and abs(h / 10 - w / 20) < 0.1
    assert out["img_shape"] == out["img"].shape
    top, left = _placement(out)
    np.testing.assert_array_equal(out["img"][top:top + 10, left:left + 20], 200)
    assert int((out["img"][..., 0] == 200).sum()) == 200  # the image exactly once, nothing else
    # mean is RGB (the normalisation's order) and the image BGR: the fill is the mean reversed
    fill = out["img"][out["img"][..., 0] != 200]
    assert len(fill) == h * w - 200 and (fill == [30, 20, 10]).all()
    np.testing.assert_allclose(out["gt_bboxes"], [[2 + left, 3 + top, 12 + left, 8 + top]])


def Expand(**kw):
    return TRANSFORMS.build(dict(type="Expand", **kw))


def test_expand_with_to_rgb_false_fills_with_mean_as_given():
    np.random.seed(0)
    out = Expand(mean=(10, 20, 30), to_rgb=False, ratio_range=(2, 2), prob=1.0)(_results())
    assert out["img"].shape == (20, 40, 3)
    fill = out["img"][out["img"][..., 0] != 200]
    assert len(fill) == 600 and (fill == [10, 20, 30]).all()


def test_expand_happens_with_probability_prob():
    np.random.seed(0)
    step = Expand(ratio_range=(2, 2), prob=0.5)
    grown = sum(step(_results())["img"].shape[0] == 20 for _ in range(200))
    assert 70 < grown < 130
    assert all(Expand(prob=0.0)(_results())["img"].shape == (10, 20, 3) for _ in range(10))


def test_expand_moves_masks_and_label_maps(tmp_path):
    img = np.zeros((40, 60, 3), np.uint8)
    cv2.imwrite(str(tmp_path / "a.png"), img)
    sample = dict(img_info=dict(filename="a.png", height=40, width=60, id=1), img_prefix=str(tmp_path),
                  ann_info=dict(bboxes=np.array([[10, 5, 30, 25]], np.float32), labels=np.array([0]),
                                bboxes_ignore=np.zeros((0, 4), np.float32),
                                masks=[[[10, 5, 30, 5, 30, 25, 10, 25]]]))
    np.random.seed(3)
    out = Compose([dict(type="LoadImageFromFile"),
                   dict(type="LoadAnnotations", with_bbox=True, with_mask=True),
                   dict(type="Expand", ratio_range=(2, 2), prob=1.0)])(sample)
    masks = _as_array(out["gt_masks"])
    assert masks.shape == (1, 80, 120)
    ys, xs = np.nonzero(masks[0])
    np.testing.assert_allclose([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], out["gt_bboxes"][0], atol=1)
    assert out["gt_bboxes"][0].tolist() != [10, 5, 30, 25]  # it did move


def test_expand_fills_label_maps_with_seg_ignore_label():
    r = _results()
    r["gt_semantic_seg"] = np.ones((10, 20), np.uint8)
    r["seg_fields"] = ["gt_semantic_seg"]
    np.random.seed(0)
    out = Expand(ratio_range=(2, 2), prob=1.0, seg_ignore_label=255)(r)
    seg = out["gt_semantic_seg"]
    assert seg.shape == (20, 40) and (seg == 1).sum() == 200 and (seg == 255).sum() == 600


def test_expand_refuses_label_maps_without_seg_ignore_label():
    r = _results()
    r["gt_semantic_seg"] = np.ones((10, 20), np.uint8)
    r["seg_fields"] = ["gt_semantic_seg"]
    with pytest.raises(ValueError, match="seg_ignore_label"):
        Expand(prob=1.0)(r)


@pytest.mark.parametrize("ratio_range", [(0.5, 2), (3, 2), (1, 2, 3)])
def test_expand_refuses_a_ratio_range_that_would_shrink(ratio_range):
    with pytest.raises(ValueError, match="ratio_range"):
        Expand(ratio_range=ratio_range)
