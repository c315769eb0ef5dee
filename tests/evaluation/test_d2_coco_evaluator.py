"""COCOEvaluator with Detectron2's arguments: a dataset name, tasks, distributed, output_dir, ..."""

import json
import os

import pytest
from evaluation_data import CAT_IDS, CAT_NAMES, make_gt, make_predictions

from kiln.data import DatasetCatalog, MetadataCatalog, register_coco_instances
from kiln.evaluation import COCOEvaluator, build_evaluator
from kiln.structures import BoxMode


def run(ev, preds):
    ev.reset()
    for image_id, out in preds.items():
        ev.process([{"image_id": image_id}], [out])
    return ev.evaluate()


@pytest.fixture
def names(gt_file):
    """A name registered with its json, and one whose loader returns dicts only (no json_file)."""
    gt = make_gt()
    register_coco_instances("test_d2coco_json", {}, gt_file, os.path.dirname(gt_file))
    label = {c: i for i, c in enumerate(CAT_IDS)}
    dicts = [dict(image_id=img["id"], file_name=img["file_name"], height=img["height"], width=img["width"],
                  annotations=[dict(bbox=a["bbox"], bbox_mode=BoxMode.XYWH_ABS,
                                    category_id=label[a["category_id"]], iscrowd=0)
                               for a in gt["annotations"] if a["image_id"] == img["id"]])
             for img in gt["images"]]
    DatasetCatalog.register("test_d2coco_dicts", lambda: dicts)
    MetadataCatalog.get("test_d2coco_dicts").set(thing_classes=CAT_NAMES,
                                                 thing_dataset_id_to_contiguous_id=label)
    yield "test_d2coco_json", "test_d2coco_dicts"
    for n in ("test_d2coco_json", "test_d2coco_dicts"):
        DatasetCatalog.remove(n)
        MetadataCatalog.remove(n)


def test_detectron2_positional_call_matches_the_json_evaluator(names, gt_file, tmp_path):
    preds = make_predictions(make_gt())
    ref = run(COCOEvaluator(gt_file, distributed=False), preds)
    got = run(COCOEvaluator(names[0], ("bbox",), False, str(tmp_path)), preds)
    assert 0 < got["bbox/AP"] < 100 and got == pytest.approx(ref, nan_ok=True)
    assert os.path.isfile(tmp_path / "coco_instances_results.json")
    got = run(COCOEvaluator(dataset_name=names[0], distributed=False), preds)
    assert got == pytest.approx(ref, nan_ok=True)


def test_a_name_without_json_is_converted_and_cached(names, gt_file, tmp_path):
    preds = make_predictions(make_gt())
    ref = run(COCOEvaluator(gt_file, distributed=False), preds)
    got = run(COCOEvaluator(names[1], distributed=False, output_dir=str(tmp_path)), preds)
    assert got == pytest.approx(ref, nan_ok=True)
    cache = tmp_path / "test_d2coco_dicts_coco_format.json"
    coco = json.loads(cache.read_text())
    assert [c["id"] for c in coco["categories"]] == CAT_IDS  # the dataset's own ids again
    coco["annotations"] = coco["annotations"][: len(coco["annotations"]) // 2]  # a different cached truth
    cache.write_text(json.dumps(coco))
    cached = run(COCOEvaluator(names[1], distributed=False, output_dir=str(tmp_path)), preds)
    assert cached["bbox/AP"] != pytest.approx(ref["bbox/AP"])
    fresh = run(COCOEvaluator(names[1], distributed=False, output_dir=str(tmp_path), allow_cached_coco=False),
                preds)
    assert fresh == pytest.approx(ref, nan_ok=True)


def test_builds_from_a_canonical_evaluator_dict(names, gt_file):
    preds = make_predictions(make_gt())
    ev = build_evaluator(dict(type="COCOEvaluator", dataset_name=names[0], use_fast_impl=False), None,
                         distributed=False)
    assert run(ev, preds) == pytest.approx(run(COCOEvaluator(gt_file, distributed=False), preds), nan_ok=True)


def test_what_kiln_cannot_evaluate_is_refused(names):
    with pytest.raises(ValueError, match=r"tasks=\['bbox', 'keypoints'\].*no keypoint heads"):
        COCOEvaluator(names[0], ("bbox", "keypoints"))
    with pytest.raises(ValueError, match="kpt_oks_sigmas is for keypoint AP"):
        COCOEvaluator(names[0], kpt_oks_sigmas=(0.1,) * 17)
    with pytest.raises(ValueError, match="backend= or use_fast_impl="):
        COCOEvaluator(names[0], backend="pycocotools", use_fast_impl=True)
    with pytest.raises(ValueError, match="not \\['coco_gt', 'dataset_name'\\]"):
        COCOEvaluator(names[0], dataset_name=names[1])


def test_conversion_follows_detectron2_areas_and_ids():
    from kiln.evaluation.catalog_coco import convert_to_coco_dict

    tri = [0.0, 0.0, 10.0, 0.0, 0.0, 10.0]  # shoelace area 50 (a raster count would differ)
    DatasetCatalog.register("test_d2coco_conv", lambda: [dict(
        image_id="img_a", file_name="a.jpg", height=20, width=20,
        annotations=[dict(bbox=[0, 0, 10, 10], bbox_mode=BoxMode.XYXY_ABS, category_id=1, segmentation=[tri]),
                     dict(bbox=[1, 2, 3.33333, 4], bbox_mode=BoxMode.XYWH_ABS, category_id=0, iscrowd=1)])])
    MetadataCatalog.get("test_d2coco_conv").set(thing_classes=["a", "b"],
                                                thing_dataset_id_to_contiguous_id={3: 0, 8: 1})
    try:
        coco = convert_to_coco_dict("test_d2coco_conv")
    finally:
        DatasetCatalog.remove("test_d2coco_conv")
        MetadataCatalog.remove("test_d2coco_conv")
    assert coco["images"] == [dict(id=1, width=20, height=20, file_name="a.jpg", kiln_image_id="img_a")]
    first, second = coco["annotations"]
    assert first["area"] == pytest.approx(50.0) and first["category_id"] == 8
    assert first["bbox"] == [0, 0, 10, 10]
    assert second["bbox"] == [1, 2, 3.333, 4] and second["area"] == pytest.approx(3.33333 * 4)
    assert second["iscrowd"] == 1 and second["category_id"] == 3
    assert coco["categories"] == [dict(id=3, name="a"), dict(id=8, name="b")]
