"""Property tests of the geometry core: every geometric Transform moves boxes consistently with
its corner points and its pixels, and its inverse undoes it."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kiln.data.transforms import (
    AffineTransform,
    CropTransform,
    HFlipTransform,
    NoOpTransform,
    PadTransform,
    ResizeTransform,
    RotationTransform,
    TransformList,
    VFlipTransform,
    clip_boxes,
)

SETTINGS = settings(max_examples=40, deadline=None)


@st.composite
def image_and_box(draw, min_side: int = 12, max_side: int = 64, min_box: int = 4):
    h = draw(st.integers(min_side, max_side))
    w = draw(st.integers(min_side, max_side))
    x0 = draw(st.integers(0, w - min_box))
    y0 = draw(st.integers(0, h - min_box))
    x1 = draw(st.integers(x0 + min_box, w))
    y1 = draw(st.integers(y0 + min_box, h))
    return h, w, np.array([[x0, y0, x1, y1]], dtype=np.float64)


@st.composite
def geometric_transform(draw):
    """(h, w, box, transform, pixel tolerance) for every geometric primitive."""
    h, w, box = draw(image_and_box())
    kind = draw(st.sampled_from(["hflip", "vflip", "resize", "crop", "pad", "rot90", "rotate", "affine",
                                 "list"]))
    if kind == "hflip":
        return h, w, box, HFlipTransform(w), 0.0
    if kind == "vflip":
        return h, w, box, VFlipTransform(h), 0.0
    if kind == "resize":
        nh, nw = draw(st.integers(h // 2 + 1, 3 * h)), draw(st.integers(w // 2 + 1, 3 * w))
        return h, w, box, ResizeTransform(h, w, nh, nw), 1.0
    if kind == "crop":
        x0, y0 = draw(st.integers(0, w - 4)), draw(st.integers(0, h - 4))
        cw, ch = draw(st.integers(4, w - x0)), draw(st.integers(4, h - y0))
        return h, w, box, CropTransform(x0, y0, cw, ch, orig_w=w, orig_h=h), 0.0
    if kind == "pad":
        pads = [draw(st.integers(0, 10)) for _ in range(4)]
        return h, w, box, PadTransform(*pads, orig_w=w, orig_h=h), 0.0
    if kind == "rot90":
        return h, w, box, RotationTransform(h, w, draw(st.sampled_from([90, 180, 270, -90]))), 0.0
    if kind == "rotate":
        # Sampling a rotated box at pixel centres can miss the sharp extreme vertex by up to
        # half a pixel diagonal plus the rounding of the pixel grid: 1.5px.
        return h, w, box, RotationTransform(h, w, draw(st.floats(-45, 45)), expand=True), 1.5
    if kind == "affine":
        sx, sy = draw(st.floats(0.6, 2.0)), draw(st.floats(0.6, 2.0))
        tx, ty = draw(st.integers(0, 8)), draw(st.integers(0, 8))
        m = np.array([[sx, 0, tx], [0, sy, ty]])
        return h, w, box, AffineTransform(m, w, h, int(w * sx) + tx + 1, int(h * sy) + ty + 1), 1.0
    nh, nw = draw(st.integers(h, 2 * h)), draw(st.integers(w, 2 * w))
    t = TransformList([ResizeTransform(h, w, nh, nw), HFlipTransform(nw), PadTransform(0, 0, 5, 3, nw, nh)])
    return h, w, box, t, 1.0


def _corner_bbox(t, box):
    x0, y0, x1, y1 = box[0]
    pts = t.apply_coords(np.array([[x0, y0], [x1, y0], [x0, y1], [x1, y1]], dtype=np.float64))
    return np.array([pts[:, 0].min(), pts[:, 1].min(), pts[:, 0].max(), pts[:, 1].max()])


def _mask_bbox(mask):
    ys, xs = np.nonzero(mask)
    return np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], dtype=np.float64)


@SETTINGS
@given(geometric_transform())
def test_apply_box_is_bbox_of_transformed_corners(case):
    h, w, box, t, _ = case
    np.testing.assert_allclose(t.apply_box(box)[0], _corner_bbox(t, box), atol=1e-6)


@SETTINGS
@given(geometric_transform())
def test_apply_box_matches_bbox_of_rendered_box_mask(case):
    h, w, box, t, tol = case
    mask = np.zeros((h, w), np.uint8)
    x0, y0, x1, y1 = box[0].astype(int)
    mask[y0:y1, x0:x1] = 1
    moved = t.apply_segmentation(mask)
    out_h, out_w = moved.shape[:2]
    expected = clip_boxes(t.apply_box(box), out_h, out_w)[0]
    if expected[2] - expected[0] < 1 or expected[3] - expected[1] < 1:  # cropped away entirely
        assert moved.sum() == 0
        return
    np.testing.assert_allclose(_mask_bbox(moved), expected, atol=tol + 1e-6)


@SETTINGS
@given(geometric_transform())
def test_inverse_restores_points(case):
    h, w, box, t, _ = case
    pts = np.array([[box[0, 0], box[0, 1]], [box[0, 2], box[0, 3]], [w / 3, h / 2]])
    np.testing.assert_allclose(t.inverse().apply_coords(t.apply_coords(pts)), pts, atol=1e-6)


@SETTINGS
@given(geometric_transform())
def test_inverse_restores_axis_aligned_boxes(case):
    h, w, box, t, _ = case
    if isinstance(t, AffineTransform) and isinstance(t, RotationTransform) and t.angle % 90:
        # An oblique rotation turns a box into its (larger) axis-aligned hull: not invertible.
        return
    np.testing.assert_allclose(t.inverse().apply_box(t.apply_box(box)), box, atol=1e-6)


@SETTINGS
@given(image_and_box())
def test_flips_and_pad_crop_inverse_restore_pixels(case):
    h, w, _ = case
    img = np.random.default_rng(h * 100 + w).integers(0, 255, (h, w, 3), dtype=np.uint8)
    for t in (HFlipTransform(w), VFlipTransform(h), PadTransform(1, 2, 3, 4, orig_w=w, orig_h=h)):
        np.testing.assert_array_equal(t.inverse().apply_image(t.apply_image(img)), img)


def test_hflip_moves_box_to_mirrored_position():
    t = HFlipTransform(100)
    np.testing.assert_allclose(t.apply_box(np.array([[10.0, 5.0, 30.0, 25.0]])), [[70, 5, 90, 25]])


def test_resize_scales_box_by_size_ratio():
    t = ResizeTransform(50, 100, 100, 300)
    np.testing.assert_allclose(t.apply_box(np.array([[10.0, 5.0, 30.0, 25.0]])), [[30, 10, 90, 50]])
    assert t.apply_image(np.zeros((50, 100, 3), np.uint8)).shape == (100, 300, 3)


def test_rotation_by_90_with_expand_swaps_canvas_sides():
    t = RotationTransform(40, 100, 90)
    assert (t.out_h, t.out_w) == (100, 40)
    assert t.apply_image(np.zeros((40, 100, 3), np.uint8)).shape == (100, 40, 3)
    # counter-clockwise: the top-left corner lands bottom-left
    np.testing.assert_allclose(t.apply_coords(np.array([[0.0, 0.0]])), [[0.0, 100.0]], atol=1e-9)


def test_transform_list_flattens_and_drops_noops():
    inner = TransformList([HFlipTransform(10), NoOpTransform()])
    t = TransformList([NoOpTransform(), inner, VFlipTransform(5)])
    assert [type(s).__name__ for s in t] == ["HFlipTransform", "VFlipTransform"]


def test_transform_list_rejects_non_transforms_with_clear_error():
    with pytest.raises(TypeError, match="TransformList takes Transform objects"):
        TransformList([HFlipTransform(4), "flip"])


def test_crop_outside_image_names_window_and_image_size():
    with pytest.raises(ValueError, match=r"x0=5 y0=0 w=10 h=4 does not fit an image of size 8x12"):
        CropTransform(5, 0, 10, 4).apply_image(np.zeros((8, 12), np.uint8))


def test_crop_inverse_without_original_size_explains_what_is_missing():
    with pytest.raises(NotImplementedError, match="orig_w and orig_h"):
        CropTransform(1, 1, 2, 2).inverse()


def test_resize_rejects_image_of_wrong_size():
    with pytest.raises(ValueError, match="expected an image of size 10x20, got 11x20"):
        ResizeTransform(10, 20, 5, 10).apply_image(np.zeros((11, 20), np.uint8))


def test_segmentation_resize_uses_nearest_labels_only():
    seg = np.zeros((10, 10), np.uint8)
    seg[:, 5:] = 7
    out = ResizeTransform(10, 10, 23, 17, interp="bicubic").apply_segmentation(seg)
    assert set(np.unique(out)) == {0, 7}


def test_pad_keeps_channel_layout_and_fill_value():
    img = np.ones((4, 5, 3), np.float32)
    out = PadTransform(0, 0, 3, 2, pad_value=-1.0).apply_image(img)
    assert out.shape == (6, 8, 3) and out.dtype == np.float32
    assert out[5, 7].tolist() == [-1.0, -1.0, -1.0] and out[0, 0].tolist() == [1.0, 1.0, 1.0]
