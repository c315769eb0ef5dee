"""Small real COCO ground truth + detections shared by the evaluation tests (helpers)."""

from __future__ import annotations

import numpy as np

# Non-contiguous dataset ids on purpose: contiguous label l must become CAT_IDS[l].
CAT_IDS = [1, 5, 9]
CAT_NAMES = ["circle", "square", "triangle"]


def make_gt(num_images: int = 6, seed: int = 0) -> dict:
    """A COCO instances dict with small, medium and large boxes over 3 categories."""
    rng = np.random.default_rng(seed)
    images, anns = [], []
    ann_id = 1
    for i in range(num_images):
        image_id = 100 + i  # image ids that are not 0..n-1 either
        images.append({"id": image_id, "file_name": f"{image_id}.png", "height": 240, "width": 320})
        for _ in range(int(rng.integers(1, 5))):
            size = float(rng.choice([20.0, 60.0, 130.0]))  # small / medium / large areas
            w, h = size * rng.uniform(0.8, 1.2), size * rng.uniform(0.8, 1.2)
            x, y = rng.uniform(0, 320 - w), rng.uniform(0, 240 - h)
            anns.append({"id": ann_id, "image_id": image_id, "category_id": int(rng.choice(CAT_IDS)),
                         "bbox": [x, y, w, h], "area": w * h, "iscrowd": 0})
            ann_id += 1
    cats = [{"id": c, "name": n} for c, n in zip(CAT_IDS, CAT_NAMES)]
    return {"images": images, "annotations": anns, "categories": cats}


def make_predictions(gt: dict, seed: int = 1) -> dict[int, dict]:
    """Per image id: jittered true boxes, some with the wrong class, plus false positives.

    Returned in the model-output form: boxes XYXY, scores, contiguous labels (numpy).
    """
    rng = np.random.default_rng(seed)
    out: dict[int, dict] = {}
    by_image: dict[int, list] = {img["id"]: [] for img in gt["images"]}
    for a in gt["annotations"]:
        by_image[a["image_id"]].append(a)
    for image_id, anns in by_image.items():
        boxes, scores, labels = [], [], []
        for a in anns:
            x, y, w, h = a["bbox"]
            jitter = rng.normal(0, 0.08, size=4) * [w, h, w, h]
            boxes.append([x + jitter[0], y + jitter[1], x + w + jitter[2], y + h + jitter[3]])
            scores.append(rng.uniform(0.3, 1.0))
            label = CAT_IDS.index(a["category_id"])
            labels.append(label if rng.uniform() > 0.2 else (label + 1) % 3)
        for _ in range(2):  # false positives
            x, y = rng.uniform(0, 250), rng.uniform(0, 180)
            boxes.append([x, y, x + rng.uniform(10, 70), y + rng.uniform(10, 60)])
            scores.append(rng.uniform(0.05, 0.6))
            labels.append(int(rng.integers(0, 3)))
        out[image_id] = {"boxes": np.asarray(boxes, np.float32), "scores": np.asarray(scores, np.float32),
                         "labels": np.asarray(labels, np.int64)}
    return out


def to_coco_results(preds: dict[int, dict]) -> list[dict]:
    """The same predictions in COCO result format, computed independently of kiln."""
    res = []
    for image_id, p in preds.items():
        for (x0, y0, x1, y1), s, lab in zip(p["boxes"].tolist(), p["scores"].tolist(), p["labels"].tolist()):
            res.append({"image_id": image_id, "category_id": CAT_IDS[lab],
                        "bbox": [x0, y0, x1 - x0, y1 - y0], "score": s})
    return res
