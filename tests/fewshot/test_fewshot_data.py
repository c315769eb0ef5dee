"""Few-shot data: DeFRCN's class splits, seed files read as published (COCO json per class, VOC image
lists), the seeded K-shot generator, catalog names, and the bAP/nAP evaluators."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from kiln.data import DatasetCatalog, MetadataCatalog
from kiln.data.fewshot import (
    COCO_NOVEL_IDS,
    coco_split_ids,
    generate_coco_seed_files,
    generate_voc_seed_files,
    read_coco_seed_files,
    read_voc_seed_files,
    register_all_fewshot,
    voc_classes,
)


def test_class_splits_are_defrcns():
    assert voc_classes(1, "novel") == ["bird", "bus", "cow", "motorbike", "sofa"]
    assert voc_classes(2, "novel") == ["aeroplane", "bottle", "cow", "horse", "sofa"]
    assert voc_classes(3, "novel") == ["boat", "cat", "motorbike", "sheep", "sofa"]
    for s in (1, 2, 3):
        assert voc_classes(s, "all") == voc_classes(s, "base") + voc_classes(s, "novel")
        assert len(set(voc_classes(s, "all"))) == 20
    from kiln.data.builtin_meta import COCO_CATEGORIES

    base, novel = coco_split_ids([i for i, _ in COCO_CATEGORIES])
    assert (len(base), len(novel)) == (60, 20) and novel == sorted(COCO_NOVEL_IDS)
    with pytest.raises(ValueError, match="split must be 1, 2 or 3"):
        voc_classes(4, "base")


def _coco(n_images=40, seed=0):
    rng = np.random.default_rng(seed)
    images, anns = [], []
    for i in range(1, n_images + 1):
        images.append({"id": i, "file_name": f"{i}.jpg", "height": 64, "width": 64})
        for _ in range(rng.integers(1, 4)):
            anns.append({"id": len(anns) + 1, "image_id": i, "category_id": int(rng.choice([3, 7, 9])),
                         "bbox": [1.0, 2.0, 10.0, 12.0], "area": 120.0, "iscrowd": 0})
    cats = [{"id": 3, "name": "a"}, {"id": 7, "name": "b"}, {"id": 9, "name": "c"}]
    return {"images": images, "annotations": anns, "categories": cats}


@pytest.mark.parametrize("shot", [1, 2, 5])
def test_generated_coco_seed_files_read_back_with_k_boxes_per_class(tmp_path, shot):
    ann = tmp_path / "train.json"
    ann.write_text(json.dumps(_coco()))
    written = generate_coco_seed_files(str(ann), str(tmp_path / "split"), [shot], [0, 3], ["c", "a"])
    assert sorted(os.path.basename(p) for p in written) == sorted(
        f"full_box_{shot}shot_{c}_trainval.json" for c in ("a", "c") for _ in (0, 3))
    data = read_coco_seed_files(str(tmp_path / "split"), ["c", "a"], shot, 3, image_root="/imgs")
    assert data["categories"] == [{"id": 1, "name": "c"}, {"id": 2, "name": "a"}]
    counts = {c: sum(a["category_id"] == c for a in data["annotations"]) for c in (1, 2)}
    assert counts == {1: shot, 2: shot}
    assert all(im["file_name"].startswith("/imgs/") for im in data["images"])
    assert {a["image_id"] for a in data["annotations"]} == {im["id"] for im in data["images"]}


def test_seeds_give_different_reproducible_samples(tmp_path):
    ann = tmp_path / "train.json"
    ann.write_text(json.dumps(_coco()))
    generate_coco_seed_files(str(ann), str(tmp_path / "s"), [2], [0, 1], ["a"])
    generate_coco_seed_files(str(ann), str(tmp_path / "t"), [2], [0], ["a"])

    def ids(root, seed):
        data = read_coco_seed_files(str(tmp_path / root), ["a"], 2, seed)
        return sorted(im["id"] for im in data["images"])

    assert ids("s", 0) == ids("t", 0)
    assert ids("s", 0) != ids("s", 1)


def test_seed_zero_may_sit_at_the_top_as_tfa_ships_it_and_missing_files_are_named(tmp_path):
    ann = tmp_path / "train.json"
    ann.write_text(json.dumps(_coco()))
    generate_coco_seed_files(str(ann), str(tmp_path / "gen"), [1], [0], ["a"])
    top = tmp_path / "cocosplit"
    top.mkdir()
    name = "full_box_1shot_a_trainval.json"
    os.replace(tmp_path / "gen" / "seed0" / name, top / name)
    assert len(read_coco_seed_files(str(top), ["a"], 1, 0)["annotations"]) == 1
    with pytest.raises(FileNotFoundError, match="full_box_1shot_b_trainval.json.*class 'b', seed 0"):
        read_coco_seed_files(str(top), ["b"], 1, 0)


def _voc_tree(root, objects):
    """VOC2007/ with Annotations/<id>.xml for {id: [(class, box), ...]} and ImageSets/Main/trainval.txt."""
    d = root / "VOC2007"
    (d / "Annotations").mkdir(parents=True)
    (d / "ImageSets" / "Main").mkdir(parents=True)
    (d / "JPEGImages").mkdir(parents=True)
    for fid, objs in objects.items():
        (d / "JPEGImages" / f"{fid}.jpg").write_bytes(b"")  # listed, never decoded here
        body = "".join(f"<object><name>{c}</name><difficult>0</difficult><bndbox><xmin>{b[0]}</xmin>"
                       f"<ymin>{b[1]}</ymin><xmax>{b[2]}</xmax><ymax>{b[3]}</ymax></bndbox></object>"
                       for c, b in objs)
        (d / "Annotations" / f"{fid}.xml").write_text(
            f"<annotation><filename>{fid}.jpg</filename><size><width>100</width><height>80</height></size>"
            f"{body}</annotation>")
    (d / "ImageSets" / "Main" / "trainval.txt").write_text("\n".join(objects) + "\n")
    return d


def test_voc_seed_lists_keep_only_the_listed_class_at_most_k(tmp_path):
    voc = _voc_tree(tmp_path, {"000001": [("bird", (1, 1, 20, 20)), ("cow", (30, 30, 60, 60))],
                               "000002": [("bird", (5, 5, 25, 25)), ("bird", (40, 5, 60, 25))]})
    split = tmp_path / "vocsplit" / "seed1"
    split.mkdir(parents=True)
    (split / "box_2shot_bird_train.txt").write_text(
        f"{voc}/JPEGImages/000001.jpg\n{voc}/JPEGImages/000002.jpg\n")
    (split / "box_2shot_cow_train.txt").write_text(f"{voc}/JPEGImages/000001.jpg\n")
    data = read_voc_seed_files(str(tmp_path / "vocsplit"), ["bird", "cow"], 2, 1, str(tmp_path))
    labels = sorted(a["category_id"] for a in data["annotations"])
    assert labels == [1, 1, 2]  # 3 birds listed, 2 kept; the cow of image 1 counts for cow only
    cow = next(a for a in data["annotations"] if a["category_id"] == 2)
    assert cow["bbox"] == [29.0, 29.0, 31.0, 31.0]  # VOC's 1-based corners made 0-based, as xywh
    assert all(im["file_name"].endswith(".jpg") and "VOC2007/JPEGImages" in im["file_name"]
               for im in data["images"])

    written = generate_voc_seed_files(str(voc), "trainval", str(tmp_path / "gen"), [1], [0], ["bird", "cow"])
    assert len(written) == 2
    back = read_voc_seed_files(str(tmp_path / "gen"), ["bird", "cow"], 1, 0, str(tmp_path))
    assert sorted(a["category_id"] for a in back["annotations"]) == [1, 2]


def test_builtin_names_and_published_kshot_sets(tmp_path):
    voc = _voc_tree(tmp_path, {"000001": [("bird", (1, 1, 20, 20))]})
    split = tmp_path / "vocsplit" / "seed4"
    split.mkdir(parents=True)
    for cls in voc_classes(1, "all"):
        (split / f"box_3shot_{cls}_train.txt").write_text(f"{voc}/JPEGImages/000001.jpg\n")
    register_all_fewshot(str(tmp_path))
    meta = MetadataCatalog.get("voc_2007_test_all1")
    assert meta.thing_classes == voc_classes(1, "all") and meta.evaluator_type == "pascal_voc"
    assert meta.novel_classes == voc_classes(1, "novel") and meta.fewshot_setting == "all"
    names = DatasetCatalog.list()
    assert "voc_2007_trainval_novel1_3shot_seed4" in names and "voc_2012_trainval_all1_3shot_seed4" in names
    assert "voc_2007_trainval_novel1_3shot_seed5" not in names  # no such seed files
    os.replace(voc / "ImageSets" / "Main" / "trainval.txt", voc / "ImageSets" / "Main" / "test.txt")
    assert [d["annotations"] for d in DatasetCatalog.get("voc_2007_test_base1")] == [[]]  # bird is novel in 1
    birds = DatasetCatalog.get("voc_2007_test_novel1")[0]["annotations"]
    assert [a["category_id"] for a in birds] == [0]
    kshot = DatasetCatalog.get("voc_2007_trainval_novel1_3shot_seed4")
    assert [a["category_id"] for d in kshot for a in d["annotations"]] == [0]
    assert MetadataCatalog.get("coco14_test_novel").thing_classes[:3] == ["person", "bicycle", "car"]
    assert len(MetadataCatalog.get("coco14_trainval_base").thing_classes) == 60


def test_registered_family_loads_kshot_and_class_subsets(fsunit):
    names = {"fsunit_trainval_base", "fsunit_test_all", "fsunit_trainval_novel_2shot_seed1"}
    assert names <= set(fsunit["names"])
    dicts = DatasetCatalog.get("fsunit_trainval_all_2shot_seed1")
    labels = sorted(a["category_id"] for d in dicts for a in d["annotations"])
    assert labels == [0, 0, 1, 1, 2, 2]
    meta = MetadataCatalog.get("fsunit_trainval_all_2shot_seed1")
    assert meta.thing_classes == ["circle", "square", "triangle"] and os.path.isfile(meta.json_file)
    novel = DatasetCatalog.get("fsunit_test_novel")
    assert {a["category_id"] for d in novel for a in d["annotations"]} == {0}  # triangle is label 0 there
    assert MetadataCatalog.get("fsunit_test_novel").thing_classes == ["triangle"]


def test_fewshot_coco_evaluator_splits_base_and_novel(fsunit):
    from kiln.evaluation import FewShotCOCOEvaluator
    from kiln.structures.boxes import BoxMode

    ev = FewShotCOCOEvaluator(dataset_name="fsunit_test_all", base_classes=["circle", "square"],
                              novel_classes=["triangle"], distributed=False)
    ev.reset()
    for d in DatasetCatalog.get("fsunit_test_all"):
        anns = [a for a in d["annotations"] if a["category_id"] != 2]  # base objects found, novel missed
        boxes = [BoxMode.convert(a["bbox"], BoxMode(a["bbox_mode"]), BoxMode.XYXY_ABS) for a in anns]
        ev.process([{"image_id": d["image_id"]}], [{"boxes": np.array(boxes, np.float32).reshape(-1, 4),
                                                     "scores": np.ones(len(anns)),
                                                     "labels": np.array([a["category_id"] for a in anns])}])
    res = ev.evaluate()
    assert res["bbox/bAP"] == pytest.approx(100.0) and res["bbox/bAP50"] == pytest.approx(100.0)
    assert res["bbox/nAP"] == pytest.approx(0.0) and res["bbox/nAP75"] == pytest.approx(0.0)
    assert res["bbox/AP"] == pytest.approx(200.0 / 3, abs=1e-3)
    with pytest.raises(ValueError, match=r"classes \['triangle'\] are neither in base_classes"):
        FewShotCOCOEvaluator(dataset_name="fsunit_test_all", base_classes=["circle", "square"],
                             novel_classes=[])


def test_fewshot_voc_evaluator_splits_base_and_novel(tmp_path):
    from kiln.data.datasets.pascal_voc import register_pascal_voc
    from kiln.evaluation import FewShotPascalVOCEvaluator

    voc = _voc_tree(tmp_path, {"000001": [("bird", (1, 1, 20, 20))], "000002": [("cow", (30, 30, 60, 60))]})
    os.replace(voc / "ImageSets" / "Main" / "trainval.txt", voc / "ImageSets" / "Main" / "test.txt")
    register_pascal_voc("fsvoc_eval_test", str(voc), "test", 2007, ["bird", "cow"])
    ev = FewShotPascalVOCEvaluator("fsvoc_eval_test", base_classes=["bird"], novel_classes=["cow"],
                                   distributed=False)
    ev.reset()
    ev.process([{"image_id": "000001"}, {"image_id": "000002"}],
               [{"boxes": np.array([[0.0, 0.0, 20.0, 20.0]]), "scores": np.array([0.9]),
                 "labels": np.array([0])},
                {"boxes": np.zeros((0, 4)), "scores": np.zeros(0), "labels": np.zeros(0, int)}])
    res = ev.evaluate()
    assert res["bbox/bAP50"] == pytest.approx(100.0) and res["bbox/nAP50"] == pytest.approx(0.0)
    assert res["bbox/AP50"] == pytest.approx(50.0)
    assert {"bbox/bAP", "bbox/bAP75", "bbox/nAP", "bbox/nAP75"} <= set(res)
