"""VOCMetric: Pascal VOC AP (11points / area), difficult boxes ignored, recall, MMDetection 3.x names."""

from __future__ import annotations

import numpy as np
import pytest
from mmdet_metrics_voc_data import (
    AREA_AP,
    HAND,
    HAND_OUT,
    POINTS_AP,
    output,
    reference_voc_map,
    run,
    voc_dataset,
)

from kiln.evaluation import VOCMetric, build_evaluator


@pytest.fixture
def hand_ds(tmp_path):
    return voc_dataset(tmp_path, HAND)


def test_an_unusual_mode_for_the_voc_year_is_warned(hand_ds, caplog):
    with caplog.at_level("WARNING", logger="kiln.evaluation.voc_metric"):
        VOCMetric(hand_ds, eval_mode="11points")
        assert not caplog.records  # VOC2007 with its own 11-point AP
        VOCMetric(hand_ds, eval_mode="area")
    assert "VOC2007's AP is eval_mode='11points', but 'area'" in caplog.text


def test_hand_computed_ap_in_both_modes(hand_ds):
    points = run(VOCMetric(hand_ds, eval_mode="11points"), HAND_OUT)
    area = run(VOCMetric(hand_ds, eval_mode="area"), HAND_OUT)
    assert list(points) == ["pascal_voc/mAP", "pascal_voc/AP50"]
    assert points["pascal_voc/mAP"] == pytest.approx(POINTS_AP)
    assert points["pascal_voc/AP50"] == round(POINTS_AP, 3)  # MMDetection rounds AP50, not mAP
    assert area["pascal_voc/mAP"] == pytest.approx(AREA_AP)


def test_difficult_objects_are_ignored_not_missed(tmp_path):
    # the same boxes with the third cat not difficult: it is found by the top detection, so 3 of 4 cats
    # are found and the curve changes; with it difficult, the hand value above holds
    plain = {k: [(n, b, 0) for n, b, _ in v] for k, v in HAND.items()}
    res = run(VOCMetric(voc_dataset(tmp_path, plain), eval_mode="area"), HAND_OUT)
    assert res["pascal_voc/mAP"] != pytest.approx(AREA_AP)
    assert res["pascal_voc/mAP"] == pytest.approx(reference_voc_map(plain, HAND_OUT, 0.5, use_07=False))


def test_several_iou_thresholds(hand_ds):
    out = dict(HAND_OUT)
    # a cat found loosely: IoU (inclusive pixels) of [10,10,60,60] and [10,10,60,80] is 51*51/(51*71) = 0.72
    out["b"] = output([(0, [10, 10, 60, 80], 0.7)])
    res = run(VOCMetric(hand_ds, iou_thrs=[0.5, 0.75], eval_mode="area"), out)
    assert list(res) == ["pascal_voc/mAP", "pascal_voc/AP50", "pascal_voc/AP75"]
    ap50 = reference_voc_map(HAND, out, 0.5, use_07=False)
    ap75 = reference_voc_map(HAND, out, 0.75, use_07=False)
    assert ap50 == pytest.approx(AREA_AP) and ap75 < ap50
    assert res["pascal_voc/AP50"] == round(ap50, 3) and res["pascal_voc/AP75"] == round(ap75, 3)
    assert res["pascal_voc/mAP"] == pytest.approx((ap50 + ap75) / 2)


def random_case(seed=0, num_images=6):
    rng = np.random.default_rng(seed)
    names = ("cat", "dog", "bird")
    images, outputs = {}, {}
    for i in range(num_images):
        objs, dets = [], []
        for _ in range(int(rng.integers(1, 6))):
            w, h = rng.integers(15, 120, size=2)
            x, y = rng.integers(0, 400 - w), rng.integers(0, 400 - h)
            c = int(rng.integers(0, 3))
            objs.append((names[c], [int(x), int(y), int(x + w), int(y + h)], int(rng.uniform() < 0.2)))
            if rng.uniform() < 0.85:  # found, with jitter, sometimes with the wrong class
                j = rng.normal(0, 0.12, 4) * [w, h, w, h]
                label = c if rng.uniform() < 0.85 else (c + 1) % 3
                dets.append((label, [x + j[0], y + j[1], x + w + j[2], y + h + j[3]], rng.uniform(0.2, 1)))
        for _ in range(int(rng.integers(0, 4))):  # false positives
            x, y = rng.uniform(0, 300, 2)
            dets.append((int(rng.integers(0, 3)), [x, y, x + rng.uniform(10, 90), y + rng.uniform(10, 90)],
                         rng.uniform(0, 0.7)))
        images[f"{2007000 + i:06d}"] = objs
        outputs[f"{2007000 + i:06d}"] = output(dets)
    return images, outputs


@pytest.mark.parametrize("mode", ["11points", "area"])
def test_matches_a_from_scratch_reference(tmp_path, mode):
    images, outputs = random_case()
    ds = voc_dataset(tmp_path, images)
    res = run(VOCMetric(ds, iou_thrs=[0.5, 0.7], eval_mode=mode), outputs)
    ref = [reference_voc_map(images, outputs, t, use_07=mode == "11points") for t in (0.5, 0.7)]
    assert 0.2 < ref[0] < 0.95  # neither trivial nor hopeless
    assert res["pascal_voc/mAP"] == pytest.approx(np.mean(ref), abs=1e-9)
    assert res["pascal_voc/AP50"] == round(ref[0], 3) and res["pascal_voc/AP70"] == round(ref[1], 3)


def test_recall_of_top_proposals(hand_ds):
    # image a: cat 1 exactly (score .9), cat 2 at inclusive-pixel IoU 51*51/(51*81) = 0.63 (score .8)
    out = {"a": output([(0, [10, 10, 50, 50], 0.9), (0, [100, 100, 150, 180], 0.8)]), "b": output([])}
    res = run(VOCMetric(hand_ds, metric="recall", proposal_nums=(1, 100), iou_thrs=[0.5, 0.7]), out)
    # 3 non-difficult cats; the difficult one is not ground truth for recall
    assert res == pytest.approx({
        "pascal_voc/recall@1@0.5": 1 / 3, "pascal_voc/recall@1@0.7": 1 / 3,
        "pascal_voc/recall@100@0.5": 2 / 3, "pascal_voc/recall@100@0.7": 1 / 3,
        "pascal_voc/AR@1": 1 / 3, "pascal_voc/AR@100": 0.5,
    })
    single = run(VOCMetric(hand_ds, metric=["recall"], proposal_nums=(100,), prefix="voc"), out)
    assert single == pytest.approx({"voc/recall@100@0.5": 2 / 3})  # one threshold: no AR


def test_mmdetection_3x_batch_and_2x_batch_give_the_same(hand_ds):
    import torch

    ev = VOCMetric(hand_ds, eval_mode="area")
    ev.reset()
    for image_id, out in HAND_OUT.items():
        ev.process([{"img": torch.zeros(3, 4, 4), "img_metas": {"image_id": image_id}}], [out])
    assert ev.evaluate() == run(VOCMetric(hand_ds, eval_mode="area"), HAND_OUT)


def test_local_backend_args_change_nothing(hand_ds):
    base = run(VOCMetric(hand_ds), HAND_OUT)
    assert run(VOCMetric(hand_ds, backend_args=None, collect_device="gpu"), HAND_OUT) == base
    assert run(VOCMetric(hand_ds, backend_args=dict(backend="local")), HAND_OUT) == base


def test_built_from_the_3x_config_entry(hand_ds):
    ev = build_evaluator(dict(type="VOCMetric", metric="mAP", eval_mode="11points"), hand_ds)
    assert isinstance(ev, VOCMetric)
    assert run(ev, HAND_OUT)["pascal_voc/mAP"] == pytest.approx(POINTS_AP)


@pytest.mark.parametrize("kwargs, message", [
    (dict(scale_ranges=[(0, 32), (32, 1e5)]), "scale_ranges.*not supported"),
    (dict(eval_mode="coco"), "eval_mode='coco'"),
    (dict(metric="bbox"), "metric='bbox' is not one of"),
    (dict(metric=["mAP", "recall"]), "exactly one entry"),
    (dict(iou_thrs=[0.5, 1.5]), "IoU thresholds in"),
    (dict(collect_device="npu"), "collect_device"),
    (dict(backend_args=dict(backend="petrel")), "local file system only"),
])
def test_bad_arguments_are_refused(hand_ds, kwargs, message):
    with pytest.raises(ValueError, match=message):
        VOCMetric(hand_ds, **kwargs)


def test_needs_a_dataset_and_known_images(hand_ds):
    with pytest.raises(ValueError, match="needs the evaluated dataset"):
        VOCMetric()
    with pytest.raises(KeyError, match="'zzz' is not an image of the evaluated dataset"):
        run(VOCMetric(hand_ds), {"zzz": output([])})
    with pytest.raises(ValueError, match="predicted label 7 but the dataset has 3 classes"):
        run(VOCMetric(hand_ds), {"a": output([(7, [0, 0, 5, 5], 0.5)])})
