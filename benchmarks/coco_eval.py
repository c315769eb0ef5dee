"""COCOEvaluator cost vs. a hand-written pycocotools run on the same detections.

Baseline (same process, interleaved): load the ground truth once, ``loadRes`` the detections,
``COCOeval(...).evaluate/accumulate/summarize`` — the minimum anyone evaluating COCO box AP pays.
Measured: kiln's ``COCOEvaluator`` fed batch by batch through ``process`` (conversion of model
outputs to COCO results, label → category id mapping) and ``evaluate`` (with pycocotools, and with
faster-coco-eval when installed). CPU time per run, median over repeats (robust on a busy box).
The metrics of every variant are checked to be equal.

Run: ``.venv/bin/python benchmarks/coco_eval.py [--images 500] [--dets 50] [--repeat 3]``
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import logging
import os
import statistics
import tempfile
import time

import numpy as np


def make_data(num_images: int, dets_per_image: int, seed: int = 0) -> tuple[dict, dict]:
    """A COCO ground truth (5 non-contiguous categories) and per-image model outputs."""
    rng = np.random.default_rng(seed)
    cat_ids = [1, 3, 7, 8, 12]
    images, anns, preds = [], [], {}
    for i in range(num_images):
        images.append({"id": i + 1, "file_name": f"{i}.jpg", "height": 480, "width": 640})
        gt = []
        for _ in range(int(rng.integers(1, 8))):
            w, h = rng.uniform(8, 300, 2)
            x, y = rng.uniform(0, 640 - w), rng.uniform(0, 480 - h)
            gt.append((x, y, w, h, int(rng.integers(0, 5))))
            anns.append({"id": len(anns) + 1, "image_id": i + 1, "category_id": cat_ids[gt[-1][4]],
                         "bbox": [x, y, w, h], "area": w * h, "iscrowd": 0})
        boxes, scores, labels = [], [], []
        for k in range(dets_per_image):
            if k < len(gt):
                x, y, w, h, lab = gt[k]
                x, y = x + rng.normal(0, 4), y + rng.normal(0, 4)
            else:
                w, h = rng.uniform(8, 300, 2)
                x, y, lab = rng.uniform(0, 640 - w), rng.uniform(0, 480 - h), int(rng.integers(0, 5))
            boxes.append([x, y, x + w, y + h])
            scores.append(rng.uniform())
            labels.append(lab)
        preds[i + 1] = {"boxes": np.asarray(boxes, np.float32), "scores": np.asarray(scores, np.float32),
                        "labels": np.asarray(labels, np.int64)}
    gt = {"images": images, "annotations": anns,
          "categories": [{"id": c, "name": f"c{c}"} for c in cat_ids]}
    return gt, preds


def direct(gt_file: str, preds: dict) -> tuple[float, list[float]]:
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    cat_ids = [1, 3, 7, 8, 12]
    t = time.process_time()
    results = []
    for image_id, p in preds.items():
        for (x0, y0, x1, y1), s, lab in zip(p["boxes"].tolist(), p["scores"].tolist(), p["labels"].tolist()):
            results.append({"image_id": image_id, "category_id": cat_ids[lab],
                            "bbox": [x0, y0, x1 - x0, y1 - y0], "score": s})
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(gt_file)
        ev = COCOeval(gt, gt.loadRes(results), "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return time.process_time() - t, [float(v) * 100 for v in ev.stats[:6]]


def kiln_run(gt_file: str, preds: dict, backend: str) -> tuple[float, list[float]]:
    from kiln.evaluation import COCOEvaluator

    t = time.process_time()
    ev = COCOEvaluator(gt_file, backend=backend, classwise=False)
    ids = sorted(preds)
    for k in range(0, len(ids), 8):
        chunk = ids[k:k + 8]
        ev.process([{"image_id": i} for i in chunk], [preds[i] for i in chunk])
    res = ev.evaluate()
    return time.process_time() - t, [res[f"bbox/{n}"] for n in ("AP", "AP50", "AP75", "APs", "APm", "APl")]


def main() -> None:
    """Print CPU seconds per evaluation and the ratio to the direct pycocotools run."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=500)
    ap.add_argument("--dets", type=int, default=50)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    logging.disable(logging.INFO)
    gt, preds = make_data(args.images, args.dets)
    variants = {"pycocotools by hand (baseline)": lambda f: direct(f, preds),
                "kiln COCOEvaluator, pycocotools": lambda f: kiln_run(f, preds, "pycocotools")}
    try:
        import faster_coco_eval  # noqa: F401

        variants["kiln COCOEvaluator, faster-coco-eval"] = lambda f: kiln_run(f, preds, "faster_coco_eval")
    except ImportError:
        pass
    times: dict[str, list[float]] = {k: [] for k in variants}
    stats: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory() as d:
        gt_file = os.path.join(d, "gt.json")
        with open(gt_file, "w") as f:
            json.dump(gt, f)
        for _ in range(args.repeat):
            for name, fn in variants.items():  # interleaved, so load changes hit all variants alike
                cpu, s = fn(gt_file)
                times[name].append(cpu)
                stats[name] = s
    base = statistics.median(times["pycocotools by hand (baseline)"])
    print(f"{args.images} images, {args.images * args.dets} detections, {len(gt['annotations'])} gt boxes; "
          f"CPU s, median of {args.repeat}")
    for name in variants:
        med = statistics.median(times[name])
        same = np.allclose(stats[name], stats["pycocotools by hand (baseline)"], atol=1e-6)
        print(f"  {name:<40} {med:7.3f} s   ratio {med / base:5.2f}   AP {stats[name][0]:.3f}  "
              f"same metrics: {same}")


if __name__ == "__main__":
    main()
