"""build_evaluator: the run config's evaluation entry + the dataset → an evaluator."""

from __future__ import annotations

import pytest
from evaluation_data import CAT_IDS, make_gt, make_predictions

from kiln.data.datasets import CocoDataset
from kiln.evaluation import COCOEvaluator, DatasetEvaluator, build_evaluator
from kiln.registry import EVALUATORS


@pytest.fixture
def dataset(gt_file, tmp_path):
    import cv2
    import numpy as np

    for img in make_gt()["images"]:  # CocoDataset checks that the image files exist
        cv2.imwrite(str(tmp_path / img["file_name"]), np.zeros((img["height"], img["width"], 3), np.uint8))
    return CocoDataset(gt_file, img_prefix=str(tmp_path), test_mode=True)


def test_seed_evaluation_entry_builds_a_coco_evaluator_over_the_dataset(dataset, tmp_path):
    ev = build_evaluator(dict(interval=1, metric="bbox"), dataset, output_dir=str(tmp_path / "eval"))
    assert isinstance(ev, COCOEvaluator)
    assert ev.coco_gt is dataset.coco and ev.cat_ids == list(dataset.cat_ids) == CAT_IDS
    preds = make_predictions(make_gt())
    ids = sorted(preds)
    ev.process([{"image_id": i} for i in ids], [preds[i] for i in ids])
    assert 0 < ev.evaluate()["bbox/AP"] < 100
    assert (tmp_path / "eval" / "coco_instances_results.json").is_file()


def test_hook_keys_are_ignored_and_metric_lists_accepted(dataset):
    ev = build_evaluator(dict(interval=2, metric=["bbox"], save_best="auto", rule="greater",
                              classwise=False), dataset)
    assert isinstance(ev, COCOEvaluator)


def test_unsupported_metric_names_the_supported_ones(dataset):
    supported = r"\('bbox', 'segm', 'proposal', 'proposal_fast', 'mAP', 'recall'\)"
    with pytest.raises(ValueError, match=r"\['PQ'\].*" + supported):
        build_evaluator(dict(metric=["bbox", "PQ"]), dataset)


def test_mask_ap_needs_masks_in_the_predictions(dataset):
    ev = build_evaluator(dict(metric=["bbox", "segm"]), dataset)
    preds = make_predictions(make_gt())
    image_id = sorted(preds)[0]
    with pytest.raises(KeyError, match="'segm' is evaluated but the prediction for image .* has no masks"):
        ev.process([{"image_id": image_id}], [preds[image_id]])


def test_unknown_keys_are_reported(dataset):
    with pytest.raises(KeyError, match="iou_thrs"):
        build_evaluator(dict(metric="bbox", iou_thrs=[0.5]), dataset)


def test_dataset_without_coco_ground_truth_is_a_clear_error():
    with pytest.raises(TypeError, match="no 'coco' attribute.*CocoDataset"):
        build_evaluator(dict(metric="bbox"), [1, 2, 3])


def test_wrapped_datasets_are_unwrapped(dataset):
    class Repeat:
        def __init__(self, inner):
            self.dataset = inner

    assert build_evaluator(None, Repeat(dataset)).coco_gt is dataset.coco


def test_typed_entry_builds_a_registered_evaluator_with_the_dataset(dataset):
    @EVALUATORS.register_module(force=True)
    class CountingEvaluator(DatasetEvaluator):
        def __init__(self, dataset, scale=1.0):
            self.dataset, self.scale = dataset, scale

        def evaluate(self):
            return {"n": len(self.dataset) * self.scale}

    ev = build_evaluator(dict(type="CountingEvaluator", interval=1, scale=2.0), dataset)
    assert ev.evaluate() == {"n": 12.0}


def test_json_path_also_works_as_the_dataset(gt_file):
    assert isinstance(build_evaluator(dict(metric="bbox"), gt_file), COCOEvaluator)


def test_mmdet3_coco_metric_entry_maps_to_the_coco_evaluator(dataset, gt_file):
    ev = build_evaluator(dict(type="CocoMetric", ann_file=gt_file, metric="bbox", format_only=False), dataset)
    assert isinstance(ev, COCOEvaluator) and ev.cat_ids == CAT_IDS
