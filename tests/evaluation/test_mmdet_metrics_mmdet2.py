"""MMDetection 2.x ``evaluation=dict(metric=...)`` entries: VOC mAP/recall, COCO proposal metrics,
with the names MMDetection 2.x's datasets report; and the upstream configs' own entries."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from evaluation_data import make_gt, make_predictions
from mmdet_metrics_voc_data import AREA_AP, HAND, HAND_OUT, POINTS_AP, output, run, voc_dataset

from kiln.evaluation import COCOEvaluator, CocoMetric, VOCMetric, build_evaluator

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def upstream_configs(version: str) -> str:
    """The released MMDetection configs/ tree (same helper as tests/conftest.py on main)."""
    root = os.environ.get("KILN_UPSTREAM_CONFIGS", os.path.join(REPO, ".venv", "upstream"))
    path = os.path.join(root, f"mmdet-{version}", "configs")
    if not os.path.isdir(path):
        pytest.fail(f"{path} missing: run `make test` or python scripts/fetch_upstream_configs.py")
    return path


@pytest.fixture
def coco_dataset(gt_file, tmp_path):
    import cv2

    from kiln.data.datasets import CocoDataset

    for img in make_gt()["images"]:
        cv2.imwrite(str(tmp_path / img["file_name"]), np.zeros((img["height"], img["width"], 3), np.uint8))
    return CocoDataset(gt_file, img_prefix=str(tmp_path), test_mode=True)


def run_coco(ev, preds):
    ev.reset()
    ids = sorted(preds)
    ev.process([{"image_id": i} for i in ids], [preds[i] for i in ids])
    return ev.evaluate()


def test_voc_map_uses_11_points_for_voc2007_and_area_otherwise(tmp_path):
    voc07 = voc_dataset(tmp_path / "a", HAND, year=2007)
    voc12 = voc_dataset(tmp_path / "b", HAND, year=2012)
    res07 = run(build_evaluator(dict(interval=1, metric="mAP"), voc07), HAND_OUT)
    res12 = run(build_evaluator(dict(interval=1, metric="mAP", save_best="mAP"), voc12), HAND_OUT)
    assert list(res07) == ["mAP", "AP50"]  # MMDetection 2.x's names: no prefix
    assert res07["mAP"] == pytest.approx(POINTS_AP) and res07["AP50"] == round(POINTS_AP, 3)
    assert res12["mAP"] == pytest.approx(AREA_AP)


def test_voc_2x_iou_thr_and_recall(tmp_path):
    ds = voc_dataset(tmp_path, HAND)
    res = run(build_evaluator(dict(metric=["mAP"], iou_thr=[0.5, 0.75]), ds), HAND_OUT)
    assert list(res) == ["mAP", "AP50", "AP75"]
    out = {"a": output([(0, [10, 10, 50, 50], 0.9)]), "b": output([])}
    rec = run(build_evaluator(dict(metric="recall", proposal_nums=(100,), iou_thr=0.5), ds), out)
    assert rec == pytest.approx({"recall@100@0.5": 1 / 3})


def test_2x_coco_bbox_and_proposal_names(coco_dataset, gt_file):
    preds = make_predictions(make_gt())
    res = run_coco(build_evaluator(dict(interval=1, metric=["bbox", "proposal"]), coco_dataset), preds)
    mm3 = run_coco(CocoMetric(ann_file=gt_file, metric=["bbox", "proposal"]), preds)
    assert res == {k.replace("coco/", ""): v for k, v in mm3.items()}
    assert {"bbox_mAP", "bbox_mAP_50", "AR@100", "AR_l@1000"} <= set(res)
    fast = run_coco(build_evaluator(dict(metric="proposal_fast"), coco_dataset), preds)
    assert list(fast) == ["AR@100", "AR@300", "AR@1000"] and 0 < fast["AR@100"] <= 1


def test_bbox_alone_keeps_kiln_names_unless_the_config_is_mmdetection_2x(coco_dataset):
    preds = make_predictions(make_gt())
    kiln_style = build_evaluator(dict(metric="bbox"), coco_dataset)
    assert isinstance(kiln_style, COCOEvaluator) and "bbox/AP" in run_coco(kiln_style, preds)
    res = run_coco(build_evaluator(dict(metric="bbox", classwise=True), coco_dataset, style="mmdet2"), preds)
    assert res["bbox_mAP"] == pytest.approx(run_coco(kiln_style, preds)["bbox/AP"] / 100, abs=5e-4)
    assert "circle_precision" in res


def test_2x_jsonfile_prefix_writes_results(coco_dataset, tmp_path):
    preds = make_predictions(make_gt())
    ev = build_evaluator(dict(metric="bbox", jsonfile_prefix=str(tmp_path / "out" / "r")), coco_dataset,
                         style="mmdet2")
    assert run_coco(ev, preds)["bbox_mAP"] > 0
    assert len(json.loads((tmp_path / "out" / "r.bbox.json").read_text())) == sum(len(p["scores"])
                                                                                 for p in preds.values())


def test_2x_entries_refuse_what_2x_refuses(tmp_path, coco_dataset):
    ds = voc_dataset(tmp_path, HAND)
    with pytest.raises(ValueError, match="evaluated alone"):
        build_evaluator(dict(metric=["mAP", "bbox"]), ds)
    with pytest.raises(KeyError, match=r"unknown keys \['iou_thrs'\].*'iou_thr'"):
        build_evaluator(dict(metric="mAP", iou_thrs=[0.5]), ds)
    with pytest.raises(KeyError, match=r"unknown keys \['iou_thr'\]"):
        build_evaluator(dict(metric="proposal", iou_thr=0.5), coco_dataset)
    with pytest.raises(ValueError, match="style='mmdet3'"):
        build_evaluator(dict(metric="bbox"), coco_dataset, style="mmdet3")


def test_coco_metric_on_a_voc_dataset_converts_its_ground_truth(tmp_path):
    ds = voc_dataset(tmp_path, HAND)
    exact = {k: output([(lab, b, 0.9 - 0.1 * n) for n, (name, b, _) in enumerate(v)
                        for lab in [("cat", "dog", "bird").index(name)]]) for k, v in HAND.items()}
    res = run(build_evaluator(dict(type="CocoMetric", metric="bbox"), ds), exact)
    assert res["coco/bbox_mAP"] == 1.0  # every box found exactly; the one on the difficult cat costs nothing
    missed = {"a": output([(0, [10, 10, 50, 50], 0.9)]), "b": output([])}
    assert run(build_evaluator(dict(type="CocoMetric", metric="bbox"), ds), missed)["coco/bbox_mAP"] < 1.0


def test_upstream_3x_and_2x_voc_entries_build(tmp_path):
    from kiln.config import Config

    ds = voc_dataset(tmp_path, HAND)
    v3 = Config.fromfile(os.path.join(upstream_configs("3.3.0"), "_base_", "datasets", "voc0712.py"))
    ev3 = build_evaluator(v3.val_evaluator, ds)
    assert isinstance(ev3, VOCMetric)
    assert run(ev3, HAND_OUT)["pascal_voc/mAP"] == pytest.approx(POINTS_AP)  # eval_mode='11points'
    v2 = Config.fromfile(os.path.join(upstream_configs("2.28.2"), "_base_", "datasets", "voc0712.py"))
    assert dict(v2.evaluation) == {"interval": 1, "metric": "mAP"}
    assert run(build_evaluator(v2.evaluation, ds), HAND_OUT) == pytest.approx({"mAP": POINTS_AP,
                                                                                "AP50": round(POINTS_AP, 3)})


def test_upstream_3x_coco_entry_builds(gt_file, coco_dataset):
    from kiln.config import Config

    c3 = Config.fromfile(os.path.join(upstream_configs("3.3.0"), "_base_", "datasets", "coco_detection.py"))
    entry = dict(c3.val_evaluator)
    entry["ann_file"] = gt_file  # the config's data_root is not on this machine
    ev = build_evaluator(entry, coco_dataset)
    assert isinstance(ev, CocoMetric)
    res = run_coco(ev, make_predictions(make_gt()))
    assert set(res) == {"coco/bbox_mAP", "coco/bbox_mAP_50", "coco/bbox_mAP_75", "coco/bbox_mAP_s",
                        "coco/bbox_mAP_m", "coco/bbox_mAP_l"}
