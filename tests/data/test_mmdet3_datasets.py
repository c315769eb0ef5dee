"""Datasets with MMDetection 3.x keys: data_prefix, filter_cfg, metainfo (class subsets), backend_args,
indices, serialize_data; VOC sub_data_root/bbox_min_size; wrappers with 3.x arguments and metainfo."""

from __future__ import annotations

import pytest
from data_helpers import make_coco, voc_tree

from kiln.data import build_dataset
from kiln.data.datasets import ClassBalancedDataset, CocoDataset, ConcatDataset, RepeatDataset, VOCDataset

PACK = [dict(type="LoadImageFromFile"), dict(type="LoadAnnotations", with_bbox=True),
        dict(type="PackDetInputs")]


def _coco(tmp_path):
    """4 images: 1 (cat + crowd dog), 2 (dog), 3 (no annotation), 4 (20 px tall, a cat)."""
    images = [dict(id=1, file_name="a.jpg", height=40, width=60),
              dict(id=2, file_name="b.jpg", height=50, width=40),
              dict(id=3, file_name="c.jpg", height=40, width=40),
              dict(id=4, file_name="d.jpg", height=20, width=60)]
    anns = [dict(id=1, image_id=1, category_id=7, bbox=[1, 2, 10, 20], area=200, iscrowd=0),
            dict(id=2, image_id=1, category_id=3, bbox=[5, 5, 4, 4], area=16, iscrowd=1),
            dict(id=3, image_id=2, category_id=3, bbox=[0, 0, 10, 10], area=100, iscrowd=0),
            dict(id=4, image_id=4, category_id=7, bbox=[0, 0, 10, 10], area=100, iscrowd=0)]
    json_file, img_root = make_coco(tmp_path, images=images, annotations=anns)
    return str(tmp_path / "coco"), json_file


def _ids(ds):
    return [ds[i]["data_samples"].img_id for i in range(len(ds))]


def test_coco_data_prefix_and_filter_cfg(tmp_path):
    root, _ = _coco(tmp_path)
    ds = CocoDataset(ann_file="ann.json", data_root=root, data_prefix=dict(img="images/"), pipeline=PACK,
                     filter_cfg=dict(filter_empty_gt=True, min_size=32))
    assert _ids(ds) == [1, 2]  # 3 has no annotation, 4 is 20 px tall
    assert ds[0]["data_samples"].img_path == f"{root}/images/a.jpg"
    everything = CocoDataset(ann_file="ann.json", data_root=root, data_prefix=dict(img="images/"),
                             pipeline=PACK)
    assert _ids(everything) == [1, 2, 3, 4]  # no filter_cfg: MMDetection 3.x keeps every image


def test_filter_empty_gt_counts_crowd_boxes_in_3x_not_in_2x(tmp_path):
    crowd_only = dict(images=[dict(id=1, file_name="a.jpg", height=40, width=60),
                              dict(id=2, file_name="b.jpg", height=50, width=30)])
    anns = [dict(id=1, image_id=1, category_id=3, bbox=[5, 5, 4, 4], area=16, iscrowd=1),
            dict(id=2, image_id=2, category_id=7, bbox=[0, 0, 10, 10], area=100, iscrowd=0)]
    json_file, img_root = make_coco(tmp_path / "crowd", images=crowd_only["images"], annotations=anns)
    ds3 = CocoDataset(ann_file=json_file, data_prefix=dict(img=img_root),
                      filter_cfg=dict(filter_empty_gt=True))
    ds2 = CocoDataset(ann_file=json_file, img_prefix=img_root, min_size=None)
    assert len(ds3) == 2 and len(ds2) == 1


def test_metainfo_class_subset_keeps_only_those_classes_relabelled(tmp_path):
    root, _ = _coco(tmp_path)
    ds = CocoDataset(ann_file="ann.json", data_root=root, data_prefix=dict(img="images/"), pipeline=PACK,
                     metainfo=dict(classes=("dog",), palette=[(1, 2, 3)]),
                     filter_cfg=dict(filter_empty_gt=True))
    assert ds.metainfo == dict(classes=("dog",), palette=[(1, 2, 3)])
    assert _ids(ds) == [1, 2]  # image 1 has a crowd dog; 4 only a cat
    first = ds[0]["data_samples"]
    assert len(first.gt_instances) == 0 and first.ignored_instances.labels.tolist() == [0]
    assert ds[1]["data_samples"].gt_instances.labels.tolist() == [0]
    swapped = CocoDataset(ann_file="ann.json", data_root=root, data_prefix=dict(img="images/"), pipeline=PACK,
                          metainfo=dict(classes=("dog", "cat")))
    assert swapped.metainfo["classes"] == ("dog", "cat") and len(swapped.metainfo["palette"]) == 2
    assert swapped[0]["data_samples"].gt_instances.labels.tolist() == [1]  # cat is label 1 now


def test_test_mode_keeps_annotations_in_3x(tmp_path):
    root, _ = _coco(tmp_path)
    ds = CocoDataset(ann_file="ann.json", data_root=root, data_prefix=dict(img="images/"), test_mode=True,
                     pipeline=PACK, filter_cfg=dict(filter_empty_gt=True, min_size=32))
    assert len(ds) == 4  # test mode never filters
    assert ds[0]["data_samples"].gt_instances.bboxes.tolist() == [[1, 2, 11, 22]]


def test_indices_and_serialize_data(tmp_path):
    root, _ = _coco(tmp_path)
    common = dict(ann_file="ann.json", data_root=root, data_prefix=dict(img="images/"), pipeline=PACK)
    assert _ids(CocoDataset(**common, indices=2)) == [1, 2]
    assert _ids(CocoDataset(**common, indices=[3, 0])) == [4, 1]
    packed = CocoDataset(**common, serialize_data=True)
    plain = CocoDataset(**common, serialize_data=False)
    assert _ids(packed) == _ids(plain)
    assert packed.data_infos[2] == plain.data_infos[2]
    with pytest.raises(IndexError, match="out of range"):
        CocoDataset(**common, indices=[9])


def test_3x_key_errors(tmp_path):
    root, _ = _coco(tmp_path)
    common = dict(ann_file="ann.json", data_root=root)
    with pytest.raises(ValueError, match=r"mixes MMDetection 2.x keys \['img_prefix'\] with 3.x keys"):
        CocoDataset(**common, img_prefix="images/", data_prefix=dict(img="images/"))
    with pytest.raises(ValueError, match=r"data_prefix has keys \['imgs'\]"):
        CocoDataset(**common, data_prefix=dict(imgs="images/"))
    with pytest.raises(ValueError, match=r"filter_cfg has keys \['bbox_min_size'\]"):
        CocoDataset(**common, data_prefix=dict(img="images/"), filter_cfg=dict(bbox_min_size=4))
    with pytest.raises(ValueError, match="kiln reads local files only"):
        CocoDataset(**common, data_prefix=dict(img="images/"), backend_args=dict(backend="petrel"))
    with pytest.raises(ValueError, match="lazy_init=True"):
        CocoDataset(**common, data_prefix=dict(img="images/"), lazy_init=True)


def test_2x_keys_keep_their_defaults(tmp_path):
    root, _ = _coco(tmp_path)
    ds = CocoDataset(ann_file="ann.json", data_root=root, img_prefix="images/")
    assert [info["id"] for info in ds.data_infos] == [1, 2]  # filter_empty_gt=True, min_size=32
    assert ds.metainfo["classes"] == ("dog", "cat")  # json order: category ids 3, 7
    assert "ann_info" not in CocoDataset(ann_file="ann.json", data_root=root, img_prefix="images/",
                                         test_mode=True)[0]


def _voc(tmp_path, year: str):
    root = voc_tree(tmp_path / year, {"000001": [("dog", [5, 5, 30, 25], 0), ("cat", [2, 2, 6, 6], 0)],
                                      "000002": [("person", [1, 1, 20, 20], 1)],
                                      "000003": [("unicorn", [1, 1, 20, 20], 0)]})
    return root


def test_voc_3x_keys_class_subset_and_bbox_min_size(tmp_path):
    root = _voc(tmp_path, "a")
    data_root = root.rsplit("/", 1)[0]
    ds = VOCDataset(ann_file="VOC2007/ImageSets/Main/trainval.txt", data_root=data_root,
                    data_prefix=dict(sub_data_root="VOC2007/"), pipeline=PACK,
                    metainfo=dict(classes=("cat", "dog", "person")),
                    filter_cfg=dict(filter_empty_gt=True, min_size=10, bbox_min_size=8))
    assert _ids(ds) == ["000001", "000002"]  # 000003 has only a unicorn, not in the subset
    first = ds[0]["data_samples"]
    assert first.gt_instances.labels.tolist() == [1]  # dog; the 4-pixel cat is below bbox_min_size
    assert first.ignored_instances.labels.tolist() == [0]
    assert ds[1]["data_samples"].ignored_instances.labels.tolist() == [2]  # difficult person
    with pytest.raises(ValueError, match="class 'unicorn' is not in the class list"):
        VOCDataset(ann_file="VOC2007/ImageSets/Main/trainval.txt", data_root=data_root,
                   data_prefix=dict(sub_data_root="VOC2007/"))


def test_wrappers_take_3x_arguments_and_expose_metainfo(tmp_path):
    root, _ = _coco(tmp_path)
    base = dict(type="CocoDataset", ann_file="ann.json", data_root=root, data_prefix=dict(img="images/"),
                pipeline=PACK)
    rep = build_dataset(dict(type="RepeatDataset", times=3, dataset=base))
    assert isinstance(rep, RepeatDataset) and len(rep) == 12 and rep.metainfo["classes"] == ("dog", "cat")
    cat = build_dataset(dict(type="ConcatDataset", ignore_keys=["dataset_type"], datasets=[base, base]))
    assert isinstance(cat, ConcatDataset) and len(cat) == 8 and cat.metainfo["classes"] == ("dog", "cat")
    cb = build_dataset(dict(type="ClassBalancedDataset", oversample_thr=0.5, dataset=base))
    assert isinstance(cb, ClassBalancedDataset) and len(cb) > 4 and cb.metainfo["classes"] == ("dog", "cat")
    subset = dict(base, metainfo=dict(classes=("cat",)))
    with pytest.raises(ValueError, match=r"datasets\[1\] has metainfo classes=\('cat',\)"):
        build_dataset(dict(type="ConcatDataset", datasets=[base, subset]))
    with pytest.raises(ValueError, match="lazy_init=True"):
        build_dataset(dict(type="RepeatDataset", times=2, dataset=base, lazy_init=True))
