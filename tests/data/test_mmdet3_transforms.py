"""MMDetection 3.x transform names and arguments: same geometry as their 2.x twins, the 3.x batch form
(PackDetInputs), TestTimeAug, and the refusals (mixed spellings, masks in the 3.x form, remote backends)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from kiln.data.transforms import Compose
from kiln.registry import TRANSFORMS
from kiln.structures import BitmapMasks


def _results(h: int = 60, w: int = 90) -> dict:
    rng = np.random.default_rng(0)
    img = rng.integers(0, 255, (h, w, 3), dtype=np.uint8)
    return dict(img=img, img_shape=img.shape, ori_shape=img.shape, img_fields=["img"],
                gt_bboxes=np.array([[10, 5, 40, 30], [50, 20, 88, 58]], np.float32),
                gt_labels=np.array([0, 1], np.int64), bbox_fields=["gt_bboxes"], image_id=7,
                filename="/x/7.jpg")


def _run(cfg: dict, results: dict | None = None, seed: int = 0) -> dict:
    np.random.seed(seed)
    return TRANSFORMS.build(cfg)(results if results is not None else _results())


def _same_geometry(a: dict, b: dict) -> None:
    assert a["img"].shape == b["img"].shape
    np.testing.assert_array_equal(a["img"], b["img"])
    np.testing.assert_allclose(a["gt_bboxes"], b["gt_bboxes"])
    np.testing.assert_allclose(a["scale_factor"], b["scale_factor"])


def test_resize_scale_keep_ratio_matches_2x_img_scale():
    a = _run(dict(type="Resize", scale=(1333, 800), keep_ratio=True))
    b = _run(dict(type="Resize", img_scale=(1333, 800), keep_ratio=True))
    _same_geometry(a, b)
    assert a["img"].shape[:2] == (800, 1200)  # short edge 60 -> 800 bounds it (90 * 800/60 = 1200)


def test_resize_3x_without_keep_ratio_resizes_to_exact_w_h():
    out = _run(dict(type="Resize", scale=(100, 50)))
    assert out["img"].shape[:2] == (50, 100)
    np.testing.assert_allclose(out["scale_factor"][:2], [100 / 90, 50 / 60], rtol=1e-6)


def test_resize_scale_factor_multiplies_the_size():
    out = _run(dict(type="Resize", scale_factor=0.5, keep_ratio=True))
    assert out["img"].shape[:2] == (30, 45)
    np.testing.assert_allclose(out["gt_bboxes"][0], [5, 2.5, 20, 15])


def test_resize_3x_twice_keeps_scale_factor_relative_to_original():
    pipe = Compose([dict(type="Resize", scale=(180, 120)), dict(type="Resize", scale_factor=0.5)])
    out = pipe(_results())
    assert out["img"].shape[:2] == (60, 90)
    np.testing.assert_allclose(out["scale_factor"][:2], [1.0, 1.0], rtol=1e-6)
    with pytest.raises(RuntimeError, match="already resized"):
        Compose([dict(type="Resize", img_scale=(180, 120), keep_ratio=False),
                 dict(type="Resize", img_scale=(90, 60), keep_ratio=False)])(_results())


def test_resize_refuses_mixed_spellings():
    with pytest.raises(ValueError, match=r"Resize mixes the MMDetection 2.x argument\(s\) \['img_scale'\]"):
        TRANSFORMS.build(dict(type="Resize", img_scale=(10, 10), scale=(10, 10)))
    with pytest.raises(ValueError, match="exactly one of scale or scale_factor"):
        TRANSFORMS.build(dict(type="Resize", scale=(10, 10), scale_factor=2.0))


def test_random_choice_resize_matches_2x_value_mode():
    scales = [(1333, 640), (1333, 672), (1333, 704), (1333, 800)]
    for seed in range(6):
        a = _run(dict(type="RandomChoiceResize", scales=scales, keep_ratio=True), seed=seed)
        b = _run(dict(type="Resize", img_scale=scales, multiscale_mode="value", keep_ratio=True), seed=seed)
        _same_geometry(a, b)


def test_random_resize_matches_2x_range_mode_and_ratio_range():
    scales = [(1333, 640), (1333, 800)]
    shorts = set()
    for seed in range(6):
        a = _run(dict(type="RandomResize", scale=scales, keep_ratio=True), seed=seed)
        b = _run(dict(type="Resize", img_scale=scales, multiscale_mode="range", keep_ratio=True), seed=seed)
        _same_geometry(a, b)
        shorts.add(a["img"].shape[0])
        a = _run(dict(type="RandomResize", scale=(200, 100), ratio_range=(0.5, 1.5), keep_ratio=True),
                 seed=seed)
        b = _run(dict(type="Resize", img_scale=(200, 100), ratio_range=(0.5, 1.5), keep_ratio=True),
                 seed=seed)
        _same_geometry(a, b)
    assert len(shorts) > 1 and all(640 <= s <= 800 for s in shorts)


def test_random_resize_refuses_other_resize_types_and_bad_scales():
    with pytest.raises(ValueError, match="resize_type='ResizeShortestEdge'"):
        TRANSFORMS.build(dict(type="RandomResize", scale=[(10, 10), (20, 20)],
                              resize_type="ResizeShortestEdge"))
    with pytest.raises(ValueError, match=r"needs scale=\[\(w0, h0\), \(w1, h1\)\]"):
        TRANSFORMS.build(dict(type="RandomResize", scale=(10, 10)))


def test_random_flip_prob_matches_2x_flip_ratio():
    for seed in range(8):
        a = _run(dict(type="RandomFlip", prob=0.5), seed=seed)
        b = _run(dict(type="RandomFlip", flip_ratio=0.5), seed=seed)
        assert a["flip"] == b["flip"] and a["flip_direction"] == b["flip_direction"]
        np.testing.assert_array_equal(a["img"], b["img"])
        np.testing.assert_allclose(a["gt_bboxes"], b["gt_bboxes"])
    out = _run(dict(type="RandomFlip", prob=1.0))
    np.testing.assert_allclose(out["gt_bboxes"][0], [50, 5, 80, 30])  # x -> 90 - x


def test_random_flip_3x_draws_even_when_flip_is_preset():
    preset = _results()
    preset["flip"] = False
    assert _run(dict(type="RandomFlip", prob=1.0), preset)["flip"] is True
    preset = _results()
    preset["flip"] = False
    assert _run(dict(type="RandomFlip", flip_ratio=1.0), preset)["flip"] is False  # 2.x: the wrapper decides
    with pytest.raises(ValueError, match="mixes"):
        TRANSFORMS.build(dict(type="RandomFlip", prob=0.5, flip_ratio=0.5))


def test_pad_size_is_w_h_in_a_3x_pipeline_and_h_w_in_a_2x_one():
    out3 = Compose([dict(type="Pad", size=(100, 70)), dict(type="PackDetInputs")])(_results())
    assert tuple(out3["inputs"].shape[1:]) == (70, 100)
    assert out3["data_samples"].pad_shape == (70, 100)
    out2 = Compose([dict(type="Pad", size=(70, 100)),
                    dict(type="Collect", keys=["img"], meta_keys=["pad_shape"])])(_results())
    assert tuple(out2["img"].shape[1:]) == (70, 100)


def test_pad_to_square_and_size_divisor_in_3x():
    out = Compose([dict(type="Pad", pad_to_square=True, size_divisor=32, pad_val=dict(img=114)),
                   dict(type="PackDetInputs")])(_results())
    assert tuple(out["inputs"].shape[1:]) == (96, 96)
    assert int(out["inputs"][0, 95, 95]) == 114
    with pytest.raises(ValueError, match="padding_mode='reflect'"):
        TRANSFORMS.build(dict(type="Pad", size_divisor=32, padding_mode="reflect"))


def test_random_crop_absolute_size_is_w_h_in_a_3x_pipeline():
    np.random.seed(0)
    out3 = Compose([dict(type="RandomCrop", crop_size=(50, 20), allow_negative_crop=True),
                    dict(type="PackDetInputs")])(_results())
    assert tuple(out3["inputs"].shape[1:]) == (20, 50)
    np.random.seed(0)
    out2 = Compose([dict(type="RandomCrop", crop_size=(50, 20), allow_negative_crop=True)])(_results())
    assert out2["img"].shape[:2] == (50, 20)


def test_pack_det_inputs_gives_the_3x_batch_form():
    res = _results()
    res["gt_bboxes_ignore"] = np.array([[1, 1, 5, 5]], np.float32)
    res["gt_labels_ignore"] = np.array([1], np.int64)
    res["bbox_fields"].append("gt_bboxes_ignore")
    out = Compose([dict(type="Resize", scale=(45, 30), keep_ratio=True), dict(type="PackDetInputs")])(res)
    assert set(out) == {"inputs", "data_samples"}
    inputs, sample = out["inputs"], out["data_samples"]
    assert inputs.dtype == torch.uint8 and tuple(inputs.shape) == (3, 30, 45)
    assert sample.metainfo == dict(img_id=7, img_path="/x/7.jpg", ori_shape=(60, 90), img_shape=(30, 45),
                                   scale_factor=(0.5, 0.5), flip=False, flip_direction=None)
    assert sample.gt_instances.bboxes.dtype == torch.float32
    assert sample.gt_instances.bboxes.tolist() == [[5, 2.5, 20, 15], [25, 10, 44, 29]]
    assert sample.gt_instances.labels.dtype == torch.int64 and sample.gt_instances.labels.tolist() == [0, 1]
    assert sample.ignored_instances.bboxes.tolist() == [[0.5, 0.5, 2.5, 2.5]]
    assert sample.ignored_instances.labels.tolist() == [1]
    assert "pad_shape" not in sample.metainfo  # no Pad ran


def test_pack_det_inputs_meta_keys_select_the_metainfo():
    out = Compose([dict(type="PackDetInputs", meta_keys=("img_id", "img_shape", "not_there"))])(_results())
    assert out["data_samples"].metainfo == dict(img_id=7, img_shape=(60, 90))


def test_crop_drops_ignored_boxes_with_their_labels():
    res = _results()
    res["gt_bboxes_ignore"] = np.array([[1, 1, 5, 5], [80, 50, 89, 59]], np.float32)
    res["gt_labels_ignore"] = np.array([0, 1], np.int64)
    res["bbox_fields"].append("gt_bboxes_ignore")
    np.random.seed(3)
    out = Compose([dict(type="RandomCrop", crop_size=(40, 30), allow_negative_crop=True),
                   dict(type="PackDetInputs")])(res)
    ignored = out["data_samples"].ignored_instances
    assert len(ignored.bboxes) == len(ignored.labels) < 2


def test_test_time_aug_yields_one_view_per_combination():
    tta = TRANSFORMS.build(dict(type="TestTimeAug", transforms=[
        [dict(type="Resize", scale=s, keep_ratio=True) for s in [(90, 60), (45, 30), (180, 120)]],
        [dict(type="RandomFlip", prob=1.0), dict(type="RandomFlip", prob=0.0)],
        [dict(type="PackDetInputs", meta_keys=("img_id", "img_shape", "scale_factor", "flip",
                                               "flip_direction"))]]))
    out = tta(_results())
    assert set(out) == {"inputs", "data_samples"} and len(out["inputs"]) == 6
    shapes = [tuple(t.shape[1:]) for t in out["inputs"]]
    assert shapes == [(60, 90)] * 2 + [(30, 45)] * 2 + [(120, 180)] * 2
    assert [s.flip for s in out["data_samples"]] == [True, False] * 3
    assert [s.flip_direction for s in out["data_samples"]] == ["horizontal", None] * 3
    assert [s.img_shape for s in out["data_samples"]] == shapes


def test_compose_refuses_a_pipeline_mixing_2x_and_3x():
    with pytest.raises(ValueError, match=r"mixes MMDetection 3.x and 2.x steps.*PackDetInputs.*Collect"):
        Compose([dict(type="LoadImageFromFile"), dict(type="PackDetInputs"),
                 dict(type="Collect", keys=["img"])])
    with pytest.raises(ValueError, match=r"Resize\(scale=...\).*RandomFlip\(flip_ratio=...\)"):
        Compose([dict(type="Resize", scale=(10, 10)), dict(type="RandomFlip", flip_ratio=0.5)])


def test_label_maps_in_the_3x_form_are_refused():
    with pytest.raises(ValueError, match="with_seg=True.*label maps"):
        Compose([dict(type="LoadAnnotations", with_bbox=True, with_seg=True), dict(type="PackDetInputs")])


def test_load_image_backends(tmp_path):
    img = np.random.default_rng(1).integers(0, 255, (12, 16, 3), dtype=np.uint8)
    cv2.imwrite(str(tmp_path / "a.png"), img)
    res = lambda: dict(img_info=dict(filename="a.png"), img_prefix=str(tmp_path))  # noqa: E731
    a = TRANSFORMS.build(dict(type="LoadImageFromFile", backend_args=None))(res())["img"]
    b = TRANSFORMS.build(dict(type="LoadImageFromFile", imdecode_backend="pillow"))(res())["img"]
    np.testing.assert_array_equal(a, img)
    np.testing.assert_array_equal(b, img)  # pillow decodes to BGR too, as MMCV's
    with pytest.raises(ValueError, match="kiln reads local files only"):
        TRANSFORMS.build(dict(type="LoadImageFromFile", backend_args=dict(backend="petrel")))
    with pytest.raises(ValueError, match="imdecode_backend='turbojpeg'"):
        TRANSFORMS.build(dict(type="LoadImageFromFile", imdecode_backend="turbojpeg"))
    missing = dict(img_info=dict(filename="nope.png"), img_prefix=str(tmp_path))
    assert TRANSFORMS.build(dict(type="LoadImageFromFile", ignore_empty=True))(missing) is None
    with pytest.raises(FileNotFoundError, match="nope.png"):
        TRANSFORMS.build(dict(type="LoadImageFromFile"))(dict(missing))


def test_load_annotations_refuses_what_kiln_cannot_load():
    with pytest.raises(ValueError, match="box_type='rbox'"):
        TRANSFORMS.build(dict(type="LoadAnnotations", box_type="rbox"))
    with pytest.raises(ValueError, match="with_keypoints=True"):
        TRANSFORMS.build(dict(type="LoadAnnotations", with_keypoints=True))


def test_photometric_distortion_in_a_3x_pipeline_gives_float_inputs():
    np.random.seed(0)
    out = Compose([dict(type="PhotoMetricDistortion"), dict(type="PackDetInputs")])(_results())
    assert out["inputs"].dtype == torch.float32 and tuple(out["inputs"].shape) == (3, 60, 90)


def test_filter_annotations_drops_small_boxes_and_rejects_empty_samples():
    res = _results()
    res["gt_bboxes"] = np.array([[10, 5, 40, 30], [50, 20, 50.005, 58]], np.float32)
    out = _run(dict(type="FilterAnnotations", min_gt_bbox_wh=(1e-2, 1e-2)), res)
    assert out["gt_bboxes"].tolist() == [[10, 5, 40, 30]] and out["gt_labels"].tolist() == [0]
    res = _results()
    res["gt_bboxes"] = np.array([[10, 5, 10.5, 30]], np.float32)
    res["gt_labels"] = np.array([1], np.int64)
    assert _run(dict(type="FilterAnnotations", min_gt_bbox_wh=(1, 1)), res) is None
    res = _results()
    res["gt_bboxes"] = np.array([[10, 5, 10.5, 30]], np.float32)
    res["gt_labels"] = np.array([1], np.int64)
    kept = _run(dict(type="FilterAnnotations", min_gt_bbox_wh=(1, 1), keep_empty=False), res)
    assert len(kept["gt_bboxes"]) == 0 and len(kept["gt_labels"]) == 0
    with pytest.raises(ValueError, match="by_box=True or by_mask=True"):
        TRANSFORMS.build(dict(type="FilterAnnotations", by_box=False))


def test_random_crop_recompute_bbox_uses_the_masks():
    res = _results()
    masks = np.zeros((2, 60, 90), np.uint8)
    masks[0, 10:20, 15:25] = 1
    masks[1, 30:50, 60:80] = 1
    res.update(gt_masks=BitmapMasks(masks, 60, 90), mask_fields=["gt_masks"])
    np.random.seed(0)
    out = Compose([dict(type="RandomCrop", crop_size=(60, 90), recompute_bbox=True)])(res)  # the whole image
    assert out["gt_bboxes"].tolist() == [[15, 10, 25, 20], [60, 30, 80, 50]]
    plain = _results()
    np.random.seed(0)
    out = Compose([dict(type="RandomCrop", crop_size=(60, 90), recompute_bbox=True)])(plain)
    np.testing.assert_allclose(out["gt_bboxes"], _results()["gt_bboxes"])  # no masks: boxes as they were


def test_tta_wrappers_refuse_steps_of_the_other_generation():
    with pytest.raises(ValueError, match=r"for mmdet3, inside a MMDetection 2.x \(MultiScaleFlipAug\)"):
        TRANSFORMS.build(dict(type="MultiScaleFlipAug", img_scale=(90, 60),
                              transforms=[dict(type="Resize", scale=(90, 60), keep_ratio=True)]))
    with pytest.raises(ValueError, match=r"written for mmdet2, inside a MMDetection 3.x \(TestTimeAug\)"):
        TRANSFORMS.build(dict(type="TestTimeAug", transforms=[[dict(type="RandomFlip", flip_ratio=1.0)]]))


def test_load_annotations_without_ann_info_is_empty_in_3x_and_an_error_in_2x(tmp_path):
    cv2.imwrite(str(tmp_path / "a.png"), np.zeros((12, 16, 3), np.uint8))
    res = lambda: dict(img_info=dict(filename="a.png"), img_prefix=str(tmp_path))  # noqa: E731
    out = Compose([dict(type="LoadImageFromFile"), dict(type="LoadAnnotations", with_bbox=True),
                   dict(type="PackDetInputs")])(res())
    assert out["data_samples"].gt_instances.bboxes.shape == (0, 4)
    with pytest.raises(KeyError, match="needs results\\['ann_info'\\]"):
        Compose([dict(type="LoadImageFromFile"), dict(type="LoadAnnotations", with_bbox=True),
                 dict(type="Collect", keys=["img"])])(res())
