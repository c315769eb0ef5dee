"""PascalVOCDetectionEvaluator: Detectron2's VOC AP/AP50/AP75 for a catalog name."""

import numpy as np
import pytest

from kiln.data import DatasetCatalog, MetadataCatalog, VOCDataset, register_pascal_voc
from kiln.evaluation import PascalVOCDetectionEvaluator, VOCMetric, build_evaluator

CLASSES = ("cat", "dog")


def write_voc(root, objects, size=(60, 50)):
    """A VOC year folder; ``objects[id] = [(class, (xmin, ymin, xmax, ymax) 1-based, difficult)]``."""
    for sub in ("Annotations", "JPEGImages", "ImageSets/Main"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    w, h = size
    for fid, objs in objects.items():
        body = "".join(
            f"<object><name>{c}</name><difficult>{d}</difficult><bndbox><xmin>{b[0]}</xmin><ymin>{b[1]}"
            f"</ymin><xmax>{b[2]}</xmax><ymax>{b[3]}</ymax></bndbox></object>" for c, b, d in objs)
        (root / "Annotations" / f"{fid}.xml").write_text(
            f"<annotation><filename>{fid}.jpg</filename><size><width>{w}</width><height>{h}</height>"
            f"</size>{body}</annotation>")
    (root / "ImageSets" / "Main" / "test.txt").write_text("\n".join(objects) + "\n")
    return str(root)


@pytest.fixture
def voc_name(tmp_path, request):
    names = []

    def make(objects, year):
        name = f"test_d2voc_{request.node.name}_{len(names)}"
        root = write_voc(tmp_path / f"VOC{year}_{len(names)}", objects)
        register_pascal_voc(name, root, "test", year, CLASSES)
        names.append(name)
        return name

    yield make
    for n in names:
        DatasetCatalog.remove(n)
        MetadataCatalog.remove(n)


def out(boxes, scores, labels):
    return {"boxes": np.asarray(boxes, float).reshape(-1, 4), "scores": np.asarray(scores, float),
            "labels": np.asarray(labels, int)}


# Image A: a dog at VOC (11, 11, 30, 30) and a cat; image B: a dog at (1, 1, 20, 20) and a difficult dog.
GT = {"a": [("dog", (11, 11, 30, 30), 0), ("cat", (35, 5, 50, 20), 0)],
      "b": [("dog", (1, 1, 20, 20), 0), ("dog", (30, 1, 40, 10), 1)]}
# Predicted (0-based XYXY, original pixels): an exact dog in A (0.9), the difficult dog in B (0.85:
# neither right nor wrong), a dog in B of IoU 14/26 = 0.538 (0.8), a false dog in A (0.7).
PRED = {"a": out([[10, 10, 30, 30], [0, 0, 5, 5]], [0.9, 0.7], [1, 1]),
        "b": out([[29, 0, 40, 10], [6, 0, 26, 20]], [0.85, 0.8], [1, 1])}


def run(ev, preds):
    ev.reset()
    for fid, o in preds.items():
        ev.process([{"image_id": fid}], [o])
    return ev.evaluate()


def test_hand_computed_area_ap_for_2012(voc_name):
    # dog: at IoU 0.50 both dogs found in score order -> AP 1; above 0.538 only A's -> recall 1/2 at
    # precision 1 -> AP 0.5 (area). cat: no detection -> AP 0. Means over the 2 classes (percent).
    res = run(PascalVOCDetectionEvaluator(voc_name(GT, 2012), distributed=False), PRED)
    assert res["bbox/AP50"] == pytest.approx(50.0)
    assert res["bbox/AP75"] == pytest.approx(25.0)
    assert res["bbox/AP"] == pytest.approx((50.0 + 9 * 25.0) / 10)
    assert set(res) == {"bbox/AP", "bbox/AP50", "bbox/AP75"}


def test_hand_computed_11_point_ap_for_2007(voc_name):
    # 11-point: recall 1/2 at precision 1 reaches thresholds 0, 0.1, ..., 0.5 -> 6/11.
    res = run(PascalVOCDetectionEvaluator(voc_name(GT, 2007), distributed=False), PRED)
    assert res["bbox/AP50"] == pytest.approx(50.0)
    assert res["bbox/AP75"] == pytest.approx(50.0 * 6 / 11)
    assert res["bbox/AP"] == pytest.approx((50.0 + 9 * 50.0 * 6 / 11) / 10)


def test_ground_truth_is_the_whole_split_not_the_processed_images(voc_name):
    ev = PascalVOCDetectionEvaluator(voc_name(GT, 2012), distributed=False)
    # Only image A run: B's dog is a miss (recall 1/2 at every threshold), the cat too.
    res = run(ev, {"a": PRED["a"]})
    assert res["bbox/AP50"] == pytest.approx(25.0)


def test_iou_must_exceed_the_threshold_strictly(voc_name):
    # Detection (0-based) [0, 0, 20, 10] vs dog (1, 1, 20, 20): 1-based (1, 1, 20, 10) -> IoU 200/400 = 0.5.
    gt = {"c": [("dog", (1, 1, 20, 20), 0), ("cat", (30, 30, 40, 40), 0)]}
    ev = PascalVOCDetectionEvaluator(voc_name(gt, 2012), distributed=False)
    res = run(ev, {"c": out([[0, 0, 20, 10], [29, 29, 40, 40]], [0.9, 0.9], [1, 0])})
    assert res["bbox/AP50"] == pytest.approx(50.0)  # the cat counts, the dog at exactly 0.5 does not


def test_ap50_agrees_with_vocmetric_where_matches_are_unambiguous(voc_name):
    # Detectron2's VOC IoU is width x1 - x0 on kiln's 0-based boxes, MMDetection's legacy one x1 - x0 + 1:
    # they agree on AP50 whenever no IoU is near 0.5. Here every detection is either a one-pixel shift of
    # an object (IoU >= 0.8 either way, possibly with the wrong class), or a box where no object is.
    rng = np.random.default_rng(0)
    gt, preds = {}, {}
    for i in range(12):
        objs = []
        for _ in range(rng.integers(1, 4)):
            x0, y0 = rng.integers(1, 15, size=2)
            box = (x0, y0, x0 + rng.integers(10, 25), y0 + rng.integers(10, 25))
            objs.append((CLASSES[rng.integers(0, 2)], box, int(rng.random() < 0.15)))
        gt[f"{i:06d}"] = objs
        boxes, labels = [], []
        for c, (a, b, x1, y1), _ in objs:
            if rng.random() < 0.2:
                continue  # a miss
            box = np.array([a - 1, b - 1, x1, y1], float)
            box[rng.integers(0, 4)] += rng.integers(-1, 2)
            boxes.append(box)
            labels.append(CLASSES.index(c) if rng.random() < 0.8 else 1 - CLASSES.index(c))
        for _ in range(rng.integers(0, 3)):
            x0, y0 = rng.integers(42, 50, size=2) if rng.random() < 0.5 else (rng.integers(42, 50), 2)
            boxes.append([x0, y0, x0 + 6, y0 + 6])
            labels.append(int(rng.integers(0, 2)))
        n = len(boxes)
        # Scores on the devkit's 3-decimal grid, distinct, so both evaluators order them alike.
        preds[f"{i:06d}"] = out(boxes, rng.choice(np.arange(1, 1000), n, replace=False) / 1000, labels)
    name = voc_name(gt, 2012)
    d2 = run(PascalVOCDetectionEvaluator(name, distributed=False), preds)
    dirname = MetadataCatalog.get(name).dirname
    ds = VOCDataset(ann_file=f"{dirname}/ImageSets/Main/test.txt", img_prefix=dirname, classes=CLASSES,
                    pipeline=[], test_mode=True)
    mm = run(VOCMetric(dataset=ds, eval_mode="area", distributed=False), preds)
    assert 20 < d2["bbox/AP50"] < 100
    assert d2["bbox/AP50"] / 100 == pytest.approx(mm["pascal_voc/AP50"], abs=6e-4)


def test_builds_from_the_canonical_evaluator_dict(voc_name):
    name = voc_name(GT, 2007)
    ev = build_evaluator(dict(type="PascalVOCDetectionEvaluator", dataset_name=name), None, distributed=False)
    assert isinstance(ev, PascalVOCDetectionEvaluator)
    assert run(ev, PRED)["bbox/AP50"] == pytest.approx(50.0)


def test_errors_name_what_is_wrong(voc_name):
    MetadataCatalog.get("test_d2voc_no_meta").set(thing_classes=["a"])
    try:
        with pytest.raises(ValueError, match=r"no \['dirname', 'split', 'year'\].*register_pascal_voc"):
            PascalVOCDetectionEvaluator("test_d2voc_no_meta")
    finally:
        MetadataCatalog.remove("test_d2voc_no_meta")
    ev = PascalVOCDetectionEvaluator(voc_name(GT, 2012), distributed=False)
    with pytest.raises(KeyError, match=r"image ids \['zzz'\].*test\.txt"):
        run(ev, {"zzz": PRED["a"]})
    with pytest.raises(ValueError, match="predicted class 5 but the dataset has 2 classes"):
        run(ev, {"a": out([[0, 0, 5, 5]], [0.5], [5])})


def test_evaluator_for_dataset_follows_the_evaluator_type(voc_name, tmp_path):
    from kiln.evaluation import COCOEvaluator, evaluator_for_dataset

    name = voc_name(GT, 2007)
    ev = evaluator_for_dataset(name, distributed=False)
    assert isinstance(ev, PascalVOCDetectionEvaluator)
    assert run(ev, PRED)["bbox/AP50"] == pytest.approx(50.0)
    MetadataCatalog.get("test_d2voc_other").set(evaluator_type="lvis")
    try:
        with pytest.raises(ValueError, match=r"evaluator_type=.lvis.; kiln evaluates \[.coco.,"):
            evaluator_for_dataset("test_d2voc_other")
    finally:
        MetadataCatalog.remove("test_d2voc_other")
    # A VOC name evaluated the COCO way: its dicts converted, string image ids numbered and matched.
    res = run(COCOEvaluator(name, distributed=False, output_dir=str(tmp_path)), PRED)
    assert 0 < res["bbox/AP50"] < 100
