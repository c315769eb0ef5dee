"""Mask structures: every method against a direct numpy/pycocotools computation, polygons against
bitmaps after every geometric step, crop_and_resize against hand-computed RoIAlign values."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from pycocotools import mask as mask_utils

from kiln.data.transforms.transform import HFlipTransform, ResizeTransform, RotationTransform, TransformList
from kiln.structures import (
    BitmapMasks,
    BitMasks,
    Boxes,
    InstanceData,
    PolygonMasks,
    polygons_to_bitmask,
)
from kiln.structures.polygon_ops import clip_polygon, polygon_area

H, W = 40, 50


def _coco_raster(parts, h, w):
    rles = mask_utils.frPyObjects([list(map(float, p)) for p in parts], h, w)
    return mask_utils.decode(mask_utils.merge(rles))


def _rect(x0, y0, x1, y1):
    return np.array([x0, y0, x1, y0, x1, y1, x0, y1], dtype=np.float64)


def _star(cx, cy, r_out, r_in, n=5, phase=0.3):
    ang = np.arange(2 * n) * np.pi / n + phase
    r = np.where(np.arange(2 * n) % 2 == 0, r_out, r_in)
    return np.stack([cx + r * np.cos(ang), cy + r * np.sin(ang)], axis=1).reshape(-1)


@pytest.fixture
def polys() -> PolygonMasks:
    # A concave star, a two-part object (rectangle + triangle) and an axis-aligned box.
    return PolygonMasks([
        [_star(20.3, 18.7, 13.0, 6.0)],
        [_rect(30, 5, 45, 15), np.array([32.0, 25.0, 47.0, 22.0, 40.0, 36.0])],
        [_rect(3, 28, 17, 38)],
    ], H, W)


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.astype(bool), b.astype(bool)
    union = (a | b).sum()
    return float((a & b).sum() / union) if union else 1.0


def _assert_agree(poly_masks: PolygonMasks, bitmaps: BitmapMasks, min_iou: float) -> None:
    assert (poly_masks.height, poly_masks.width) == (bitmaps.height, bitmaps.width)
    raster = poly_masks.to_ndarray()
    assert raster.shape == bitmaps.to_ndarray().shape
    for i, (p, b) in enumerate(zip(raster, bitmaps.to_ndarray())):
        assert _iou(p, b) >= min_iou, f"instance {i}: IoU {_iou(p, b):.3f}"


# ----------------------------------------------------------------------------- construction
def test_polygon_raster_equals_pycocotools_union_of_parts(polys):
    raster = polys.to_ndarray()
    assert raster.dtype == np.uint8 and raster.shape == (3, H, W)
    for inst, got in zip(polys.masks, raster):
        np.testing.assert_array_equal(got, _coco_raster(inst, H, W))


def test_polygons_to_bitmask_of_nothing_is_empty():
    assert not polygons_to_bitmask([], 5, 6).any()
    assert polygons_to_bitmask([], 5, 6).shape == (5, 6)


def test_bitmap_rejects_wrong_shapes_and_non_binary_values():
    with pytest.raises(ValueError, match="must agree"):
        BitmapMasks(np.zeros((2, 4, 5), np.uint8), 4, 6)
    with pytest.raises(ValueError, match=r"\(N, H, W\)"):
        BitmapMasks(np.zeros((4, 5), np.uint8), 4, 5)
    with pytest.raises(ValueError, match="binary"):
        BitmapMasks(np.full((1, 4, 5), 0.7), 4, 5)
    ok = BitmapMasks(np.ones((1, 4, 5), np.float32), 4, 5)
    assert ok.masks.dtype == np.uint8 and ok.areas.tolist() == [20.0]


def test_polygon_rejects_degenerate_parts_and_half_a_size():
    with pytest.raises(ValueError, match="instance 0, part 1"):
        PolygonMasks([[_rect(0, 0, 2, 2), [1.0, 2.0, 3.0, 4.0]]], 5, 5)
    with pytest.raises(ValueError, match="even count"):
        PolygonMasks([[[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0]]], 5, 5)
    with pytest.raises(ValueError, match="both height and width"):
        PolygonMasks([[_rect(0, 0, 2, 2)]], 5)
    with pytest.raises(TypeError, match="instance 0 must be a list"):
        PolygonMasks([_rect(0, 0, 2, 2)], 5, 5)


def test_empty_mask_sets_keep_the_image_size():
    b = BitmapMasks([], 7, 9)
    assert b.to_ndarray().shape == (0, 7, 9) and len(b) == 0
    p = PolygonMasks([], 7, 9)
    assert p.to_ndarray().shape == (0, 7, 9)
    assert p.resize((14, 18)).to_ndarray().shape == (0, 14, 18)
    assert b.resize((14, 18)).to_ndarray().shape == (0, 14, 18)
    assert b.get_bboxes().shape == (0, 4) and p.get_bboxes().shape == (0, 4)


# ----------------------------------------------------------------------------- measures
def test_bitmap_boxes_are_tight_pixel_boxes_and_zero_when_empty(polys):
    bm = polys.to_bitmap()
    arr = np.concatenate([bm.to_ndarray(), np.zeros((1, H, W), np.uint8)])
    boxes = BitmapMasks(arr, H, W).get_bboxes()
    assert boxes.dtype == np.float32
    for m, box in zip(arr[:3], boxes[:3]):
        ys, xs = np.nonzero(m)
        np.testing.assert_array_equal(box, [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])
    np.testing.assert_array_equal(boxes[3], [0, 0, 0, 0])


def test_polygon_boxes_are_the_bounds_of_the_points(polys):
    boxes = polys.get_bboxes()
    for inst, box in zip(polys.masks, boxes):
        pts = np.concatenate(inst).reshape(-1, 2)
        np.testing.assert_allclose(box, [*pts.min(0), *pts.max(0)], rtol=1e-6)


def test_areas_bitmap_counts_pixels_polygon_sums_shoelace(polys):
    np.testing.assert_array_equal(polys.to_bitmap().areas, polys.to_ndarray().reshape(3, -1).sum(1))
    # rectangle 15x10 + triangle by the cross product, and a 14x10 rectangle
    tri = np.array([[32.0, 25.0], [47.0, 22.0], [40.0, 36.0]])
    (ax, ay), (bx, by) = tri[1] - tri[0], tri[2] - tri[0]
    tri_area = 0.5 * abs(ax * by - ay * bx)
    np.testing.assert_allclose(polys.areas[1:], [150.0 + tri_area, 140.0])
    assert polygon_area(_rect(0, 0, 3, 2)) == 6.0


# ----------------------------------------------------------------------------- container
def test_indexing_by_int_keeps_the_instance_axis(polys):
    bm = polys.to_bitmap()
    assert bm[1].to_ndarray().shape == (1, H, W)
    np.testing.assert_array_equal(bm[-1].to_ndarray()[0], bm.to_ndarray()[2])
    assert len(polys[1]) == 1 and polys[1].masks[0] is polys.masks[1]
    with pytest.raises(IndexError, match="out of range"):
        polys[3]


@pytest.mark.parametrize("index", [
    np.array([True, False, True]), torch.tensor([True, False, True]), [0, 2], torch.tensor([0, 2]),
    np.array([0, 2]), slice(0, 3, 2)])
def test_indexing_by_masks_and_arrays_selects_the_same_instances(polys, index):
    bm = polys.to_bitmap()
    np.testing.assert_array_equal(bm[index].to_ndarray(), bm.to_ndarray()[[0, 2]])
    assert polys[index].masks == [polys.masks[0], polys.masks[2]]


def test_bool_index_of_wrong_length_is_refused(polys):
    with pytest.raises(IndexError, match=r"shape \(3,\)"):
        polys.to_bitmap()[np.array([True, False])]


def test_cat_concatenates_and_refuses_mixed_sizes(polys):
    bm = polys.to_bitmap()
    both = BitmapMasks.cat([bm[:1], bm[1:]])
    np.testing.assert_array_equal(both.to_ndarray(), bm.to_ndarray())
    assert PolygonMasks.cat([polys[:2], polys[2:]]).masks == polys.masks
    with pytest.raises(ValueError, match="different image sizes"):
        BitmapMasks.cat([bm, bm.pad((H + 2, W))])
    with pytest.raises(TypeError, match="must be a PolygonMasks"):
        PolygonMasks.cat([polys, bm])


def test_instance_data_indexes_and_concatenates_mask_fields(polys):
    inst = InstanceData(masks=polys, labels=torch.tensor([1, 2, 3]))
    kept = inst[inst.labels > 1]
    assert kept.masks.masks == polys.masks[1:]
    joined = InstanceData.cat([kept, inst[:1]])
    assert isinstance(joined.masks, PolygonMasks) and len(joined.masks) == 3
    assert joined.masks.masks[2] is polys.masks[0]


# ----------------------------------------------------------------------------- geometry vs numpy
def test_flip_equals_numpy_flip(polys):
    bm = polys.to_bitmap()
    arr = bm.to_ndarray()
    np.testing.assert_array_equal(bm.flip("horizontal").to_ndarray(), arr[:, :, ::-1])
    np.testing.assert_array_equal(bm.flip("vertical").to_ndarray(), arr[:, ::-1])
    np.testing.assert_array_equal(bm.flip("diagonal").to_ndarray(), arr[:, ::-1, ::-1])
    # polygon x -> W - x: the box [30, 45] of instance 1's rectangle part lands on [5, 20]
    flipped = polys.flip("horizontal")
    np.testing.assert_allclose(flipped.masks[1][0], _rect(W - 30, 5, W - 45, 15))
    with pytest.raises(ValueError, match="flip_direction"):
        bm.flip("sideways")


def test_pad_crop_expand_equal_numpy_slicing(polys):
    bm = polys.to_bitmap()
    arr = bm.to_ndarray()
    np.testing.assert_array_equal(bm.pad((H + 5, W + 3)).to_ndarray(), np.pad(arr, ((0, 0), (0, 5), (0, 3))))
    np.testing.assert_array_equal(bm.crop(np.array([10, 4, 42, 30])).to_ndarray(), arr[:, 4:30, 10:42])
    canvas = np.zeros((3, H + 20, W + 11), np.uint8)
    canvas[:, 7:7 + H, 4:4 + W] = arr
    np.testing.assert_array_equal(bm.expand(H + 20, W + 11, 7, 4).to_ndarray(), canvas)
    with pytest.raises(ValueError, match="does not fit"):
        bm.expand(H, W, 1, 0)
    with pytest.raises(ValueError, match="smaller"):
        polys.pad((H - 1, W))


def test_crop_window_is_clipped_to_the_image_like_mmdetection(polys):
    arr = polys.to_bitmap().to_ndarray()
    np.testing.assert_array_equal(polys.to_bitmap().crop(np.array([-5, 30, 80, 90])).to_ndarray(),
                                  arr[:, 30:H, 0:W])
    assert polys.crop(np.array([-5, 30, 80, 90])).to_ndarray().shape == (3, H - 30, W)


def test_integer_translate_equals_a_zero_filled_shift(polys):
    bm = polys.to_bitmap()
    arr = bm.to_ndarray()
    right = np.zeros_like(arr)
    right[:, :, 6:] = arr[:, :, :-6]
    np.testing.assert_array_equal(bm.translate((H, W), 6).to_ndarray(), right)
    up = np.zeros_like(arr)
    up[:, :-4] = arr[:, 4:]
    np.testing.assert_array_equal(bm.translate((H, W), -4, "vertical").to_ndarray(), up)
    with pytest.raises(ValueError, match="direction"):
        bm.translate((H, W), 3, "diagonal")


def test_rotate_by_90_on_a_square_is_a_clockwise_rot90():
    rng = np.random.default_rng(0)
    arr = (rng.random((2, 16, 16)) > 0.5).astype(np.uint8)
    out = BitmapMasks(arr, 16, 16).rotate((16, 16), 90).to_ndarray()
    np.testing.assert_array_equal(out, np.rot90(arr, k=-1, axes=(1, 2)))
    # the polygon turns the same way: a box in the top-left corner goes to the top-right
    p = PolygonMasks([[_rect(1, 2, 5, 4)]], 16, 16).rotate((16, 16), 90)
    np.testing.assert_allclose(p.get_bboxes()[0], [12, 1, 14, 5], atol=1e-9)


def test_resize_by_two_repeats_every_pixel(polys):
    bm = polys.to_bitmap()
    arr = bm.to_ndarray()
    np.testing.assert_array_equal(bm.resize((2 * H, 2 * W)).to_ndarray(), arr.repeat(2, 1).repeat(2, 2))
    np.testing.assert_array_equal(bm.rescale(2.0).to_ndarray(), arr.repeat(2, 1).repeat(2, 2))
    # rescale to fit (long, short) = (100, 60): factor min(100/50, 60/40) = 1.5
    assert (polys.rescale((100, 60)).height, polys.rescale((100, 60)).width) == (60, 75)


def test_shear_moves_rows_by_magnitude_times_y():
    p = PolygonMasks([[_rect(2, 10, 6, 12)]], 20, 30).shear((20, 30), 0.5)
    np.testing.assert_allclose(p.get_bboxes()[0], [2 + 5, 10, 6 + 6, 12])
    with pytest.raises(ValueError, match="direction"):
        p.shear((20, 30), 0.5, "diagonal")


# ----------------------------------------------------------------------------- polygon vs bitmap
_OPS = {
    "flip_h": lambda m: m.flip("horizontal"),
    "flip_v": lambda m: m.flip("vertical"),
    "flip_d": lambda m: m.flip("diagonal"),
    "pad": lambda m: m.pad((H + 9, W + 4)),
    "crop": lambda m: m.crop(np.array([8, 6, 44, 33])),
    "expand": lambda m: m.expand(H + 10, W + 20, 3, 15),
    "resize_up": lambda m: m.resize((67, 91)),
    "resize_down": lambda m: m.resize((31, 29)),
    "rescale": lambda m: m.rescale(1.7),
    "translate": lambda m: m.translate((H, W), 11),
    "translate_out": lambda m: m.translate((H, W), -15, "vertical"),
    "rotate": lambda m: m.rotate((H, W), 33, interpolation="nearest"),
    "rotate_center_scale": lambda m: m.rotate((H, W), -20, center=(10.0, 30.0), scale=1.2,
                                              interpolation="nearest"),
    "shear": lambda m: m.shear((H, W), 0.3, interpolation="nearest"),
}


# Steps that only move whole pixels; resampling steps differ along the boundary of these small shapes.
_PIXEL_EXACT = {"crop", "expand", "flip_h", "flip_v", "flip_d", "pad", "translate", "translate_out"}


@pytest.mark.parametrize("op", sorted(_OPS))
def test_polygon_and_bitmap_agree_after_each_geometric_step(polys, op):
    moved_poly = _OPS[op](polys)
    moved_bitmap = _OPS[op](polys.to_bitmap())
    assert isinstance(moved_poly, PolygonMasks) and isinstance(moved_bitmap, BitmapMasks)
    _assert_agree(moved_poly, moved_bitmap, 0.97 if op in _PIXEL_EXACT else 0.85)


def test_polygon_and_bitmap_agree_after_a_transform_chain(polys):
    chain = TransformList([ResizeTransform(H, W, 60, 75), HFlipTransform(75), RotationTransform(60, 75, 17)])
    _assert_agree(polys.apply_transform(chain), polys.to_bitmap().apply_transform(chain), 0.85)


def test_polygons_cut_by_the_border_keep_exactly_the_inside_part():
    p = PolygonMasks([[_rect(5, 5, 15, 15)], [_rect(1, 1, 3, 3)]], 20, 20).translate((20, 20), -10)
    # instance 0 keeps x in [0, 5]; instance 1 leaves the image entirely
    np.testing.assert_allclose(p.areas, [50.0, 0.0])
    assert p.nonempty().tolist() == [True, False]
    np.testing.assert_array_equal(p.get_bboxes(), [[0, 5, 5, 15], [0, 0, 0, 0]])


def test_clip_polygon_is_an_exact_intersection_not_a_clamp():
    # a triangle with its apex outside the window: clamping the apex would change the area
    tri = np.array([0.0, 0.0, 10.0, 0.0, 5.0, 10.0])
    clipped = clip_polygon(tri, 0, 0, 10, 5)
    # the trapezoid between y=0 and y=5: (10 + 5) / 2 * 5
    assert polygon_area(clipped) == pytest.approx(37.5)
    assert clip_polygon(tri, 20, 20, 30, 30).size == 0


# ----------------------------------------------------------------------------- crop_and_resize
def test_bitmap_crop_and_resize_hand_computed_roialign_values():
    arr = np.zeros((2, 8, 8), np.uint8)
    arr[0, 2:6, 2:4] = 1  # left half of the window [2, 6] x [2, 6]
    arr[1] = 1
    bm = BitmapMasks(arr, 8, 8)
    boxes = torch.tensor([[2.0, 2.0, 6.0, 6.0], [3.5, 2.0, 4.5, 6.0], [0.0, 0.0, 8.0, 8.0]])
    soft = bm.crop_and_resize(boxes, (2, 2), inds=torch.tensor([0, 0, 1]), binarize=False)
    # 2x2 bins of 2 px, samples at pixel centres: exactly the window's left column
    np.testing.assert_allclose(soft[0].numpy(), [[1.0, 0.0], [1.0, 0.0]])
    # a 1 px wide box over the edge between columns 3 (on) and 4 (off): bins of 0.5 px sampled once
    # at x = 3.75 and 4.25, i.e. 3.25 and 3.75 in pixel-index space -> 0.75 and 0.25 bilinearly
    np.testing.assert_allclose(soft[1].numpy(), [[0.75, 0.25], [0.75, 0.25]])
    np.testing.assert_allclose(soft[2].numpy(), np.ones((2, 2)))
    hard = bm.crop_and_resize(boxes, 2, inds=torch.tensor([0, 0, 1]))
    assert hard.dtype == torch.bool
    assert hard[1].tolist() == [[True, False], [True, False]]
    half = bm.crop_and_resize(torch.tensor([[3.5, 2.0, 4.5, 6.0]]), 1, inds=torch.tensor([0]), binarize=False)
    assert half.item() == pytest.approx(0.5)  # one sample at x = 4.0, the edge itself
    assert bm.crop_and_resize(torch.tensor([[3.5, 2.0, 4.5, 6.0]]), 1, inds=torch.tensor([0])).item()


def test_polygon_crop_and_resize_rasterizes_inside_the_box():
    p = PolygonMasks([[_rect(2, 2, 4, 6)]], 8, 8)
    out = p.crop_and_resize(torch.tensor([[2.0, 2.0, 6.0, 6.0]]), (4, 4), inds=torch.tensor([0]))
    expected = np.zeros((4, 4), bool)
    expected[:, :2] = True
    np.testing.assert_array_equal(out[0].numpy(), expected)


def test_polygon_and_bitmap_crop_and_resize_agree(polys):
    boxes = torch.tensor([[10.0, 5.0, 34.0, 33.0], [28.0, 3.0, 48.0, 37.0], [2.0, 27.0, 18.0, 39.0],
                          [14.5, 10.2, 22.3, 30.9]])
    inds = torch.tensor([0, 1, 2, 0])
    a = polys.crop_and_resize(boxes, (28, 28), inds=inds)
    b = polys.to_bitmap().crop_and_resize(boxes, (28, 28), inds=inds)
    assert a.shape == b.shape == (4, 28, 28) and a.dtype == b.dtype == torch.bool
    for i in range(4):
        assert _iou(a[i].numpy(), b[i].numpy()) > 0.85


def test_crop_and_resize_refuses_mismatched_inds(polys):
    boxes = torch.zeros((2, 4))
    with pytest.raises(ValueError, match="one box per mask"):
        polys.crop_and_resize(boxes, 7)
    with pytest.raises(ValueError, match=r"shape \(2,\)"):
        polys.to_bitmap().crop_and_resize(boxes, 7, inds=torch.tensor([0]))
    with pytest.raises(IndexError, match=r"\[0, 3\)"):
        polys.to_bitmap().crop_and_resize(boxes, 7, inds=torch.tensor([0, 3]))
    with pytest.raises(ValueError, match="bilinear"):
        polys.to_bitmap().crop_and_resize(boxes, 7, inds=torch.tensor([0, 1]), interpolation="nearest")


def test_crop_and_resize_of_no_boxes_is_empty(polys):
    none = torch.zeros(0, dtype=torch.long)
    out = polys.to_bitmap().crop_and_resize(torch.zeros((0, 4)), (5, 6), inds=none)
    assert out.shape == (0, 5, 6) and out.dtype == torch.bool


def test_to_tensor_converts_dtype(polys):
    t = polys.to_tensor(torch.float32, "cpu")
    assert t.dtype == torch.float32 and t.shape == (3, H, W)
    np.testing.assert_array_equal(t.numpy(), polys.to_ndarray())


# ----------------------------------------------------------------------------- Detectron2 spellings
def test_bitmasks_is_a_bitmapmasks_read_through_tensor(polys):
    raw = torch.from_numpy(polys.to_ndarray())
    bm = BitMasks(raw)
    assert isinstance(bm, BitmapMasks) and bm.image_size == (H, W)
    assert bm.tensor.dtype == torch.bool and torch.equal(bm.tensor, raw.bool())
    sub = bm[torch.tensor([True, False, True])]
    assert isinstance(sub, BitMasks) and torch.equal(sub.tensor, raw[[0, 2]].bool())
    assert isinstance(bm.flip(), BitMasks)
    assert [t.shape for t in bm] == [(H, W)] * 3


def test_bitmasks_boxes_nonempty_and_crop_and_resize(polys):
    arr = np.concatenate([polys.to_ndarray(), np.zeros((1, H, W), np.uint8)])
    bm = BitMasks(torch.from_numpy(arr))
    boxes = bm.get_bounding_boxes()
    assert isinstance(boxes, Boxes)
    np.testing.assert_array_equal(boxes.tensor.numpy(), BitmapMasks(arr, H, W).get_bboxes())
    assert bm.nonempty().tolist() == [True, True, True, False]
    out = bm.crop_and_resize(boxes.tensor, 14)
    assert out.shape == (4, 14, 14) and out.dtype == torch.bool
    # a mask cropped by its own tight box fills most of the crop
    assert out[2].all() and not out[3].any()


def test_bitmasks_from_polygon_masks_equals_rasterizing(polys):
    d2 = PolygonMasks(polys.masks)  # Detectron2 spelling, no size
    bm = BitMasks.from_polygon_masks(d2, H, W)
    np.testing.assert_array_equal(bm.tensor.numpy(), polys.to_ndarray().astype(bool))
    raw = BitMasks.from_polygon_masks([[p.tolist() for p in inst] for inst in polys.masks], H, W)
    assert torch.equal(raw.tensor, bm.tensor)


def test_bitmasks_to_device_moves_the_view_and_refuses_a_dtype(polys):
    bm = BitMasks(torch.from_numpy(polys.to_ndarray()))
    assert bm.to("cpu").device == torch.device("cpu")
    with pytest.raises(TypeError, match="binary"):
        bm.to(torch.float32)


def test_detectron2_polygonmasks_without_size(polys):
    d2 = PolygonMasks([[p.tolist() for p in inst] for inst in polys.masks])
    assert d2.polygons is d2.masks and len(d2) == 3
    np.testing.assert_allclose(d2.area().numpy(), polys.areas)
    np.testing.assert_array_equal(d2.get_bounding_boxes().tensor.numpy(), polys.get_bboxes())
    assert d2.nonempty().tolist() == [True, True, True]
    boxes = torch.tensor([[10.0, 5.0, 34.0, 33.0], [28.0, 3.0, 48.0, 37.0], [2.0, 27.0, 18.0, 39.0]])
    assert torch.equal(d2.crop_and_resize(boxes, 28), polys.crop_and_resize(boxes, 28))
    assert d2.to("cuda") is d2  # polygons stay on the CPU, as in Detectron2
    with pytest.raises(ValueError, match="needs the image size"):
        d2.to_ndarray()
    with pytest.raises(ValueError, match="needs the image size"):
        d2.flip()


def test_subtract_convex_leaves_disjoint_pieces_of_the_exact_difference():
    from kiln.structures.polygon_ops import subtract_convex

    square = _rect(0, 0, 10, 10)
    hole = np.array([4.0, -2.0, 14.0, -2.0, 14.0, 6.0, 4.0, 6.0])  # covers x in [4, 10], y in [0, 6]
    pieces = subtract_convex(square, hole)
    assert sum(polygon_area(p) for p in pieces) == pytest.approx(100 - 36)
    raster = polygons_to_bitmask(pieces, 10, 10)
    expected = np.ones((10, 10), bool)
    expected[0:6, 4:10] = False
    np.testing.assert_array_equal(raster, expected)
    # clockwise or counter-clockwise convex polygons cut the same
    assert sum(polygon_area(p) for p in subtract_convex(square, hole.reshape(-1, 2)[::-1].reshape(-1))) == \
        pytest.approx(64)
    assert subtract_convex(square, _rect(-1, -1, 11, 11)) == []


def test_label_map_fill_values_do_not_leak_into_instance_masks():
    from kiln.data.transforms.transform import PadTransform

    arr = np.ones((1, 4, 5), np.uint8)
    pad = PadTransform(0, 0, 3, 2, seg_pad_value=255)  # Detectron2's FixedSizeCrop pads label maps with 255
    out = BitmapMasks(arr, 4, 5).apply_transform(pad).to_ndarray()
    expected = np.zeros((1, 6, 8), np.uint8)
    expected[0, :4, :5] = 1
    np.testing.assert_array_equal(out, expected)
    ones = BitmapMasks(arr, 4, 5).apply_transform(PadTransform(0, 0, 3, 2, seg_pad_value=1)).to_ndarray()
    assert ones.all()  # a 0/1 fill (Pad pad_val=dict(masks=1)) is honoured
    as_bool = BitmapMasks(arr.astype(bool), 4, 5).apply_transform(pad).to_ndarray()
    np.testing.assert_array_equal(as_bool, expected.astype(bool))
