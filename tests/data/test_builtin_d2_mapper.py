"""DatasetMapper(cfg, is_train) and INPUT.CROP as Detectron2 reads them; RandomCrop's four crop types."""

import cv2
import numpy as np
import pytest

from kiln.config import CfgNode
from kiln.data import DatasetCatalog, build_detection_train_loader
from kiln.data.mapper import DatasetMapper
from kiln.data.transforms.augmentation import RandomCrop
from kiln.structures import BitMasks, BoxMode, PolygonMasks


@pytest.fixture
def record(tmp_path):
    path = tmp_path / "img.png"
    cv2.imwrite(str(path), np.full((40, 80, 3), 90, np.uint8))
    # A triangle whose box is much larger than the part of it a crop may keep.
    tri = [10, 5, 70, 5, 10, 35]
    return dict(file_name=str(path), height=40, width=80, image_id=1,
                annotations=[dict(bbox=[10, 5, 70, 35], bbox_mode=BoxMode.XYXY_ABS, category_id=0, iscrowd=0,
                                  segmentation=[tri])])


def d2cfg(crop=None, mask_on=False, keypoint_on=False, load_proposals=False, mask_format="polygon"):
    crop = crop or dict(ENABLED=False, TYPE="relative_range", SIZE=[0.9, 0.9])
    return CfgNode(dict(
        MODEL=dict(MASK_ON=mask_on, KEYPOINT_ON=keypoint_on, LOAD_PROPOSALS=load_proposals),
        DATASETS=dict(PRECOMPUTED_PROPOSAL_TOPK_TRAIN=2, PRECOMPUTED_PROPOSAL_TOPK_TEST=3),
        INPUT=dict(MIN_SIZE_TRAIN=(20,), MAX_SIZE_TRAIN=1000, MIN_SIZE_TRAIN_SAMPLING="choice",
                   MIN_SIZE_TEST=40, MAX_SIZE_TEST=1000, RANDOM_FLIP="none", FORMAT="BGR", CROP=crop,
                   MASK_FORMAT=mask_format)))


def test_detectron2_call_crops_before_resizing_in_training_only(record):
    cfg = d2cfg(dict(ENABLED=True, TYPE="absolute", SIZE=[20, 30]))
    train = DatasetMapper(cfg, True)
    assert [type(a).__name__ for a in train.augmentations.augs] == ["RandomCrop", "ResizeShortestEdge"]
    out = train(record)
    assert tuple(out["image"].shape) == (3, 20, 30)  # the 20x30 crop; shortest edge 20 already
    boxes = out["instances"].gt_boxes.tensor
    assert bool((boxes[:, 2] <= 30).all() and (boxes[:, 3] <= 20).all())
    test = DatasetMapper(cfg, is_train=False)
    assert [type(a).__name__ for a in test.augmentations.augs] == ["ResizeShortestEdge"]
    assert tuple(test(record)["image"].shape) == (3, 40, 80) and "instances" not in test(record)


def test_mask_on_with_crop_recomputes_tight_boxes_from_the_masks(record):
    np.random.seed(0)
    cfg = d2cfg(dict(ENABLED=True, TYPE="relative", SIZE=[0.5, 0.5]), mask_on=True, mask_format="bitmask")
    for _ in range(5):
        inst = DatasetMapper(cfg, True)(record)["instances"]
        assert isinstance(inst.gt_masks, BitMasks)
        for box, mask in zip(inst.gt_boxes.tensor, inst.gt_masks.tensor):
            ys, xs = np.nonzero(mask.numpy())
            assert box.tolist() == [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]
    # polygons (the default INPUT.MASK_FORMAT): the box is the bounds of the polygon cut by the crop
    cfg = d2cfg(dict(ENABLED=True, TYPE="relative", SIZE=[0.5, 0.5]), mask_on=True)
    for _ in range(5):
        inst = DatasetMapper(cfg, True)(record)["instances"]
        assert isinstance(inst.gt_masks, PolygonMasks)
        for box, parts in zip(inst.gt_boxes.tensor, inst.gt_masks.polygons):
            pts = np.concatenate(parts).reshape(-1, 2)
            np.testing.assert_allclose(box.numpy(), [*pts.min(0), *pts.max(0)], rtol=1e-6)
            assert pts.min() >= 0 and (pts <= [40, 20]).all()  # inside the 40x20 crop
    assert not DatasetMapper(d2cfg(mask_on=True), True).recompute_boxes  # no crop: boxes as annotated


def test_train_loader_of_a_config_uses_its_crop(record):
    DatasetCatalog.register("test_d2_mapper_crop", lambda: [record] * 2)
    try:
        cfg = d2cfg(dict(ENABLED=True, TYPE="absolute", SIZE=[20, 30]))
        cfg.DATASETS = CfgNode(dict(TRAIN=("test_d2_mapper_crop",)))
        cfg.SOLVER = CfgNode(dict(IMS_PER_BATCH=2))
        cfg.DATALOADER = CfgNode(dict(NUM_WORKERS=0, SAMPLER_TRAIN="TrainingSampler",
                                      FILTER_EMPTY_ANNOTATIONS=True, ASPECT_RATIO_GROUPING=False))
        cfg.SEED = 0
        batch = next(iter(build_detection_train_loader(cfg)))
        assert [tuple(b["image"].shape) for b in batch] == [(3, 20, 30)] * 2
    finally:
        DatasetCatalog.remove("test_d2_mapper_crop")


@pytest.mark.parametrize("crop_type,size,image,check", [
    ("relative", (0.5, 0.25), (40, 80), lambda h, w: (h, w) == (20, 20)),
    ("relative_range", (0.5, 0.25), (40, 80), lambda h, w: 20 <= h <= 40 and 20 <= w <= 80),
    ("absolute", (100, 30), (40, 80), lambda h, w: (h, w) == (40, 30)),
    ("absolute_range", (25, 35), (40, 80), lambda h, w: 25 <= h <= 35 and 25 <= w <= 35),
    ("absolute_range", (50, 60), (30, 80), lambda h, w: h == 30 and 50 <= w <= 60),  # small side kept whole
])
def test_crop_sizes_of_each_type(crop_type, size, image, check):
    np.random.seed(1)
    crop = RandomCrop(crop_type, size)
    assert all(check(*crop.get_crop_size(image)) for _ in range(20))


def test_bad_crop_and_unsupported_keys_are_refused(record):
    with pytest.raises(ValueError, match="crop_type must be one of"):
        RandomCrop("random", (0.5, 0.5))
    with pytest.raises(ValueError, match=r"fractions in \(0, 1\]"):
        RandomCrop("relative_range", (0.5, 1.5))
    with pytest.raises(ValueError, match="min 60 > max 50"):
        RandomCrop("absolute_range", (60, 50))
    with pytest.raises(ValueError, match="KEYPOINT_ON=True"):
        DatasetMapper(d2cfg(keypoint_on=True), True)
    with pytest.raises(TypeError, match="cfg.INPUT.FORMAT"):
        DatasetMapper(d2cfg(), "RGB")


@pytest.mark.parametrize("crop_type,size,check", [
    ("relative", (0.5, 0.25), lambda h, w: (h, w) == (15, 45)),  # 3.x writes (w, h) fractions
    ("relative_range", (0.5, 0.25), lambda h, w: 30 <= h <= 60 and 23 <= w <= 90),  # but (h, w) here
    ("absolute", (50, 20), lambda h, w: (h, w) == (20, 50)),
    ("absolute_range", (25, 35), lambda h, w: 25 <= h <= 35 and 25 <= w <= 35),
    ("absolute_range", (70, 80), lambda h, w: h == 60 and 70 <= w <= 80),
])
def test_mmdetection3_pipeline_random_crop_takes_every_crop_type(crop_type, size, check):
    from kiln.data.transforms import Compose

    np.random.seed(0)
    for _ in range(10):
        img = np.zeros((60, 90, 3), np.uint8)
        out = Compose([dict(type="RandomCrop", crop_type=crop_type, crop_size=size, allow_negative_crop=True),
                       dict(type="PackDetInputs")])(dict(img=img, img_shape=img.shape, ori_shape=img.shape,
                                                         img_fields=["img"], bbox_fields=[], image_id=1,
                                                         filename="/x/1.jpg"))
        assert check(*out["inputs"].shape[1:])


def test_precomputed_proposals_move_with_the_image_and_keep_the_top_k(record, tmp_path):
    # Detectron2's LOAD_PROPOSALS path: a proposal file (its own layout, XYWH boxes, random order) attached
    # to the dataset dicts by image id, then resized, clipped, emptied boxes dropped, the best k kept.
    import pickle

    from kiln.data import DatasetCatalog, get_detection_dataset_dicts

    path = tmp_path / "props.pkl"
    with open(path, "wb") as f:  # XYWH (bbox_mode 1); objectness 0.1, 0.9, 0.5, 0.7 (the last one empty)
        pickle.dump({"ids": [1], "bbox_mode": 1,
                     "boxes": [np.array([[0, 0, 10, 10], [40, 20, 20, 10], [70, 30, 20, 20], [5, 5, 0, 4]],
                                        np.float32)],
                     "objectness_logits": [np.array([0.1, 0.9, 0.5, 0.7], np.float32)]}, f)
    DatasetCatalog.register("d2mapper_props", lambda: [record])
    try:
        dicts = get_detection_dataset_dicts(["d2mapper_props"], proposal_files=[str(path)])
    finally:
        DatasetCatalog.remove("d2mapper_props")
    train = DatasetMapper(d2cfg(load_proposals=True), True)  # resize 40x80 -> 20x40, top 2
    props = train(dicts[0])["proposals"]
    assert props.image_size == (20, 40)
    assert props.objectness_logits.tolist() == pytest.approx([0.9, 0.5], abs=1e-5)
    assert props.proposal_boxes.tensor.tolist() == [[20.0, 10.0, 30.0, 15.0], [35.0, 15.0, 40.0, 20.0]]
    test = DatasetMapper(d2cfg(load_proposals=True), False)  # no resize (shortest edge 40), top 3
    assert len(test(dicts[0])["proposals"]) == 3 and "instances" not in test(dicts[0])
