"""load_coco_json / register_coco_instances and the malformed-annotation policy."""

import json
import logging

import pytest
from data_helpers import make_coco

from kiln.data import DatasetCatalog, MetadataCatalog, load_coco_json, register_coco_instances
from kiln.structures import BoxMode


def test_load_coco_json_gives_standard_dicts_with_contiguous_ids(tmp_path):
    json_file, root = make_coco(tmp_path)
    dicts = load_coco_json(json_file, root)
    assert [d["image_id"] for d in dicts] == [1, 2]
    d0 = dicts[0]
    assert d0["file_name"].endswith("images/a.jpg") and (d0["height"], d0["width"]) == (40, 60)
    ann = d0["annotations"][0]
    assert ann["bbox"] == [1, 2, 10, 20] and ann["bbox_mode"] == BoxMode.XYWH_ABS
    # categories sorted by COCO id: dog(3) -> 0, cat(7) -> 1
    assert ann["category_id"] == 1 and dicts[1]["annotations"][0]["category_id"] == 0
    assert ann["segmentation"] == [[1, 2, 11, 2, 11, 22, 1, 22]]


def test_crowd_annotations_are_kept_flagged(tmp_path, caplog):
    json_file, root = make_coco(tmp_path)
    with caplog.at_level(logging.WARNING):
        dicts = load_coco_json(json_file, root)
    assert [a["iscrowd"] for a in dicts[0]["annotations"]] == [0, 1]
    assert "noted 1 annotations: crowd" in caplog.text


def test_register_coco_instances_in_three_lines(tmp_path):
    json_file, root = make_coco(tmp_path)
    register_coco_instances("test_coco_reg", {}, json_file, root)
    try:
        dicts = DatasetCatalog.get("test_coco_reg")
        meta = MetadataCatalog.get("test_coco_reg")
        assert len(dicts) == 2
        assert meta.thing_classes == ["dog", "cat"]
        assert meta.thing_dataset_id_to_contiguous_id == {3: 0, 7: 1}
        assert meta.json_file == json_file and meta.evaluator_type == "coco"
    finally:
        DatasetCatalog.remove("test_coco_reg")
        MetadataCatalog.remove("test_coco_reg")


def test_invalid_boxes_are_skipped_and_counted(tmp_path, caplog):
    anns = [
        dict(id=1, image_id=1, category_id=7, bbox=[1, 1, 0, 5]),
        dict(id=2, image_id=1, category_id=7, bbox=[1, 1, -3, 5]),
        dict(id=3, image_id=1, category_id=7, bbox=[100, 1, 3, 5]),
        dict(id=4, image_id=1, category_id=7, bbox=[1, 1, 3, 5]),
    ]
    json_file, root = make_coco(tmp_path, annotations=anns)
    with caplog.at_level(logging.WARNING):
        dicts = load_coco_json(json_file, root)
    assert [a["id"] for a in dicts[0]["annotations"]] == [4]
    assert "skipped 2 annotations: non-positive width/height (annotation ids [1, 2])" in caplog.text
    assert "skipped 1 annotations: box outside its image" in caplog.text


def test_unknown_category_id_names_file_annotation_and_fix(tmp_path):
    anns = [dict(id=11, image_id=1, category_id=99, bbox=[1, 1, 3, 3])]
    json_file, root = make_coco(tmp_path, annotations=anns)
    with pytest.raises(ValueError) as e:
        load_coco_json(json_file, root)
    msg = str(e.value)
    assert (
        json_file in msg and "annotation 11" in msg and "category_id 99" in msg and "add the category" in msg
    )


def test_duplicate_annotation_ids_are_an_error(tmp_path):
    anns = [dict(id=5, image_id=1, category_id=7, bbox=[1, 1, 3, 3])] * 2
    json_file, root = make_coco(tmp_path, annotations=anns)
    with pytest.raises(ValueError, match=r"annotation id 5 appears twice"):
        load_coco_json(json_file, root)


def test_annotation_of_missing_image_is_an_error(tmp_path):
    anns = [dict(id=5, image_id=42, category_id=7, bbox=[1, 1, 3, 3])]
    json_file, root = make_coco(tmp_path, annotations=anns)
    with pytest.raises(ValueError, match=r"annotation 5 refers to image_id 42, which is not in 'images'"):
        load_coco_json(json_file, root)


def test_missing_image_files_are_an_error_naming_image_root(tmp_path):
    json_file, root = make_coco(tmp_path, write_images=False)
    with pytest.raises(FileNotFoundError) as e:
        load_coco_json(json_file, root)
    assert "2 of 2 image files are missing" in str(e.value) and root in str(e.value)
    assert "image id 1 ('a.jpg')" in str(e.value)


def test_not_a_coco_file_is_explained(tmp_path):
    bad = tmp_path / "x.json"
    bad.write_text(json.dumps([1, 2]))
    with pytest.raises(ValueError, match="not a COCO instances file"):
        load_coco_json(str(bad), str(tmp_path))
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_coco_json(str(tmp_path / "nope.json"), str(tmp_path))
