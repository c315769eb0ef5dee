"""MM-style config pipelines: the seed's train/test pipelines produce the batch contract."""

from __future__ import annotations

import copy

import cv2
import numpy as np
import pytest
import torch

from kiln.data.transforms import Compose
from kiln.registry import TRANSFORMS
from kiln.structures import BitmapMasks

IMG_NORM = dict(mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375], to_rgb=True)
TRAIN_PIPELINE = [
    dict(type="LoadImageFromFile"),
    dict(type="LoadAnnotations", with_bbox=True),
    dict(type="Resize", img_scale=(1333, 800), keep_ratio=True),
    dict(type="RandomFlip", flip_ratio=0.5),
    dict(type="Normalize", **IMG_NORM),
    dict(type="Pad", size_divisor=32),
    dict(type="DefaultFormatBundle"),
    dict(type="Collect", keys=["img", "gt_bboxes", "gt_labels"]),
]
TEST_PIPELINE = [
    dict(type="LoadImageFromFile"),
    dict(type="MultiScaleFlipAug", img_scale=(1333, 800), flip=False, transforms=[
        dict(type="Resize", keep_ratio=True),
        dict(type="RandomFlip"),
        dict(type="Normalize", **IMG_NORM),
        dict(type="Pad", size_divisor=32),
        dict(type="ImageToTensor", keys=["img"]),
        dict(type="Collect", keys=["img"]),
    ]),
]


@pytest.fixture
def sample(tmp_path):
    """A real 120x200 JPEG on disk and the MM results dict a dataset would hand to the pipeline."""
    img = np.zeros((120, 200, 3), np.uint8)
    img[10:50, 20:80] = (0, 0, 255)
    cv2.imwrite(str(tmp_path / "a.jpg"), img)
    return dict(
        img_info=dict(filename="a.jpg", height=120, width=200, id=7),
        img_prefix=str(tmp_path),
        ann_info=dict(bboxes=np.array([[20, 10, 80, 50], [100, 60, 190, 110]], np.float32),
                      labels=np.array([0, 2], np.int64),
                      bboxes_ignore=np.zeros((0, 4), np.float32)),
        image_id=7,
    )


def _run(pipeline, results):
    return Compose(copy.deepcopy(pipeline))(copy.deepcopy(results))


def test_seed_train_pipeline_produces_batch_contract(sample):
    np.random.seed(0)
    out = _run(TRAIN_PIPELINE, sample)
    assert set(out) == {"img", "img_metas", "gt_bboxes", "gt_labels"}
    assert out["img"].dtype == torch.float32 and out["img"].shape == (3, 800, 1344)
    assert out["gt_bboxes"].dtype == torch.float32 and out["gt_bboxes"].shape == (2, 4)
    assert out["gt_labels"].dtype == torch.int64 and out["gt_labels"].tolist() == [0, 2]
    m = out["img_metas"]
    assert m["filename"].endswith("a.jpg") and m["image_id"] == 7
    assert m["ori_shape"] == (120, 200, 3) and m["img_shape"] == (800, 1333, 3)
    assert m["pad_shape"] == (800, 1344, 3)
    assert m["scale_factor"].dtype == np.float32 and m["scale_factor"].shape == (4,)
    np.testing.assert_allclose(m["scale_factor"], [1333 / 200, 800 / 120] * 2, rtol=1e-6)
    assert isinstance(m["flip"], bool) and m["flip_direction"] in (None, "horizontal")
    np.testing.assert_allclose(m["img_norm_cfg"]["mean"], IMG_NORM["mean"])


def test_train_pipeline_boxes_map_back_to_original_pixels(sample):
    for seed in range(4):
        np.random.seed(seed)
        out = _run(TRAIN_PIPELINE, sample)
        boxes = out["gt_bboxes"].numpy().copy()
        m = out["img_metas"]
        if m["flip"]:
            w = m["img_shape"][1]
            boxes[:, [0, 2]] = w - boxes[:, [2, 0]]
        np.testing.assert_allclose(boxes / m["scale_factor"], sample["ann_info"]["bboxes"], atol=1e-3)


def test_pipeline_records_transforms_whose_inverse_restores_boxes(sample):
    pipeline = TRAIN_PIPELINE[:6]
    np.random.seed(1)
    res = _run(pipeline, sample)
    np.testing.assert_allclose(res["transforms"].inverse().apply_box(res["gt_bboxes"]),
                               sample["ann_info"]["bboxes"], atol=1e-3)


def test_normalize_converts_bgr_to_rgb_and_standardizes():
    step = TRANSFORMS.build(dict(type="Normalize", **IMG_NORM))
    img = np.zeros((2, 2, 3), np.uint8)
    img[..., 0] = 10  # blue
    out = step(dict(img=img))["img"]
    expected_r = (0 - 123.675) / 58.395
    expected_b = (10 - 103.53) / 57.375
    assert out.dtype == np.float32
    np.testing.assert_allclose(out[0, 0], [expected_r, (0 - 116.28) / 57.12, expected_b], rtol=1e-5)


def test_normalize_float_input_matches_uint8_input():
    step = TRANSFORMS.build(dict(type="Normalize", **IMG_NORM))
    img = np.random.default_rng(0).integers(0, 255, (5, 7, 3)).astype(np.uint8)
    a = step(dict(img=img))["img"]
    b = step(dict(img=img.astype(np.float32)))["img"]
    np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(a, (img[..., ::-1] - np.array(IMG_NORM["mean"])) / IMG_NORM["std"], rtol=1e-5)


def test_pad_size_divisor_and_fixed_size():
    img = np.ones((33, 65, 3), np.float32)
    out = TRANSFORMS.build(dict(type="Pad", size_divisor=32))(dict(img=img))
    assert out["img"].shape == (64, 96, 3) and out["pad_shape"] == (64, 96, 3)
    assert out["img"][40, 70].tolist() == [0, 0, 0] and out["img"][0, 0].tolist() == [1, 1, 1]
    out = TRANSFORMS.build(dict(type="Pad", size=(40, 70)))(dict(img=img))
    assert out["img"].shape == (40, 70, 3)


def test_pad_needs_exactly_one_of_size_and_divisor():
    with pytest.raises(ValueError, match="exactly one of size or size_divisor"):
        TRANSFORMS.build(dict(type="Pad"))


def test_resize_range_mode_samples_between_scales():
    step = TRANSFORMS.build(dict(type="Resize", img_scale=[(1333, 640), (1333, 800)],
                                 multiscale_mode="range"))
    shorts = set()
    np.random.seed(0)
    for _ in range(20):
        r = step(dict(img=np.zeros((100, 100, 3), np.uint8)))
        shorts.add(r["img_shape"][0])
    assert min(shorts) >= 640 and max(shorts) <= 800 and len(shorts) > 5


def test_resize_value_mode_picks_one_of_the_scales():
    step = TRANSFORMS.build(dict(type="Resize", img_scale=[(300, 100), (600, 200)], multiscale_mode="value"))
    np.random.seed(0)
    seen = {step(dict(img=np.zeros((50, 50, 3), np.uint8)))["img_shape"][:2] for _ in range(20)}
    assert seen == {(100, 100), (200, 200)}


def test_resize_without_keep_ratio_uses_exact_w_h():
    step = TRANSFORMS.build(dict(type="Resize", img_scale=(64, 32), keep_ratio=False))
    r = step(dict(img=np.zeros((50, 50, 3), np.uint8), gt_bboxes=np.array([[0, 0, 50, 50]], np.float32),
                  bbox_fields=["gt_bboxes"]))
    assert r["img_shape"] == (32, 64, 3)
    np.testing.assert_allclose(r["gt_bboxes"], [[0, 0, 64, 32]])


def test_resize_ratio_range_scales_single_scale():
    step = TRANSFORMS.build(dict(type="Resize", img_scale=(100, 100), ratio_range=(0.5, 1.0)))
    np.random.seed(0)
    for _ in range(5):
        side = step(dict(img=np.zeros((10, 10, 3), np.uint8)))["img_shape"][0]
        assert 50 <= side <= 100


def test_resize_range_mode_rejects_three_scales():
    with pytest.raises(ValueError, match="multiscale_mode='value'"):
        TRANSFORMS.build(dict(type="Resize", img_scale=[(1, 1), (2, 2), (3, 3)]))


@pytest.mark.parametrize("direction,expected", [
    ("horizontal", [[70, 10, 90, 30]]),
    ("vertical", [[10, 20, 30, 40]]),
    ("diagonal", [[70, 20, 90, 40]]),
])
def test_random_flip_directions_move_boxes(direction, expected):
    step = TRANSFORMS.build(dict(type="RandomFlip", flip_ratio=1.0, direction=direction))
    img = np.zeros((50, 100, 3), np.uint8)
    img[10:30, 10:30] = 255
    r = step(dict(img=img, gt_bboxes=np.array([[10, 10, 30, 30]], np.float32), bbox_fields=["gt_bboxes"]))
    assert r["flip"] is True and r["flip_direction"] == direction
    np.testing.assert_allclose(r["gt_bboxes"], expected)
    ys, xs = np.nonzero(r["img"][..., 0])
    assert [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1] == expected[0]


def test_random_flip_ratio_list_per_direction():
    step = TRANSFORMS.build(dict(type="RandomFlip", flip_ratio=[0.0, 1.0],
                                 direction=["horizontal", "vertical"]))
    assert step(dict(img=np.zeros((4, 4, 3), np.uint8)))["flip_direction"] == "vertical"


def test_multiscale_flip_aug_outputs_one_entry_per_scale_and_flip(sample):
    pipeline = copy.deepcopy(TEST_PIPELINE)
    pipeline[1].update(img_scale=[(400, 240), (200, 120)], flip=True)
    out = _run(pipeline, sample)
    assert set(out) == {"img", "img_metas"}
    assert len(out["img"]) == 4
    assert [m["flip"] for m in out["img_metas"]] == [False, True, False, True]
    shapes = [tuple(t.shape) for t in out["img"]]
    assert shapes == [(3, 256, 416), (3, 256, 416), (3, 128, 224), (3, 128, 224)]
    assert all(t.dtype == torch.float32 for t in out["img"])
    assert out["img_metas"][0]["image_id"] == 7
    # flipped copy is the mirror of the unflipped one (before padding)
    a, b = out["img"][0][:, :240, :400], out["img"][1][:, :240, :400]
    torch.testing.assert_close(a, b.flip(-1))


def test_seed_test_pipeline_single_scale(sample):
    out = _run(TEST_PIPELINE, sample)
    assert len(out["img"]) == 1 and out["img_metas"][0]["img_shape"] == (800, 1333, 3)


def test_multiscale_flip_aug_scale_factor_mode(sample):
    pipeline = copy.deepcopy(TEST_PIPELINE)
    del pipeline[1]["img_scale"]
    pipeline[1]["scale_factor"] = [0.5, 1.0]
    out = _run(pipeline, sample)
    assert [m["img_shape"][:2] for m in out["img_metas"]] == [(60, 100), (120, 200)]


def test_photometric_distortion_changes_pixels_not_geometry():
    step = TRANSFORMS.build(dict(type="PhotoMetricDistortion"))
    img = np.random.default_rng(0).integers(0, 255, (20, 30, 3)).astype(np.uint8)
    boxes = np.array([[1, 2, 3, 4]], np.float32)
    changed = 0
    for seed in range(5):
        np.random.seed(seed)
        r = step(dict(img=img.copy(), gt_bboxes=boxes.copy(), bbox_fields=["gt_bboxes"]))
        assert r["img"].shape == img.shape and r["img"].dtype == np.float32
        np.testing.assert_array_equal(r["gt_bboxes"], boxes)
        changed += not np.allclose(r["img"], img)
    assert changed >= 3


def test_photometric_distortion_is_reproducible_under_seed():
    step = TRANSFORMS.build(dict(type="PhotoMetricDistortion"))
    img = np.random.default_rng(0).integers(0, 255, (8, 8, 3)).astype(np.uint8)
    outs = []
    for _ in range(2):
        np.random.seed(42)
        outs.append(step(dict(img=img.copy()))["img"])
    np.testing.assert_array_equal(outs[0], outs[1])


def test_random_crop_clips_boxes_and_drops_outside_ones():
    step = TRANSFORMS.build(dict(type="RandomCrop", crop_size=(50, 50)))
    img = np.zeros((50, 100, 3), np.uint8)
    boxes = np.array([[0, 0, 40, 40], [60, 0, 100, 40], [45, 10, 55, 20]], np.float32)
    np.random.seed(0)
    r = step(dict(img=img, gt_bboxes=boxes, gt_labels=np.array([0, 1, 2]), bbox_fields=["gt_bboxes"]))
    x0 = r["transforms"][0].x0
    assert r["img"].shape == (50, 50, 3) and r["img_shape"] == (50, 50, 3)
    kept = [i for i, b in enumerate(boxes) if min(b[2], x0 + 50) > max(b[0], x0)]
    assert r["gt_labels"].tolist() == kept
    assert (r["gt_bboxes"][:, [0, 2]] >= 0).all() and (r["gt_bboxes"][:, [0, 2]] <= 50).all()


def test_random_crop_rejects_sample_when_no_box_survives():
    step = TRANSFORMS.build(dict(type="RandomCrop", crop_size=(10, 10)))
    np.random.seed(0)
    r = dict(img=np.zeros((100, 100, 3), np.uint8), gt_bboxes=np.array([[99, 99, 100, 100]], np.float32),
             gt_labels=np.array([0]), bbox_fields=["gt_bboxes"])
    assert step(r) is None
    r2 = TRANSFORMS.build(dict(type="RandomCrop", crop_size=(10, 10), allow_negative_crop=True))(
        dict(img=np.zeros((100, 100, 3), np.uint8), gt_bboxes=np.array([[99, 99, 100, 100]], np.float32),
             gt_labels=np.array([0]), bbox_fields=["gt_bboxes"]))
    assert r2 is not None and len(r2["gt_bboxes"]) == 0


def test_compose_returns_none_when_a_step_rejects(sample):
    pipeline = TRAIN_PIPELINE[:2] + [dict(type="RandomCrop", crop_size=(2, 2))] + TRAIN_PIPELINE[2:]
    sample["ann_info"]["bboxes"] = np.array([[190, 110, 200, 120]], np.float32)
    sample["ann_info"]["labels"] = np.array([0])
    np.random.seed(0)
    assert _run(pipeline, sample) is None


def test_min_iou_random_crop_keeps_min_iou_with_every_kept_box():
    step = TRANSFORMS.build(dict(type="MinIoURandomCrop", min_ious=(0.5,), min_crop_size=0.3))
    assert step.sample_mode == (1, 0.5, 0)  # 1 = no crop, 0 = any window
    step.sample_mode = (0.5,)  # only the IoU-constrained mode, so every crop must honour it
    boxes = np.array([[20, 20, 80, 80], [25, 25, 85, 85]], np.float32)
    cropped = 0
    for seed in range(10):
        np.random.seed(seed)
        r = step(dict(img=np.zeros((100, 100, 3), np.uint8), gt_bboxes=boxes.copy(),
                      gt_labels=np.array([0, 1]), bbox_fields=["gt_bboxes"]))
        if "transforms" not in r:
            continue
        cropped += 1
        crop = r["transforms"][0]
        patch = np.array([crop.x0, crop.y0, crop.x0 + crop.w, crop.y0 + crop.h], np.float32)
        for b in boxes:
            ix = max(0, min(b[2], patch[2]) - max(b[0], patch[0]))
            iy = max(0, min(b[3], patch[3]) - max(b[1], patch[1]))
            inter = ix * iy
            iou = inter / ((b[2] - b[0]) * (b[3] - b[1]) + crop.w * crop.h - inter)
            assert iou >= 0.5 - 1e-6
        assert len(r["gt_bboxes"]) == len(r["gt_labels"]) >= 1
    assert cropped >= 3


def test_load_annotations_with_mask_rasterizes_polygons_and_masks_follow_geometry(sample):
    sample["ann_info"]["masks"] = [[[20, 10, 80, 10, 80, 50, 20, 50]],
                                   [[100, 60, 190, 60, 190, 110, 100, 110]]]
    pipeline = [dict(type="LoadImageFromFile"), dict(type="LoadAnnotations", with_bbox=True, with_mask=True),
                dict(type="Resize", img_scale=(400, 240)), dict(type="RandomFlip", flip_ratio=1.0),
                dict(type="Pad", size_divisor=32)]
    r = _run(pipeline, sample)
    assert isinstance(r["gt_masks"], BitmapMasks) and r["gt_masks"].to_ndarray().shape == (2, 256, 416)
    for box, mask in zip(r["gt_bboxes"], r["gt_masks"].to_ndarray()):
        ys, xs = np.nonzero(mask)
        np.testing.assert_allclose([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], box, atol=2)


def test_collect_missing_key_names_key_and_suggests_step(sample):
    pipeline = [dict(type="LoadImageFromFile"), dict(type="Collect", keys=["img", "gt_bboxes"])]
    with pytest.raises(KeyError, match="'gt_bboxes'.*LoadAnnotations"):
        _run(pipeline, sample)


def test_load_image_missing_file_names_path_and_prefix(sample):
    sample["img_info"]["filename"] = "nope.jpg"
    with pytest.raises(FileNotFoundError, match=r"nope\.jpg.*img_prefix"):
        _run(TRAIN_PIPELINE, sample)


def test_unknown_step_type_error_names_config_position():
    with pytest.raises(KeyError, match=r"pipeline\[1\]"):
        Compose([dict(type="LoadImageFromFile"), dict(type="RandomFlipp")])


def test_collect_converts_numpy_image_to_float_chw_tensor():
    step = TRANSFORMS.build(dict(type="Collect", keys=["img"], meta_keys=["img_shape", "pad_shape", "flip"]))
    out = step(dict(img=np.zeros((5, 6, 3), np.uint8)))
    assert out["img"].dtype == torch.float32 and out["img"].shape == (3, 5, 6)
    assert out["img_metas"]["pad_shape"] == (5, 6, 3) and out["img_metas"]["flip"] is False


def test_load_image_corrupt_file_names_the_file(sample, tmp_path):
    (tmp_path / "a.jpg").write_bytes(b"not a jpeg at all")
    with pytest.raises(ValueError, match=r"a\.jpg"):
        _run(TRAIN_PIPELINE, sample)


def test_load_image_reads_fsspec_uri(sample, tmp_path):
    from kiln.fileio import put_bytes

    put_bytes((tmp_path / "a.jpg").read_bytes(), "memory://kiln-pipeline-test/a.jpg")
    sample["img_prefix"] = "memory://kiln-pipeline-test"
    out = _run(TRAIN_PIPELINE[:2], sample)
    assert out["img"].shape == (120, 200, 3) and out["filename"] == "memory://kiln-pipeline-test/a.jpg"


def test_second_resize_needs_override_and_then_uses_its_own_scale():
    first = TRANSFORMS.build(dict(type="Resize", img_scale=(100, 100)))
    r = first(dict(img=np.zeros((50, 50, 3), np.uint8)))
    with pytest.raises(RuntimeError, match="override=True"):
        TRANSFORMS.build(dict(type="Resize", img_scale=(40, 40)))(r)
    r = TRANSFORMS.build(dict(type="Resize", img_scale=(40, 40), override=True))(r)
    assert r["img_shape"] == (40, 40, 3)


def test_semantic_label_map_loads_and_follows_geometry_with_ignore_padding(sample, tmp_path):
    seg = np.zeros((120, 200), np.uint8)
    seg[10:50, 20:80] = 3
    (tmp_path / "seg").mkdir()
    cv2.imwrite(str(tmp_path / "seg" / "a.png"), seg)
    sample["seg_prefix"] = str(tmp_path / "seg")
    sample["ann_info"]["seg_map"] = "a.png"
    pipeline = [dict(type="LoadImageFromFile"), dict(type="LoadAnnotations", with_bbox=True, with_seg=True),
                dict(type="Resize", img_scale=(400, 240)), dict(type="RandomFlip", flip_ratio=1.0),
                dict(type="Pad", size_divisor=32), dict(type="DefaultFormatBundle")]
    r = _run(pipeline, sample)
    seg_t = r["gt_semantic_seg"]
    assert seg_t.dtype == torch.int64 and seg_t.shape == (1, 256, 416)
    assert set(seg_t.unique().tolist()) == {0, 3, 255}  # labels kept exactly, padding = ignore
    ys, xs = torch.nonzero(seg_t[0] == 3, as_tuple=True)
    np.testing.assert_allclose([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], r["gt_bboxes"][0], atol=1)
