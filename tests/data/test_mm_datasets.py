"""MM-style datasets built from config: CocoDataset, CustomDataset, wrappers, build_dataset."""

import json

import numpy as np
import pytest
from data_helpers import make_coco, write_image

from kiln.data import CocoDataset, build_dataset
from kiln.registry import DATASETS

LOAD = [dict(type="LoadImageFromFile"), dict(type="LoadAnnotations", with_bbox=True)]


def test_coco_dataset_takes_classes_from_json_and_exposes_eval_attributes(tmp_path):
    json_file, root = make_coco(tmp_path)
    ds = CocoDataset(json_file, LOAD, img_prefix=root, min_size=None)
    assert ds.CLASSES == ("dog", "cat")
    assert ds.cat_ids == [3, 7] and ds.cat2label == {3: 0, 7: 1}
    assert sorted(ds.coco.getImgIds()) == [1, 2]


def test_coco_dataset_results_follow_the_pipeline_convention(tmp_path):
    json_file, root = make_coco(tmp_path)
    ds = CocoDataset(json_file, None, img_prefix=root, min_size=None)
    r = ds[0]
    assert r["img_info"]["filename"] == "a.jpg" and r["img_prefix"] == root and r["image_id"] == 1
    ann = r["ann_info"]
    np.testing.assert_array_equal(ann["bboxes"], np.array([[1, 2, 11, 22]], np.float32))
    assert ann["bboxes"].dtype == np.float32 and ann["labels"].dtype == np.int64
    np.testing.assert_array_equal(ann["labels"], [1])
    np.testing.assert_array_equal(ann["bboxes_ignore"], [[5, 5, 9, 9]])  # the crowd box
    assert (
        r["bbox_fields"] == []
        and "ann_info" not in CocoDataset(json_file, None, img_prefix=root, test_mode=True)[0]
    )


def test_coco_dataset_runs_loading_pipeline(tmp_path):
    json_file, root = make_coco(tmp_path)
    out = CocoDataset(json_file, LOAD, img_prefix=root, min_size=None)[1]
    assert out["img"].shape == (50, 30, 3)
    np.testing.assert_array_equal(out["gt_bboxes"], [[0, 0, 10, 10]])


def test_classes_argument_selects_and_orders_categories(tmp_path):
    json_file, root = make_coco(tmp_path)
    ds = CocoDataset(json_file, None, img_prefix=root, classes=["cat"], min_size=None)
    assert ds.CLASSES == ("cat",) and ds.cat_ids == [7]
    assert len(ds) == 1  # image 2 has only a dog: no boxes left, filtered (filter_empty_gt)
    with pytest.raises(ValueError, match=r"classes \['bird'\] are not among"):
        CocoDataset(json_file, None, img_prefix=root, classes=["bird"])


def test_filter_empty_gt_and_min_size_apply_in_training_only(tmp_path):
    images = [
        dict(id=1, file_name="a.jpg", height=40, width=60),
        dict(id=2, file_name="b.jpg", height=20, width=20),
        dict(id=3, file_name="c.jpg", height=40, width=40),
    ]
    anns = [
        dict(id=1, image_id=1, category_id=1, bbox=[1, 1, 5, 5]),
        dict(id=2, image_id=2, category_id=1, bbox=[1, 1, 5, 5]),
    ]
    json_file, root = make_coco(tmp_path, images, anns, [dict(id=1, name="thing")])
    assert [i["id"] for i in CocoDataset(json_file, None, img_prefix=root, min_size=32).data_infos] == [1]
    assert len(CocoDataset(json_file, None, img_prefix=root, min_size=None)) == 2
    assert len(CocoDataset(json_file, None, img_prefix=root, test_mode=True)) == 3
    assert CocoDataset(json_file, None, img_prefix=root, test_mode=True).flag.tolist() == [1, 0, 0]


def test_rejected_training_sample_is_replaced(tmp_path):
    json_file, root = make_coco(tmp_path)

    def reject_first(results):
        return None if results["image_id"] == 1 else results

    ds = CocoDataset(json_file, [reject_first], img_prefix=root, min_size=None)
    ds.flag[:] = 0  # one aspect group so the replacement can be any image
    assert ds[0]["image_id"] == 2


def test_custom_dataset_reads_middle_format(tmp_path):
    write_image(str(tmp_path / "x.jpg"), 20, 30)
    ann = [dict(filename="x.jpg", width=30, height=20, ann=dict(bboxes=[[1, 2, 3, 4]], labels=[0]))]
    (tmp_path / "ann.json").write_text(json.dumps(ann))
    ds = DATASETS.build(
        dict(
            type="CustomDataset",
            ann_file="ann.json",
            data_root=str(tmp_path),
            img_prefix="",
            classes=["a"],
            pipeline=LOAD,
        )
    )
    out = ds[0]
    assert out["img"].shape == (20, 30, 3) and out["gt_labels"].tolist() == [0]


def test_wrappers_repeat_concat_and_class_balance(tmp_path):
    json_file, root = make_coco(tmp_path)
    base = dict(type="CocoDataset", ann_file=json_file, img_prefix=root, min_size=None)
    rep = build_dataset(dict(type="RepeatDataset", times=3, dataset=base))
    assert len(rep) == 6 and rep[5]["image_id"] == 2 and rep.flag.tolist() == [1, 0] * 3
    cat = build_dataset([base, base])
    assert type(cat).__name__ == "ConcatDataset" and len(cat) == 4 and cat[3]["image_id"] == 2
    # each class is in 1 of 2 images (the crowd dog is ignored) -> f = 0.5; thr 2.0 -> ceil(sqrt(4)) = 2
    cbd = build_dataset(dict(type="ClassBalancedDataset", oversample_thr=2.0, dataset=base))
    assert cbd.repeat_indices == [0, 0, 1, 1]
    cbd = build_dataset(dict(type="ClassBalancedDataset", oversample_thr=0.5, dataset=base))
    assert cbd.repeat_indices == [0, 1]  # f = thr: no class is rare, nothing repeats


def test_list_of_ann_files_concatenates(tmp_path):
    json_file, root = make_coco(tmp_path)
    ds = build_dataset(
        dict(type="CocoDataset", ann_file=[json_file, json_file], img_prefix=root, min_size=None)
    )
    assert len(ds) == 4


def test_unknown_dataset_type_names_the_config_key():
    with pytest.raises(KeyError, match=r"'CocoDatset' is not registered.*data.train.*CocoDataset"):
        build_dataset(dict(type="CocoDatset"), cfg_path="data.train")


@pytest.mark.parametrize("type_", ["CocoDataset", "VOCDataset", "ShapesDataset", "CustomDataset"])
def test_dataset_signatures_expose_test_mode_for_builders(type_):
    # The runner passes test_mode=True to val/test datasets whose signature has it.
    import inspect

    assert "test_mode" in inspect.signature(DATASETS.get(type_)).parameters


def test_shapes_val_in_test_mode_has_no_annotations(tmp_path):
    ds = build_dataset(
        dict(type="ShapesDataset", split="val", num_images=3, image_size=32, root=str(tmp_path)),
        dict(test_mode=True),
    )
    assert ds.test_mode and len(ds) == 3 and "ann_info" not in ds[0]
