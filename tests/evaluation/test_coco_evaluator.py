"""COCOEvaluator: its numbers are pycocotools' numbers on the same detections."""

from __future__ import annotations

import contextlib
import io
import json
import math
import os

import numpy as np
import pytest
import torch
from evaluation_data import CAT_IDS, CAT_NAMES, make_gt, make_predictions, to_coco_results
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from kiln.evaluation import COCOEvaluator, DatasetEvaluators
from kiln.registry import EVALUATORS

KEYS = ["AP", "AP50", "AP75", "APs", "APm", "APl"]


def direct_cocoeval(gt_file: str, results: list[dict], cat_ids=None) -> np.ndarray:
    """pycocotools run by hand, the reference the evaluator must match."""
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(gt_file)
        dt = gt.loadRes(results)
        ev = COCOeval(gt, dt, "bbox")
        if cat_ids is not None:
            ev.params.catIds = cat_ids
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return ev.stats


def mm_batch(image_ids):
    """MM pipeline form: image_id lives in img_metas."""
    return [{"img": torch.zeros(3, 8, 8), "img_metas": {"image_id": i}} for i in image_ids]


def run_evaluator(ev, preds, form="mm", batch_size=2):
    ev.reset()
    ids = sorted(preds)
    for start in range(0, len(ids), batch_size):
        chunk = ids[start:start + batch_size]
        batch = mm_batch(chunk) if form == "mm" else [{"image_id": i} for i in chunk]
        ev.process(batch, [preds[i] for i in chunk])
    return ev.evaluate()


def test_metrics_equal_direct_pycocotools_in_percent(gt_file):
    preds = make_predictions(make_gt())
    results = run_evaluator(COCOEvaluator(gt_file, backend="pycocotools"), preds)
    stats = direct_cocoeval(gt_file, to_coco_results(preds))
    assert 0 < stats[0] < 1  # the fixture is neither trivial nor empty
    for i, key in enumerate(KEYS):
        expected = stats[i] * 100 if stats[i] >= 0 else float("nan")
        got = results[f"bbox/{key}"]
        assert (math.isnan(got) and math.isnan(expected)) or got == pytest.approx(expected, abs=1e-6), key


def test_per_class_ap_equals_cocoeval_restricted_to_that_class(gt_file):
    preds = make_predictions(make_gt())
    results = run_evaluator(COCOEvaluator(gt_file, backend="pycocotools"), preds)
    for cat_id, name in zip(CAT_IDS, CAT_NAMES):
        stats = direct_cocoeval(gt_file, to_coco_results(preds), cat_ids=[cat_id])
        assert results[f"bbox/AP-{name}"] == pytest.approx(stats[0] * 100, abs=1e-6), name


def test_results_json_has_dataset_category_ids_and_xywh_boxes(gt_file, tmp_path):
    preds = make_predictions(make_gt())
    out = tmp_path / "eval_out"
    run_evaluator(COCOEvaluator(gt_file, output_dir=str(out)), preds)
    written = json.loads((out / "coco_instances_results.json").read_text())
    expected = to_coco_results(preds)
    assert len(written) == len(expected)
    assert {r["category_id"] for r in written} <= set(CAT_IDS)
    first = next(r for r in written if r["image_id"] == expected[0]["image_id"])
    assert first["category_id"] == expected[0]["category_id"]
    assert first["bbox"] == pytest.approx(expected[0]["bbox"], abs=1e-3)


def test_both_batch_forms_give_the_same_metrics(gt_file):
    preds = make_predictions(make_gt())
    ev = COCOEvaluator(gt_file)
    assert run_evaluator(ev, preds, form="mm") == run_evaluator(ev, preds, form="d2")


def test_torch_tensor_outputs_are_accepted(gt_file):
    preds = make_predictions(make_gt())
    as_tensors = {k: {n: torch.as_tensor(v) for n, v in p.items()} for k, p in preds.items()}
    ev = COCOEvaluator(gt_file)
    assert run_evaluator(ev, as_tensors) == run_evaluator(ev, preds)


def test_ground_truth_as_predictions_scores_100_ap(gt_file):
    gt = make_gt()
    preds = {img["id"]: {"boxes": [], "scores": [], "labels": []} for img in gt["images"]}
    for a in gt["annotations"]:
        x, y, w, h = a["bbox"]
        p = preds[a["image_id"]]
        p["boxes"].append([x, y, x + w, y + h])
        p["scores"].append(1.0)
        p["labels"].append(CAT_IDS.index(a["category_id"]))
    preds = {k: {n: np.asarray(v, np.float32).reshape(-1, 4) if n == "boxes" else np.asarray(v)
                 for n, v in p.items()} for k, p in preds.items()}
    results = run_evaluator(COCOEvaluator(gt_file), preds)
    assert results["bbox/AP"] == pytest.approx(100.0)
    assert results["bbox/AP50"] == pytest.approx(100.0)


def test_no_detections_at_all_gives_zero_ap_not_a_crash(gt_file):
    gt = make_gt()
    empty = {img["id"]: {"boxes": np.zeros((0, 4)), "scores": np.zeros(0), "labels": np.zeros(0)}
             for img in gt["images"]}
    results = run_evaluator(COCOEvaluator(gt_file), empty)
    assert results["bbox/AP"] == 0.0


def test_only_processed_images_are_evaluated(gt_file):
    gt = make_gt()
    preds = make_predictions(gt)
    subset = {k: preds[k] for k in sorted(preds)[:3]}
    results = run_evaluator(COCOEvaluator(gt_file), subset)
    # Reference: the same subset evaluated by pycocotools with imgIds restricted.
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO(gt_file)
        ev = COCOeval(coco, coco.loadRes(to_coco_results(subset)), "bbox")
        ev.params.imgIds = sorted(subset)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    assert results["bbox/AP"] == pytest.approx(ev.stats[0] * 100, abs=1e-6)


def test_unknown_image_id_is_a_clear_error(gt_file):
    ev = COCOEvaluator(gt_file)
    ev.process([{"image_id": 424242}], [{"boxes": np.zeros((0, 4)), "scores": [], "labels": []}])
    with pytest.raises(KeyError, match="424242.*not in the ground truth"):
        ev.evaluate()


def test_label_outside_the_dataset_classes_is_a_clear_error(gt_file):
    ev = COCOEvaluator(gt_file)
    bad = {"boxes": np.array([[0, 0, 5, 5]]), "scores": np.array([0.9]), "labels": np.array([3])}
    with pytest.raises(ValueError, match="label 3.*3 categories.*num_classes"):
        ev.process([{"image_id": 100}], [bad])


def test_output_without_boxes_names_the_expected_keys(gt_file):
    ev = COCOEvaluator(gt_file)
    with pytest.raises(KeyError, match="'boxes'.*eval mode"):
        ev.process([{"image_id": 100}], [{"loss_cls": torch.tensor(1.0)}])


def test_missing_annotation_file_names_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.json"):
        COCOEvaluator(str(tmp_path / "nope.json"))


def test_cat_ids_must_be_categories_of_the_ground_truth(gt_file):
    with pytest.raises(ValueError, match=r"cat_ids \[7\]"):
        COCOEvaluator(gt_file, cat_ids=[1, 5, 7])


def test_builds_from_registry_with_a_coco_object(gt_file):
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO(gt_file)
    ev = EVALUATORS.build(dict(type="COCOEvaluator", coco_gt=coco, classwise=False))
    results = run_evaluator(ev, make_predictions(make_gt()))
    assert not any("AP-" in k for k in results)
    assert ev.coco_gt is coco


def test_dataset_evaluators_reject_duplicate_metric_names(gt_file):
    both = DatasetEvaluators([COCOEvaluator(gt_file), COCOEvaluator(gt_file)])
    with pytest.raises(KeyError, match="bbox/AP.*another\nprefix|bbox/AP.*prefix"):
        run_evaluator(both, make_predictions(make_gt()))


def test_dataset_evaluators_merge_distinct_prefixes(gt_file):
    both = DatasetEvaluators([COCOEvaluator(gt_file), dict(type="COCOEvaluator", ann_file=gt_file,
                                                           prefix="copy")])
    results = run_evaluator(both, make_predictions(make_gt()))
    assert results["bbox/AP"] == results["copy/AP"]


def test_faster_coco_eval_gives_the_same_numbers(gt_file):
    pytest.importorskip("faster_coco_eval", reason="optional backend (pip install faster-coco-eval)")
    preds = make_predictions(make_gt())
    slow = run_evaluator(COCOEvaluator(gt_file, backend="pycocotools"), preds)
    fast = run_evaluator(COCOEvaluator(gt_file, backend="faster_coco_eval"), preds)
    assert fast.keys() == slow.keys()
    for k in slow:
        assert fast[k] == pytest.approx(slow[k], abs=1e-6, nan_ok=True), k


def test_requesting_faster_coco_eval_when_missing_says_how_to_install(gt_file):
    try:
        import faster_coco_eval  # noqa: F401
    except ImportError:
        with pytest.raises(ImportError, match="pip install faster-coco-eval"):
            COCOEvaluator(gt_file, backend="faster_coco_eval")
    else:  # installed: the request is honoured
        assert COCOEvaluator(gt_file, backend="faster_coco_eval")._backend == "faster_coco_eval"
    assert os.path.isfile(gt_file)
