"""DatasetMapper: dataset dict -> Detectron2-style model input (batch contract)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from kiln.data.mapper import DatasetMapper, build_augmentation
from kiln.data.transforms import RandomFlip, Resize, ResizeShortestEdge
from kiln.structures import BitMasks, Boxes, BoxMode, Instances, PolygonMasks


@pytest.fixture
def record(tmp_path):
    img = np.zeros((60, 100, 3), np.uint8)
    img[10:30, 20:50] = (255, 0, 0)  # blue in BGR
    path = tmp_path / "img.png"
    cv2.imwrite(str(path), img)
    return dict(
        file_name=str(path), height=60, width=100, image_id=3,
        annotations=[
            dict(bbox=[20, 10, 30, 20], bbox_mode=BoxMode.XYWH_ABS, category_id=1, iscrowd=0,
                 segmentation=[[20, 10, 50, 10, 50, 30, 20, 30]]),
            dict(bbox=[0, 0, 10, 10], bbox_mode=BoxMode.XYXY_ABS, category_id=0, iscrowd=1,
                 segmentation=[[0, 0, 10, 0, 10, 10, 0, 10]]),
            dict(bbox=[60, 40, 90, 55], bbox_mode=BoxMode.XYXY_ABS, category_id=2, iscrowd=0,
                 segmentation=[[60, 40, 90, 40, 90, 55, 60, 55]]),
        ],
    )


def test_mapper_output_follows_batch_contract(record):
    out = DatasetMapper([], is_train=True)(record)
    assert out["image"].dtype == torch.uint8 and out["image"].shape == (3, 60, 100)
    assert (out["height"], out["width"], out["image_id"]) == (60, 100, 3)
    assert out["file_name"] == record["file_name"]
    inst = out["instances"]
    assert isinstance(inst, Instances) and isinstance(inst.gt_boxes, Boxes)
    assert inst.gt_classes.dtype == torch.int64
    assert "annotations" not in out


def test_mapper_drops_crowd_and_converts_xywh_to_xyxy(record):
    inst = DatasetMapper([], is_train=True)(record)["instances"]
    assert inst.gt_classes.tolist() == [1, 2]
    np.testing.assert_allclose(inst.gt_boxes.tensor.numpy(), [[20, 10, 50, 30], [60, 40, 90, 55]])


def test_mapper_moves_boxes_with_the_augmentations_applied_to_pixels(record):
    out = DatasetMapper([Resize((120, 200)), RandomFlip(prob=1.0)], is_train=True)(record)
    img = out["image"].permute(1, 2, 0).numpy()
    ys, xs = np.nonzero(img[..., 0])
    box = out["instances"].gt_boxes.tensor[0].numpy()
    np.testing.assert_allclose(box, [100, 20, 160, 60])
    np.testing.assert_allclose([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], box, atol=1)
    assert (out["height"], out["width"]) == (60, 100)  # original size, for mapping predictions back


def test_mapper_drops_boxes_left_empty_by_a_crop(record):
    from kiln.data.transforms import CropTransform

    inst = DatasetMapper([CropTransform(0, 0, 55, 35)], is_train=True)(record)["instances"]
    assert inst.gt_classes.tolist() == [1]  # the box at x>=60 is cropped away


def test_mapper_in_inference_drops_annotations(record):
    out = DatasetMapper([ResizeShortestEdge(30, 1000)], is_train=False)(record)
    assert "instances" not in out and "annotations" not in out
    assert out["image"].shape == (3, 30, 50)


def test_mapper_rgb_format_reverses_channels(record):
    out = DatasetMapper([], image_format="RGB")(record)
    assert out["image"][2, 15, 30] == 255 and out["image"][0, 15, 30] == 0


def test_mapper_instance_masks_follow_geometry(record):
    out = DatasetMapper([Resize((120, 200)), RandomFlip(prob=1.0)], use_instance_mask=True,
                        instance_mask_format="bitmask")(record)
    masks = out["instances"].gt_masks
    assert isinstance(masks, BitMasks)
    assert masks.tensor.dtype == torch.bool and masks.tensor.shape == (2, 120, 200)
    for mask, box in zip(masks.tensor, out["instances"].gt_boxes.tensor):
        ys, xs = torch.nonzero(mask, as_tuple=True)
        np.testing.assert_allclose([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], box.numpy(), atol=2)


def test_mapper_polygon_masks_move_exactly_with_the_boxes(record):
    out = DatasetMapper([Resize((120, 200)), RandomFlip(prob=1.0)], use_instance_mask=True)(record)
    masks = out["instances"].gt_masks
    assert isinstance(masks, PolygonMasks) and (masks.height, masks.width) == (120, 200)
    # rectangles: the moved polygon's bounds are exactly the moved box
    np.testing.assert_allclose(masks.get_bounding_boxes().tensor.numpy(),
                               out["instances"].gt_boxes.tensor.numpy())
    bitmask = DatasetMapper([Resize((120, 200)), RandomFlip(prob=1.0)], use_instance_mask=True,
                            instance_mask_format="bitmask")(record)["instances"].gt_masks
    np.testing.assert_array_equal(masks.to_ndarray().astype(bool), bitmask.tensor.numpy())


def test_mapper_rle_masks_need_the_bitmask_format(record):
    from pycocotools import mask as mask_utils

    m = np.zeros((60, 100), np.uint8, order="F")
    m[10:30, 20:50] = 1
    rle = mask_utils.encode(m)
    rle["counts"] = rle["counts"].decode("ascii")
    record["annotations"][0]["segmentation"] = rle
    with pytest.raises(ValueError, match="RLE.*INPUT.MASK_FORMAT='bitmask'"):
        DatasetMapper([], use_instance_mask=True)(record)
    flip = DatasetMapper([RandomFlip(prob=1.0)], use_instance_mask=True, instance_mask_format="bitmask")
    out = flip(record)
    np.testing.assert_array_equal(out["instances"].gt_masks.tensor[0].numpy(), m[:, ::-1].astype(bool))
    with pytest.raises(ValueError, match="'polygon' or 'bitmask'"):
        DatasetMapper([], use_instance_mask=True, instance_mask_format="rle")


def test_mapper_does_not_mutate_dataset_dict(record):
    before = repr(record)
    DatasetMapper([RandomFlip(prob=1.0)])(record)
    assert repr(record) == before


def test_mapper_size_mismatch_names_file_and_sizes(record):
    record["height"] = 61
    with pytest.raises(ValueError, match=r"img\.png' is 60x100 .* says 61x100"):
        DatasetMapper([])(record)


def test_mapper_missing_file_names_path(record, tmp_path):
    record["file_name"] = str(tmp_path / "gone.jpg")
    with pytest.raises(FileNotFoundError, match="gone.jpg"):
        DatasetMapper([])(record)


def test_build_augmentation_from_detectron2_style_config():
    from kiln.config.cfg_node import CfgNode

    inp = dict(MIN_SIZE_TRAIN=(640, 800), MAX_SIZE_TRAIN=1333, MIN_SIZE_TRAIN_SAMPLING="choice",
               MIN_SIZE_TEST=800, MAX_SIZE_TEST=1333, RANDOM_FLIP="horizontal", FORMAT="BGR",
               CROP=dict(ENABLED=False))
    cfg = CfgNode(dict(INPUT=inp))
    train = build_augmentation(cfg, True)
    assert [type(a).__name__ for a in train] == ["ResizeShortestEdge", "RandomFlip"]
    assert train[0].short_edge_length == (640, 800) and train[0].max_size == 1333
    assert [type(a).__name__ for a in build_augmentation(cfg, False)] == ["ResizeShortestEdge"]
    mapper = DatasetMapper.from_config(cfg, is_train=True)
    assert mapper.is_train and mapper.image_format == "BGR"


def test_mapper_works_inside_the_resumable_loader_with_workers(record):
    from kiln.data import build_train_loader

    loader = build_train_loader([record] * 4, mapper=DatasetMapper([RandomFlip()]), total_batch_size=2,
                                num_workers=1, seed=0)
    batch = next(iter(loader))
    assert len(batch) == 2 and all(b["image"].shape == (3, 60, 100) for b in batch)
    assert all(len(b["instances"]) == 2 for b in batch)
