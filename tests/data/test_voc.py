"""Pascal VOC xml: catalog loader and MM VOCDataset share one parser."""

import numpy as np
import pytest
from data_helpers import voc_tree

from kiln.data import DatasetCatalog, MetadataCatalog, VOCDataset, load_voc_instances, register_pascal_voc
from kiln.structures import BoxMode

CLASSES = ("cat", "dog")


def test_load_voc_instances_converts_to_zero_based_xyxy(tmp_path):
    root = voc_tree(tmp_path, {"000001": [("dog", [1, 1, 10, 20], 0), ("cat", [5, 6, 7, 8], 1)]})
    dicts = load_voc_instances(root, "trainval", CLASSES)
    (d,) = dicts
    assert d["image_id"] == "000001" and (d["height"], d["width"]) == (30, 40)
    assert d["annotations"][0] == dict(category_id=1, bbox=[0.0, 0.0, 10.0, 20.0],
                                       bbox_mode=BoxMode.XYXY_ABS, difficult=0, iscrowd=0)
    assert d["annotations"][1]["difficult"] == 1


def test_unknown_voc_class_is_an_error_naming_xml(tmp_path):
    root = voc_tree(tmp_path, {"000002": [("horse", [1, 1, 10, 20], 0)]})
    with pytest.raises(ValueError, match=r"000002\.xml.*'horse' is not in the class list"):
        load_voc_instances(root, "trainval", CLASSES)


def test_register_pascal_voc_sets_metadata(tmp_path):
    root = voc_tree(tmp_path, {"000001": [("dog", [1, 1, 10, 20], 0)]})
    register_pascal_voc("test_voc", root, "trainval", 2007, CLASSES)
    try:
        assert len(DatasetCatalog.get("test_voc")) == 1
        assert MetadataCatalog.get("test_voc").evaluator_type == "pascal_voc"
    finally:
        DatasetCatalog.remove("test_voc")
        MetadataCatalog.remove("test_voc")


def test_voc_dataset_puts_difficult_boxes_in_ignore(tmp_path):
    root = voc_tree(tmp_path, {"000001": [("dog", [1, 1, 10, 20], 0), ("cat", [5, 6, 7, 8], 1)]})
    ds = VOCDataset(ann_file=root + "/ImageSets/Main/trainval.txt", img_prefix=root, classes=CLASSES,
                    pipeline=[dict(type="LoadImageFromFile"), dict(type="LoadAnnotations", with_bbox=True)])
    out = ds[0]
    np.testing.assert_array_equal(out["gt_bboxes"], [[0, 0, 10, 20]])
    np.testing.assert_array_equal(out["gt_labels"], [1])
    np.testing.assert_array_equal(out["gt_bboxes_ignore"], [[4, 5, 7, 8]])
    assert out["img"].shape == (30, 40, 3)
