"""browse_dataset: PNGs of augmented training images with boxes and class names."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from kiln.data.browse import browse_dataset, strip_pipeline
from kiln.visualization import color_for_label

PIPELINE = [
    dict(type="LoadImageFromFile"),
    dict(type="LoadAnnotations", with_bbox=True),
    dict(type="Resize", img_scale=(200, 80), keep_ratio=True),
    dict(type="RandomFlip", flip_ratio=0.5),
    dict(type="Normalize", mean=[0, 0, 0], std=[1, 1, 1], to_rgb=True),
    dict(type="Pad", size_divisor=32),
    dict(type="DefaultFormatBundle"),
    dict(type="Collect", keys=["img", "gt_bboxes", "gt_labels"]),
]


def test_strip_pipeline_drops_normalize_and_formatting_steps_recursively():
    steps = strip_pipeline(PIPELINE + [dict(type="MultiScaleFlipAug", img_scale=(1, 1),
                                            transforms=[dict(type="Resize"), dict(type="Collect", keys=[])])])
    assert [s["type"] for s in steps] == ["LoadImageFromFile", "LoadAnnotations", "Resize", "RandomFlip",
                                          "Pad", "MultiScaleFlipAug"]
    assert [s["type"] for s in steps[-1]["transforms"]] == ["Resize"]


def test_browse_mm_config_writes_pngs_of_augmented_images_with_boxes(tmp_path):
    cfg = dict(data=dict(train=dict(type="ShapesDataset", split="train", num_images=3, image_size=64,
                                    root=str(tmp_path / "shapes"), pipeline=PIPELINE)))
    written = browse_dataset(cfg, str(tmp_path / "out"), num_images=2)
    assert len(written) == 2
    palette = {color_for_label(i) for i in range(3)}
    for path in written:
        img = cv2.imread(path)
        assert img.shape == (96, 96, 3)  # 64x64 resized to 80x80, padded to a multiple of 32
        colours = {tuple(int(v) for v in px) for px in img.reshape(-1, 3)}
        assert colours & palette  # box outlines in their class colour
    again = browse_dataset(cfg, str(tmp_path / "out2"), num_images=2)
    np.testing.assert_array_equal(cv2.imread(written[0]), cv2.imread(again[0]))  # reproducible


def test_browse_canonical_config_reads_the_split_dataloader_dataset(tmp_path):
    ds = dict(type="ShapesDataset", split="train", num_images=3, image_size=64, root=str(tmp_path / "shapes"),
              pipeline=PIPELINE)
    mm = browse_dataset(dict(data=dict(train=ds)), str(tmp_path / "mm"), num_images=1)
    canonical = browse_dataset(dict(train_dataloader=dict(batch_size=2, dataset=ds)), str(tmp_path / "c"),
                               num_images=1)
    np.testing.assert_array_equal(cv2.imread(mm[0]), cv2.imread(canonical[0]))


def test_browse_detectron2_config_uses_dataset_mapper(tmp_path):
    from kiln.data import DatasetCatalog, MetadataCatalog
    from kiln.structures import BoxMode

    img = np.full((40, 60, 3), 90, np.uint8)
    cv2.imwrite(str(tmp_path / "im.png"), img)
    rec = dict(file_name=str(tmp_path / "im.png"), height=40, width=60, image_id=0,
               annotations=[dict(bbox=[5, 5, 30, 20], bbox_mode=BoxMode.XYWH_ABS, category_id=0,
                                 iscrowd=0)])
    name = "browse_test_d2"
    if name in DatasetCatalog.list():
        DatasetCatalog.remove(name)
    DatasetCatalog.register(name, lambda: [rec])
    MetadataCatalog.get(name).set(thing_classes=["thing"])

    from kiln.config.cfg_node import CfgNode

    cfg = CfgNode(dict(DATASETS=dict(TRAIN=(name,), TEST=()),
                       INPUT=dict(MIN_SIZE_TRAIN=(80,), MAX_SIZE_TRAIN=1000, MIN_SIZE_TRAIN_SAMPLING="choice",
                                  MIN_SIZE_TEST=80, MAX_SIZE_TEST=1000, RANDOM_FLIP="none", FORMAT="BGR")))
    written = browse_dataset(cfg, str(tmp_path / "out"), num_images=5)
    assert len(written) == 1 and written[0].endswith("00000_im.png")
    out = cv2.imread(written[0])
    assert out.shape == (80, 120, 3)
    assert (out != 90).any(axis=2).sum() > 100  # box and label were drawn


def test_browse_config_without_data_explains_both_dialects():
    with pytest.raises(KeyError, match="neither 'data'.*nor 'DATASETS'"):
        browse_dataset(dict(model=dict()), "unused")


def test_browse_missing_split_lists_available(tmp_path):
    with pytest.raises(KeyError, match=r"no data\.val; available splits: \['train'\]"):
        browse_dataset(dict(data=dict(train=dict(type="ShapesDataset"))), str(tmp_path), split="val")
