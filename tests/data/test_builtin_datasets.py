"""Detectron2's built-in dataset names: lazy registration under $DETECTRON2_DATASETS, metadata, loading."""

import json
import os
import subprocess
import sys

import pytest
from data_helpers import voc_tree, write_image

from kiln.data import DatasetCatalog, MetadataCatalog
from kiln.data.builtin import builtin_dataset_names, register_all_builtin
from kiln.data.builtin_meta import COCO_CATEGORIES


@pytest.fixture
def root(tmp_path):
    """Built-in names re-registered under tmp_path; back to the environment's root afterwards."""
    register_all_builtin(str(tmp_path))
    yield tmp_path
    register_all_builtin()


def test_every_detectron2_instance_name_is_registered():
    expected = {f"coco_2014_{s}" for s in ("train", "val", "minival", "valminusminival")}
    expected |= {f"coco_2017_{s}" for s in ("train", "val", "test", "test-dev", "val_100")}
    expected |= {f"voc_2007_{s}" for s in ("trainval", "train", "val", "test")}
    expected |= {f"voc_2012_{s}" for s in ("trainval", "train", "val")}
    assert set(builtin_dataset_names()) == expected
    assert expected <= set(DatasetCatalog.list())


def test_coco_metadata_maps_json_ids_to_contiguous_labels(root):
    meta = MetadataCatalog.get("coco_2017_val")
    assert len(meta.thing_classes) == 80 and meta.thing_classes[0] == "person"
    assert meta.thing_classes[-1] == "toothbrush"
    mapping = meta.thing_dataset_id_to_contiguous_id
    assert sorted(mapping.values()) == list(range(80))
    assert mapping[1] == 0 and mapping[90] == 79 and 12 not in mapping  # COCO's id gaps
    assert meta.evaluator_type == "coco"
    assert meta.json_file == os.path.join(str(root), "coco/annotations/instances_val2017.json")
    assert meta.image_root == os.path.join(str(root), "coco/val2017")
    assert len({cid for cid, _ in COCO_CATEGORIES}) == 80


def test_voc_metadata(root):
    meta = MetadataCatalog.get("voc_2012_trainval")
    assert (meta.year, meta.split, meta.evaluator_type) == (2012, "trainval", "pascal_voc")
    assert meta.dirname == os.path.join(str(root), "VOC2012")
    assert len(meta.thing_classes) == 20 and meta.thing_classes[-1] == "tvmonitor"
    assert MetadataCatalog.get("voc_2007_test").year == 2007


def test_missing_files_name_the_expected_path_and_the_variable(root):
    with pytest.raises(FileNotFoundError) as e:
        DatasetCatalog.get("coco_2014_minival")
    msg = str(e.value)
    assert os.path.join(str(root), "coco/annotations/instances_minival2014.json") in msg
    assert "DETECTRON2_DATASETS" in msg
    (root / "VOC2007").mkdir()
    with pytest.raises(FileNotFoundError, match=r"split file .*VOC2007/ImageSets/Main/test\.txt.*DETECTRON2"):
        DatasetCatalog.get("voc_2007_test")


def test_builtin_coco_name_loads_files_in_detectron2_layout(root):
    (root / "coco" / "annotations").mkdir(parents=True)
    (root / "coco" / "val2017").mkdir()
    write_image(str(root / "coco" / "val2017" / "1.jpg"), 20, 30)
    cats = [dict(id=cid, name=n) for cid, n in COCO_CATEGORIES]
    anns = [dict(id=1, image_id=1, category_id=90, bbox=[1, 2, 5, 6], area=30, iscrowd=0)]
    (root / "coco" / "annotations" / "instances_val2017.json").write_text(json.dumps(
        dict(images=[dict(id=1, file_name="1.jpg", height=20, width=30)], annotations=anns, categories=cats)))
    (d,) = DatasetCatalog.get("coco_2017_val")
    assert d["file_name"] == os.path.join(str(root), "coco/val2017/1.jpg")
    assert d["annotations"][0]["category_id"] == 79  # toothbrush, contiguous


def test_builtin_voc_name_loads_files_in_detectron2_layout(root):
    voc_tree(root, {"000005": [("dog", [1, 1, 10, 20], 0)]})
    (d,) = DatasetCatalog.get("voc_2007_trainval")
    assert d["image_id"] == "000005"
    assert d["annotations"][0]["category_id"] == MetadataCatalog.get("voc_2007_trainval").thing_classes.index(
        "dog")


def test_a_user_registration_replacing_a_builtin_name_is_kept(root):
    DatasetCatalog.remove("voc_2012_val")
    MetadataCatalog.remove("voc_2012_val")
    DatasetCatalog.register("voc_2012_val", lambda: [{"file_name": "mine.jpg"}])
    try:
        register_all_builtin(str(root / "elsewhere"))
        assert DatasetCatalog.get("voc_2012_val") == [{"file_name": "mine.jpg"}]
        moved = os.path.join(str(root), "elsewhere", "VOC2012")
        assert MetadataCatalog.get("voc_2012_train").dirname == moved
    finally:
        DatasetCatalog.remove("voc_2012_val")


def test_registration_is_lazy_reads_the_variable_and_touches_no_file(tmp_path):
    # The variable is set after `import kiln.data`: only a registration on first use sees it.
    missing = tmp_path / "no_such_root"
    code = (
        "import os, kiln, kiln.data\n"
        f"os.environ['DETECTRON2_DATASETS'] = {str(missing)!r}\n"
        "from kiln.data import MetadataCatalog\n"
        "print(MetadataCatalog.get('coco_2017_train').json_file)\n"
    )
    env = dict(os.environ, PYTHONPATH=os.getcwd())
    env.pop("DETECTRON2_DATASETS", None)
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == os.path.join(str(missing), "coco/annotations/instances_train2017.json")
    assert not missing.exists()
