"""Mask AP ('segm'): kiln's evaluators against pycocotools run by hand on the same masks."""

from __future__ import annotations

import contextlib
import io
import json

import numpy as np
import pytest
import torch
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from kiln.evaluation import COCOEvaluator, CocoMetric, build_evaluator
from kiln.structures import DetDataSample, InstanceData, Instances, polygons_to_bitmask

CAT_IDS = [2, 7]
H, W = 96, 128


def _blob(rng, cx, cy, r):
    """A star-ish polygon: its mask and its box differ clearly (box AP != mask AP)."""
    ang = np.sort(rng.uniform(0, 2 * np.pi, 9))
    rad = r * rng.uniform(0.5, 1.0, 9)
    pts = np.stack([cx + rad * np.cos(ang), cy + rad * np.sin(ang)], 1)
    return np.clip(pts, 0, [W, H]).reshape(-1)


def make_gt_and_predictions(seed=0):
    rng = np.random.default_rng(seed)
    images, anns, preds = [], [], {}
    for i in range(5):
        image_id = 30 + i
        images.append(dict(id=image_id, file_name=f"{image_id}.png", height=H, width=W))
        masks, boxes, scores, labels = [], [], [], []
        for _ in range(int(rng.integers(1, 4))):
            r = float(rng.choice([5.0, 14.0, 35.0]))
            poly = _blob(rng, rng.uniform(r, W - r), rng.uniform(r, H - r), r)
            m = polygons_to_bitmask([poly], H, W)
            xs, ys = poly[0::2], poly[1::2]
            label = int(rng.integers(0, 2))
            anns.append(dict(id=len(anns) + 1, image_id=image_id, category_id=CAT_IDS[label], iscrowd=0,
                             segmentation=[poly.tolist()], area=float(m.sum()),
                             bbox=[xs.min(), ys.min(), xs.max() - xs.min(), ys.max() - ys.min()]))
            # the prediction: the mask shifted a little (and eroded or not), the box a bit off
            shifted = np.roll(m, (int(rng.integers(-2, 3)), int(rng.integers(-2, 3))), axis=(0, 1))
            masks.append(shifted)
            jitter = rng.normal(0, 0.1, 4) * r
            box = [xs.min(), ys.min(), xs.max(), ys.max()]
            boxes.append([v + j for v, j in zip(box, jitter)])
            scores.append(rng.uniform(0.3, 1.0))
            labels.append(label if rng.uniform() > 0.2 else 1 - label)
        fp = np.zeros((H, W), bool)  # a false positive
        fp[5:25, 5:30] = True
        masks.append(fp)
        boxes.append([5, 5, 30, 25])
        scores.append(0.2)
        labels.append(0)
        preds[image_id] = dict(boxes=np.asarray(boxes, np.float32), scores=np.asarray(scores, np.float32),
                               labels=np.asarray(labels, np.int64), masks=np.stack(masks))
    crowd = np.zeros((H, W), np.uint8)
    crowd[60:90, 90:120] = 1
    rle = mask_utils.encode(np.asfortranarray(crowd))
    crowd_rle = dict(size=rle["size"], counts=rle["counts"].decode())
    anns.append(dict(id=len(anns) + 1, image_id=30, category_id=CAT_IDS[0], iscrowd=1, area=900.0,
                     bbox=[90, 60, 30, 30], segmentation=crowd_rle))
    gt = dict(images=images, annotations=anns, categories=[dict(id=c, name=f"c{c}") for c in CAT_IDS])
    return gt, preds


@pytest.fixture
def data(tmp_path):
    gt, preds = make_gt_and_predictions()
    path = tmp_path / "masks.json"
    path.write_text(json.dumps(gt))
    return str(path), preds


def direct_segm(gt_file, preds, max_dets=(1, 10, 100)):
    """pycocotools by hand: each mask RLE-encoded on its own, results without boxes."""
    results = []
    for image_id, p in preds.items():
        for m, s, lab in zip(p["masks"], p["scores"].tolist(), p["labels"].tolist()):
            rle = mask_utils.encode(np.asfortranarray(m.astype(np.uint8)))
            rle["counts"] = rle["counts"].decode()
            results.append(dict(image_id=image_id, category_id=CAT_IDS[lab], segmentation=rle, score=s))
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(gt_file)
        ev = COCOeval(gt, gt.loadRes(results), "segm")
        ev.params.maxDets = list(max_dets)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return ev.stats


def run(ev, preds, to_output=lambda p: p):
    ev.reset()
    for image_id in sorted(preds):
        ev.process([{"image_id": image_id}], [to_output(preds[image_id])])
    return ev.evaluate()


NAMES = ("AP", "AP50", "AP75", "APs", "APm", "APl")


def test_mask_ap_equals_a_direct_pycocotools_run(data):
    gt_file, preds = data
    res = run(COCOEvaluator(gt_file, ("bbox", "segm"), distributed=False), preds)
    stats = direct_segm(gt_file, preds)
    for i, name in enumerate(NAMES):
        expected = stats[i] * 100 if stats[i] >= 0 else float("nan")
        assert res[f"segm/{name}"] == pytest.approx(expected, nan_ok=True), name
    assert res["segm/AP"] != pytest.approx(res["bbox/AP"])  # masks were evaluated, not boxes
    # box AP is what a bbox-only evaluator reports
    boxes_only = run(COCOEvaluator(gt_file, ("bbox",), distributed=False), preds)
    assert {k: v for k, v in res.items() if k.startswith("bbox/")} == pytest.approx(boxes_only, nan_ok=True)
    assert not any(k.startswith("segm/") for k in boxes_only)


def test_tasks_follow_the_predictions_when_not_given(data):
    gt_file, preds = data
    with_masks = run(COCOEvaluator(gt_file, distributed=False), preds)
    assert with_masks["segm/AP"] == pytest.approx(direct_segm(gt_file, preds)[0] * 100)
    no_masks = {i: {k: v for k, v in p.items() if k != "masks"} for i, p in preds.items()}
    assert not any(k.startswith("segm/") for k in run(COCOEvaluator(gt_file, distributed=False), no_masks))


def _d2(p):
    inst = Instances((H, W))
    inst.pred_boxes = torch.from_numpy(p["boxes"])
    inst.scores = torch.from_numpy(p["scores"])
    inst.pred_classes = torch.from_numpy(p["labels"])
    inst.pred_masks = torch.from_numpy(p["masks"])
    return {"instances": inst}


def _mm3(p):
    return DetDataSample(pred_instances=InstanceData(
        bboxes=torch.from_numpy(p["bboxes"] if "bboxes" in p else p["boxes"]),
        scores=torch.from_numpy(p["scores"]), labels=torch.from_numpy(p["labels"]),
        masks=torch.from_numpy(p["masks"])))


@pytest.mark.parametrize("form", [_d2, _mm3])
def test_detectron2_and_mmdet3_output_forms_give_the_same_numbers(data, form):
    gt_file, preds = data
    ref = run(COCOEvaluator(gt_file, ("bbox", "segm"), distributed=False), preds)
    assert run(COCOEvaluator(gt_file, ("bbox", "segm"), distributed=False), preds, form) == pytest.approx(
        ref, nan_ok=True)


def test_faster_coco_eval_gives_pycocotools_mask_numbers(data):
    pytest.importorskip("faster_coco_eval")
    gt_file, preds = data
    slow = run(COCOEvaluator(gt_file, ("segm",), distributed=False, backend="pycocotools"), preds)
    fast = run(COCOEvaluator(gt_file, ("segm",), distributed=False, backend="faster_coco_eval"), preds)
    assert fast == pytest.approx(slow, nan_ok=True, abs=1e-6)


def test_result_json_carries_rle_masks(data, tmp_path):
    gt_file, preds = data
    run(COCOEvaluator(gt_file, ("bbox", "segm"), distributed=False, output_dir=str(tmp_path / "out")), preds)
    written = json.loads((tmp_path / "out" / "coco_instances_results.json").read_text())
    first = next(r for r in written if r["image_id"] == 30)
    decoded = mask_utils.decode(dict(first["segmentation"], counts=first["segmentation"]["counts"].encode()))
    np.testing.assert_array_equal(decoded.astype(bool), preds[30]["masks"][0])
    assert len(first["bbox"]) == 4


def test_cocometric_segm_keys_equal_pycocotools_rounded(data, tmp_path):
    gt_file, preds = data
    ev = CocoMetric(ann_file=gt_file, metric=["bbox", "segm"], outfile_prefix=str(tmp_path / "r"),
                    distributed=False)
    res = run(ev, preds)
    stats = direct_segm(gt_file, preds, max_dets=(100, 300, 1000))
    for i, item in enumerate(("mAP", "mAP_50", "mAP_75", "mAP_s", "mAP_m", "mAP_l")):
        assert res[f"coco/segm_{item}"] == round(float(stats[i]), 3), item
    assert "coco/bbox_mAP" in res
    boxes = json.loads((tmp_path / "r.bbox.json").read_text())
    segms = json.loads((tmp_path / "r.segm.json").read_text())
    assert len(boxes) == len(segms) == sum(len(p["scores"]) for p in preds.values())
    assert "segmentation" not in boxes[0] and "segmentation" in segms[0]


def test_format_only_writes_both_files_and_no_metrics(data, tmp_path):
    gt_file, preds = data
    ev = CocoMetric(ann_file=gt_file, metric="segm", format_only=True, outfile_prefix=str(tmp_path / "t"),
                    distributed=False)
    assert run(ev, preds) == {}
    assert (tmp_path / "t.bbox.json").is_file() and (tmp_path / "t.segm.json").is_file()


def test_mask_ap_over_box_only_ground_truth_is_refused(tmp_path):
    from evaluation_data import make_gt, make_predictions

    gt = make_gt()
    path = tmp_path / "boxes.json"
    path.write_text(json.dumps(gt))
    preds = make_predictions(gt)
    for p in preds.values():
        p["masks"] = np.zeros((len(p["boxes"]), 240, 320), bool)
    with pytest.raises(ValueError, match="ground-truth annotations .* have no 'segmentation'"):
        run(COCOEvaluator(str(path), ("segm",), distributed=False), preds)


def test_mask_ap_needs_masks_in_every_prediction(data):
    gt_file, preds = data
    image_id = sorted(preds)[0]
    no_masks = {k: v for k, v in preds[image_id].items() if k != "masks"}
    with pytest.raises(KeyError, match="has no masks"):
        CocoMetric(ann_file=gt_file, metric="segm").process([{"image_id": image_id}], [no_masks])
    bad = dict(preds[image_id], masks=preds[image_id]["masks"][:1])
    with pytest.raises(ValueError, match="boxes but 1 masks"):
        COCOEvaluator(gt_file, ("segm",)).process([{"image_id": image_id}], [bad])


def test_mmdet2_evaluation_entry_reports_unprefixed_segm_names(data, tmp_path):
    import cv2

    from kiln.data.datasets import CocoDataset

    gt_file, preds = data
    for img in json.loads(open(gt_file).read())["images"]:
        cv2.imwrite(str(tmp_path / img["file_name"]), np.zeros((H, W, 3), np.uint8))
    dataset = CocoDataset(gt_file, img_prefix=str(tmp_path), test_mode=True)
    ev = build_evaluator(dict(interval=1, metric=["bbox", "segm"]), dataset, style="mmdet2")
    res = run(ev, preds)
    assert res["segm_mAP"] == round(float(direct_segm(gt_file, preds, (100, 300, 1000))[0]), 3)
    kiln_style = run(build_evaluator(dict(metric=["bbox", "segm"]), dataset, distributed=False), preds)
    assert kiln_style["segm/AP"] == pytest.approx(direct_segm(gt_file, preds)[0] * 100)


def test_catalog_dataset_masks_polygons_and_rle_are_converted_for_mask_ap(tmp_path):
    from kiln.data import DatasetCatalog, MetadataCatalog
    from kiln.structures import BoxMode

    square = np.zeros((H, W), np.uint8)
    square[10:40, 20:60] = 1
    rle = mask_utils.encode(np.asfortranarray(square))
    tri = [70.0, 10.0, 110.0, 10.0, 90.0, 60.0]
    record = dict(image_id="img_a", file_name="a.png", height=H, width=W, annotations=[
        dict(bbox=[20, 10, 60, 40], bbox_mode=BoxMode.XYXY_ABS, category_id=0, iscrowd=0,
             segmentation=dict(size=rle["size"], counts=rle["counts"])),  # compressed, bytes as loaded
        dict(bbox=[70, 10, 110, 60], bbox_mode=BoxMode.XYXY_ABS, category_id=1, iscrowd=0,
             segmentation=[tri])])
    DatasetCatalog.register("test_segm_catalog", lambda: [record])
    MetadataCatalog.get("test_segm_catalog").set(thing_classes=["a", "b"])
    try:
        ev = COCOEvaluator("test_segm_catalog", ("segm",), distributed=False, output_dir=str(tmp_path))
        masks = np.stack([square.astype(bool), polygons_to_bitmask([np.array(tri)], H, W)])
        pred = dict(boxes=np.array([[20, 10, 60, 40], [70, 10, 110, 60]], np.float32),
                    scores=np.array([0.9, 0.8], np.float32), labels=np.array([0, 1]), masks=masks)
        ev.process([{"image_id": "img_a"}], [pred])
        res = ev.evaluate()
    finally:
        DatasetCatalog.remove("test_segm_catalog")
        MetadataCatalog.remove("test_segm_catalog")
    assert res["segm/AP"] == pytest.approx(100.0)  # the exact masks, from RLE and polygon ground truth
    cached = json.loads((tmp_path / "test_segm_catalog_coco_format.json").read_text())
    assert isinstance(cached["annotations"][0]["segmentation"]["counts"], str)
