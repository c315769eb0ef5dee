"""CocoMetric: MMDetection 3.x's arguments, key names and scale; numbers are pycocotools' own."""

from __future__ import annotations

import contextlib
import io
import json

import numpy as np
import pytest
import torch
from evaluation_data import CAT_IDS, CAT_NAMES, make_gt, make_predictions, to_coco_results
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from kiln.evaluation import CocoMetric, build_evaluator
from kiln.structures import DetDataSample

BBOX_KEYS = ["coco/bbox_mAP", "coco/bbox_mAP_50", "coco/bbox_mAP_75", "coco/bbox_mAP_s", "coco/bbox_mAP_m",
             "coco/bbox_mAP_l"]


def direct(gt_file, results, *, use_cats=True, iou_thrs=None, cat_ids=None):
    """pycocotools by hand, with MMDetection 3.x's CocoMetric parameters (maxDets 100/300/1000)."""
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(gt_file)
        ev = COCOeval(gt, gt.loadRes(results), "bbox")
        ev.params.maxDets = [100, 300, 1000]
        if iou_thrs is not None:
            ev.params.iouThrs = np.asarray(iou_thrs, dtype=np.float64)
        if cat_ids is not None:
            ev.params.catIds = cat_ids
        ev.params.useCats = int(use_cats)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return ev.stats


def packed(image_id):
    """An MMDetection 3.x PackDetInputs sample: the image id lives in data_samples.img_id."""
    return {"inputs": torch.zeros(3, 8, 8, dtype=torch.uint8),
            "data_samples": DetDataSample(metainfo={"img_id": image_id, "ori_shape": (240, 320)})}


def run(ev, preds, batch_size=2):
    ev.reset()
    ids = sorted(preds)
    for start in range(0, len(ids), batch_size):
        chunk = ids[start:start + batch_size]
        ev.process([packed(i) for i in chunk], [preds[i] for i in chunk])
    return ev.evaluate()


@pytest.fixture
def coco_dataset(gt_file, tmp_path):
    import cv2

    from kiln.data.datasets import CocoDataset

    for img in make_gt()["images"]:  # CocoDataset checks that the image files exist
        cv2.imwrite(str(tmp_path / img["file_name"]), np.zeros((img["height"], img["width"], 3), np.uint8))
    return CocoDataset(gt_file, img_prefix=str(tmp_path), test_mode=True)


@pytest.fixture
def preds():
    return make_predictions(make_gt())


def test_bbox_keys_and_values_are_mmdetection_3s(gt_file, preds):
    results = run(CocoMetric(ann_file=gt_file), preds)
    stats = direct(gt_file, to_coco_results(preds))
    assert list(results) == BBOX_KEYS  # nothing else (classwise defaults to False, as in MMDetection)
    assert 0 < stats[0] < 1
    for i, key in enumerate(BBOX_KEYS):
        # fractions rounded to 3 decimals; -1 (undefined) stays -1.0 as MMDetection reports it
        assert results[key] == round(float(stats[i]), 3), key


def test_ap_equals_pycocotools_unrounded(gt_file, preds):
    ev = CocoMetric(ann_file=gt_file)
    run(ev, preds)
    stats = direct(gt_file, to_coco_results(preds))
    np.testing.assert_allclose(ev.coco_eval.stats, stats, rtol=0, atol=1e-12)


def test_ground_truth_from_the_dataset_when_no_ann_file(coco_dataset, gt_file, preds):
    from_file = run(CocoMetric(ann_file=gt_file), preds)
    from_dataset = run(CocoMetric(dataset=coco_dataset), preds)
    assert from_dataset == from_file


def test_classwise_reports_each_class_precision(gt_file, preds, caplog):
    with caplog.at_level("INFO", logger="kiln.evaluation.coco_metric"):
        results = run(CocoMetric(ann_file=gt_file, classwise=True), preds)
    for cat_id, name in zip(CAT_IDS, CAT_NAMES):
        alone = direct(gt_file, to_coco_results(preds), cat_ids=[cat_id])
        assert results[f"coco/{name}_precision"] == round(float(alone[0]), 3), name
    table = next(r.getMessage() for r in caplog.records if "Per-class" in r.getMessage())
    assert all(n in table for n in CAT_NAMES) and "mAP_50" in table


def test_proposal_recall_is_class_agnostic_cocoeval(gt_file, preds):
    results = run(CocoMetric(ann_file=gt_file, metric="proposal"), preds)
    stats = direct(gt_file, to_coco_results(preds), use_cats=False)
    names = ["AR@100", "AR@300", "AR@1000", "AR_s@1000", "AR_m@1000", "AR_l@1000"]
    assert list(results) == [f"coco/{n}" for n in names]
    for i, name in enumerate(names, start=6):
        assert results[f"coco/{name}"] == round(float(stats[i]), 3)
    # class-agnostic: a wrong label does not lower proposal recall, but does lower box AP
    wrong = {k: {**v, "labels": (v["labels"] + 1) % 3} for k, v in preds.items()}
    assert run(CocoMetric(ann_file=gt_file, metric="proposal"), wrong) == results
    assert run(CocoMetric(ann_file=gt_file), wrong)["coco/bbox_mAP"] < run(CocoMetric(ann_file=gt_file),
                                                                          preds)["coco/bbox_mAP"]


def test_metric_list_items_and_iou_thrs(gt_file, preds):
    results = run(CocoMetric(ann_file=gt_file, metric=["bbox", "proposal"], metric_items=["mAP", "AR@100"],
                             iou_thrs=[0.5]), preds)
    # as in MMDetection, metric_items apply to every metric: 'bbox_' + item for bbox, the bare item for
    # proposal (whose 'mAP' is the class-agnostic AP)
    assert set(results) == {"coco/bbox_mAP", "coco/bbox_AR@100", "coco/mAP", "coco/AR@100"}
    stats = direct(gt_file, to_coco_results(preds), iou_thrs=[0.5])
    assert results["coco/bbox_mAP"] == round(float(stats[0]), 3)
    assert results["coco/bbox_AR@100"] == round(float(stats[6]), 3)
    assert results["coco/bbox_mAP"] > run(CocoMetric(ann_file=gt_file), preds)["coco/bbox_mAP"]  # IoU .5 only


def test_proposal_fast_hand_computed(tmp_path):
    gt = {"images": [{"id": 1, "width": 100, "height": 100}],
          "categories": [{"id": 1, "name": "a"}],
          "annotations": [
              {"id": 1, "image_id": 1, "category_id": 1, "bbox": [0, 0, 10, 10], "area": 100, "iscrowd": 0},
              {"id": 2, "image_id": 1, "category_id": 1, "bbox": [50, 50, 10, 10], "area": 100, "iscrowd": 0},
              {"id": 3, "image_id": 1, "category_id": 1, "bbox": [80, 0, 10, 10], "area": 100, "iscrowd": 1}]}
    path = tmp_path / "gt.json"
    path.write_text(json.dumps(gt))
    # proposal 1 is gt 1 exactly; proposal 2 covers gt 2 with IoU 100/160 = 0.625; proposal 3 the crowd box
    out = {"boxes": np.array([[0, 0, 10, 10], [50, 50, 66, 60], [80, 0, 90, 10]], np.float32),
           "scores": np.array([0.9, 0.8, 0.7], np.float32), "labels": np.zeros(3, np.int64)}
    ev = CocoMetric(ann_file=str(path), metric="proposal_fast", proposal_nums=(1, 2, 100))
    results = run(ev, {1: out})
    # 10 thresholds .50:.95: gt 1 recalled at all, gt 2 at .50/.55/.60; crowd boxes are not ground truth
    assert results["coco/AR@1"] == pytest.approx(0.5)
    assert results["coco/AR@2"] == pytest.approx((10 + 3) / 20)
    assert results["coco/AR@100"] == pytest.approx((10 + 3) / 20)


def test_format_only_writes_coco_results_and_returns_nothing(gt_file, preds, tmp_path):
    prefix = tmp_path / "sub" / "test"
    results = run(CocoMetric(ann_file=gt_file, format_only=True, outfile_prefix=str(prefix)), preds)
    assert results == {}
    written = json.loads((tmp_path / "sub" / "test.bbox.json").read_text())
    expected = to_coco_results(preds)
    key = lambda d: (d["image_id"], d["category_id"], round(d["score"], 5))  # noqa: E731
    assert len(written) == len(expected)
    for w, e in zip(sorted(written, key=key), sorted(expected, key=key)):
        assert key(w) == key(e)
        np.testing.assert_allclose(w["bbox"], e["bbox"], atol=1e-4)


def test_outfile_prefix_without_format_only_writes_and_evaluates(gt_file, preds, tmp_path):
    results = run(CocoMetric(ann_file=gt_file, outfile_prefix=str(tmp_path / "r")), preds)
    assert (tmp_path / "r.bbox.json").is_file() and results["coco/bbox_mAP"] > 0


def test_prefix_and_no_change_flags(gt_file, preds):
    base = run(CocoMetric(ann_file=gt_file), preds)
    other = run(CocoMetric(ann_file=gt_file, prefix="val", use_mp_eval=True, collect_device="gpu",
                           sort_categories=True, backend_args=dict(backend="local")), preds)
    assert other == {k.replace("coco/", "val/"): v for k, v in base.items()}


@pytest.mark.parametrize("kwargs, message", [
    (dict(metric=["bbox", "keypoints"]), r"\['keypoints'\] is not one of"),
    (dict(format_only=True), "set outfile_prefix"),
    (dict(file_client_args=dict(backend="disk")), "file_client_args is deprecated.*backend_args"),
    (dict(backend_args=dict(backend="petrel")), "local file system only"),
    (dict(metric_items=["mAP", "mAP_huge"]), r"\['mAP_huge'\] are not COCO metric items"),
    (dict(proposal_nums=[300]), "exactly three maxDets"),
    (dict(collect_device="tpu"), "collect_device must be 'cpu' or 'gpu'"),
])
def test_bad_arguments_are_refused(gt_file, kwargs, message):
    with pytest.raises(ValueError, match=message):
        CocoMetric(ann_file=gt_file, **kwargs)


def test_missing_ann_file_names_it(tmp_path):
    with pytest.raises(FileNotFoundError, match="ann_file .*nope.json. does not exist.*data_root"):
        CocoMetric(ann_file=str(tmp_path / "nope.json"))


def test_dataset_classes_missing_from_ann_file_are_an_error(gt_file):
    class Named:
        CLASSES = ["circle", "hexagon"]
        data_infos = []

    with pytest.raises(ValueError, match=r"classes \['hexagon'\] are not categories of ann_file"):
        CocoMetric(ann_file=gt_file, dataset=Named())


def test_class_subset_maps_labels_by_name(gt_file, preds):
    class Subset:  # a dataset of two of the three classes, in another order (metainfo classes)
        metainfo = {"classes": ("triangle", "circle")}
        data_infos = []

    ev = CocoMetric(ann_file=gt_file, dataset=Subset())
    assert ev.cat_ids == [9, 1]


def test_build_evaluator_gives_mmdetection_names_for_the_3x_entry(coco_dataset, gt_file, preds):
    ev = build_evaluator(dict(type="CocoMetric", ann_file=gt_file, metric="bbox", format_only=False,
                              backend_args=None), coco_dataset)
    assert isinstance(ev, CocoMetric)
    assert list(run(ev, preds)) == BBOX_KEYS
    kiln_own = build_evaluator(dict(metric="bbox"), coco_dataset)  # kiln/Detectron2 configs keep bbox/AP
    assert "bbox/AP" in run(kiln_own, preds)
