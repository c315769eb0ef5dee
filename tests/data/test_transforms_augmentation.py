"""Augmentations (Detectron2 style): each picks a primitive transform and applies it to AugInput."""

from __future__ import annotations

import numpy as np
import pytest

from kiln.data.transforms import (
    AugInput,
    Augmentation,
    AugmentationList,
    BlendTransform,
    CropTransform,
    FixedSizeCrop,
    HFlipTransform,
    NoOpTransform,
    RandomApply,
    RandomBrightness,
    RandomContrast,
    RandomCrop,
    RandomFlip,
    RandomRotation,
    RandomSaturation,
    Resize,
    ResizeScale,
    ResizeShortestEdge,
    ResizeTransform,
    TransformList,
    apply_augmentations,
)


def _img(h=40, w=60):
    return np.random.default_rng(0).integers(0, 255, (h, w, 3), dtype=np.uint8)


def test_augmentation_list_moves_image_and_boxes_together_and_returns_transforms():
    inp = AugInput(_img(20, 30), boxes=np.array([[0, 0, 10, 10]], np.float32))
    tfms = AugmentationList([Resize((40, 60)), RandomFlip(prob=1.0)])(inp)
    assert isinstance(tfms, TransformList) and len(tfms) == 2
    assert inp.image.shape == (40, 60, 3)
    np.testing.assert_allclose(inp.boxes, [[40, 0, 60, 20]])


def test_resize_shortest_edge_choice_respects_max_size():
    np.random.seed(0)
    img = _img(100, 400)
    for _ in range(5):
        t = ResizeShortestEdge([50, 80], max_size=200, sample_style="choice").get_transform(img)
        assert (t.new_h, t.new_w) in {(50, 200)}  # 80 would make the long edge 320 > 200


def test_resize_shortest_edge_range_samples_inside_range():
    np.random.seed(1)
    sizes = {min(ResizeShortestEdge((20, 30)).get_transform(_img(40, 60)).new_h, 1000) for _ in range(30)}
    assert sizes <= set(range(20, 31)) and len(sizes) > 3


def test_resize_shortest_edge_range_needs_two_values():
    with pytest.raises(ValueError, match="needs \\(min, max\\)"):
        ResizeShortestEdge([10, 20, 30], sample_style="range")


def test_random_flip_probability_one_and_zero():
    img = _img()
    assert isinstance(RandomFlip(prob=1.0).get_transform(img), HFlipTransform)
    assert isinstance(RandomFlip(prob=0.0).get_transform(img), NoOpTransform)
    assert RandomFlip(prob=1.0, horizontal=False, vertical=True).get_transform(img).height == 40


def test_random_flip_rejects_both_directions():
    with pytest.raises(ValueError, match="two RandomFlip"):
        RandomFlip(horizontal=True, vertical=True)


@pytest.mark.parametrize("crop_type,size,check", [
    ("relative", (0.5, 0.25), lambda h, w: (h, w) == (20, 15)),
    ("relative_range", (0.5, 0.5), lambda h, w: 20 <= h <= 40 and 30 <= w <= 60),
    ("absolute", (30, 100), lambda h, w: (h, w) == (30, 60)),
    ("absolute_range", (10, 20), lambda h, w: 10 <= h <= 20 and 10 <= w <= 20),
])
def test_random_crop_window_sizes_follow_crop_type(crop_type, size, check):
    np.random.seed(3)
    t = RandomCrop(crop_type, size).get_transform(_img())
    assert isinstance(t, CropTransform) and check(t.h, t.w)
    assert t.x0 + t.w <= 60 and t.y0 + t.h <= 40


def test_random_crop_unknown_type_lists_valid_types():
    with pytest.raises(ValueError, match="relative_range"):
        RandomCrop("middle", (1, 1))


def test_fixed_size_crop_output_is_exactly_crop_size():
    np.random.seed(0)
    for shape in [(40, 60), (10, 90), (100, 20)]:
        inp = AugInput(_img(*shape))
        FixedSizeCrop((32, 48))(inp)
        assert inp.image.shape == (32, 48, 3)


def test_resize_scale_fits_target_times_factor():
    np.random.seed(0)
    t = ResizeScale(0.5, 0.5, 100, 200).get_transform(_img(50, 50))
    assert (t.new_h, t.new_w) == (50, 50)  # min(100*0.5/50, 200*0.5/50) = 1


def test_random_rotation_expands_canvas_to_fit_rotated_image():
    inp = AugInput(_img(40, 60), boxes=np.array([[0, 0, 60, 40]], np.float32))
    RandomRotation([90], sample_style="choice")(inp)
    assert inp.image.shape == (60, 40, 3)
    np.testing.assert_allclose(inp.boxes, [[0, 0, 40, 60]], atol=1e-4)


def test_random_brightness_factor_one_keeps_image_and_zero_blacks_it():
    img = _img()
    np.testing.assert_array_equal(RandomBrightness(1.0, 1.0).get_transform(img).apply_image(img), img)
    assert RandomBrightness(0.0, 0.0).get_transform(img).apply_image(img).max() == 0


def test_random_contrast_zero_gives_uniform_mean_image():
    img = _img()
    out = RandomContrast(0.0, 0.0).get_transform(img).apply_image(img)
    assert out.min() == out.max() == int(round(img.mean()))


def test_random_saturation_zero_gives_gray_image():
    out = RandomSaturation(0.0, 0.0).get_transform(_img()).apply_image(_img())
    assert np.abs(out[..., 0].astype(int) - out[..., 2]).max() <= 1


def test_color_augmentations_leave_boxes_unchanged():
    boxes = np.array([[1, 2, 30, 20]], np.float32)
    inp = AugInput(_img(), boxes=boxes)
    AugmentationList([RandomBrightness(0.5, 1.5), RandomContrast(0.5, 1.5), RandomSaturation(0.5, 1.5)])(inp)
    np.testing.assert_array_equal(inp.boxes, boxes)


def test_blend_on_uint8_clips_and_keeps_dtype():
    out = BlendTransform(200.0, 1.0, 1.0).apply_image(np.full((2, 2), 100, np.uint8))
    assert out.dtype == np.uint8 and out.max() == 255


def test_augmentations_are_reproducible_under_the_loaders_numpy_seed():
    augs = [ResizeShortestEdge((20, 60)), RandomFlip(), RandomCrop("relative_range", (0.3, 0.3))]
    runs = []
    for _ in range(2):
        np.random.seed(123)
        img, tfms = apply_augmentations(augs, _img())
        runs.append((img.shape, repr(tfms)))
    assert runs[0] == runs[1]


def test_random_apply_uses_probability():
    np.random.seed(0)
    t = RandomApply(RandomFlip(prob=1.0), prob=0.0).get_transform(_img())
    assert isinstance(t, NoOpTransform)


def test_custom_augmentation_can_read_boxes():
    class CropAroundFirstBox(Augmentation):
        input_args = ("image", "boxes")

        def get_transform(self, image, boxes):
            x0, y0, x1, y1 = boxes[0].astype(int)
            return CropTransform(x0, y0, x1 - x0, y1 - y0)

    inp = AugInput(_img(), boxes=np.array([[10, 5, 30, 25]], np.float32))
    CropAroundFirstBox()(inp)
    assert inp.image.shape == (20, 20, 3)
    np.testing.assert_allclose(inp.boxes, [[0, 0, 20, 20]])


def test_augmentation_returning_non_transform_fails_clearly():
    class Bad(Augmentation):
        def get_transform(self, image):
            return "flip"

    with pytest.raises(TypeError, match="Bad.get_transform must return a Transform"):
        Bad()(AugInput(_img()))


def test_aug_input_rejects_non_image():
    with pytest.raises(ValueError, match="HxW or HxWxC numpy array"):
        AugInput([[1, 2]])


def test_plain_transforms_can_be_mixed_into_augmentation_list():
    inp = AugInput(_img(10, 10))
    tfms = AugmentationList([ResizeTransform(10, 10, 20, 30)])(inp)
    assert inp.image.shape == (20, 30, 3) and len(tfms) == 1
