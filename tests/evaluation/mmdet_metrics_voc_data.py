"""Small real Pascal VOC folders written to disk, and a from-scratch VOC AP reference (helpers)."""

from __future__ import annotations

import os

import numpy as np
import torch

from kiln.structures import DetDataSample

CLASSES = ("cat", "dog", "bird")


def write_voc(root, images: dict[str, list[tuple]], year: int = 2007, size=(400, 400)) -> str:
    """Write ``<root>/VOC<year>`` with one xml per image; objects are ``(class, [x0, y0, x1, y1]
    0-based, difficult)``. Returns the split file path (``ImageSets/Main/test.txt``)."""
    base = os.path.join(str(root), f"VOC{year}")
    for sub in ("Annotations", "JPEGImages", os.path.join("ImageSets", "Main")):
        os.makedirs(os.path.join(base, sub), exist_ok=True)
    for fileid, objects in images.items():
        objs = "".join(
            f"<object><name>{name}</name><difficult>{int(diff)}</difficult><bndbox>"
            # VOC xml is 1-based: kiln (like MMDetection) subtracts 1 from xmin/ymin on loading
            f"<xmin>{x0 + 1}</xmin><ymin>{y0 + 1}</ymin><xmax>{x1}</xmax><ymax>{y1}</ymax></bndbox></object>"
            for name, (x0, y0, x1, y1), diff in objects)
        xml = (f"<annotation><filename>{fileid}.jpg</filename><size><width>{size[0]}</width>"
               f"<height>{size[1]}</height><depth>3</depth></size>{objs}</annotation>")
        with open(os.path.join(base, "Annotations", f"{fileid}.xml"), "w") as f:
            f.write(xml)
    split = os.path.join(base, "ImageSets", "Main", "test.txt")
    with open(split, "w") as f:
        f.write("\n".join(images) + "\n")
    return split


def voc_dataset(root, images, year=2007, write=True):
    """A VOCDataset over ``images`` (written first unless ``write=False``: ranks of one test must not
    rewrite files another rank is reading)."""
    from kiln.data.datasets import VOCDataset

    split = (write_voc(root, images, year) if write
             else os.path.join(str(root), f"VOC{year}", "ImageSets", "Main", "test.txt"))
    return VOCDataset(split, img_prefix=os.path.join(str(root), f"VOC{year}"), classes=list(CLASSES),
                      test_mode=True)


def packed(image_id):
    """An MMDetection 3.x PackDetInputs sample (image id in data_samples.img_id)."""
    return {"inputs": torch.zeros(3, 4, 4, dtype=torch.uint8),
            "data_samples": DetDataSample(metainfo={"img_id": image_id})}


def output(dets):
    """Model output from ``[(label, [x0, y0, x1, y1], score), ...]``."""
    return {"boxes": np.asarray([d[1] for d in dets], np.float32).reshape(-1, 4),
            "scores": np.asarray([d[2] for d in dets], np.float32),
            "labels": np.asarray([d[0] for d in dets], np.int64)}


def run(ev, outputs: dict[str, dict]):
    ev.reset()
    for image_id, out in outputs.items():
        ev.process([packed(image_id)], [out])
    return ev.evaluate()


def reference_voc_map(images, outputs, iou_thr, use_07):
    """VOC AP written from the devkit's description, independent of kiln: per class, detections in
    descending score; each takes the best-overlapping gt of its image (inclusive-pixel IoU); a
    difficult gt makes it neither TP nor FP; a gt already taken makes it a FP."""
    aps = []
    for c, name in enumerate(CLASSES):
        gts = {i: [(np.array(b, float), d) for n, b, d in objs if n == name] for i, objs in images.items()}
        npos = sum(1 for g in gts.values() for _, d in g if not d)
        dets = [(float(s), i, np.array(b, float)) for i, o in outputs.items()
                for b, s, lab in zip(o["boxes"].tolist(), o["scores"].tolist(), o["labels"].tolist())
                if lab == c]
        if npos == 0:
            continue
        dets.sort(key=lambda t: -t[0])
        taken = {i: [False] * len(g) for i, g in gts.items()}
        tp, fp = [], []
        for _, i, b in dets:
            best, jbest = -1.0, -1
            for j, (g, _) in enumerate(gts[i]):
                iw = min(b[2], g[2]) - max(b[0], g[0]) + 1
                ih = min(b[3], g[3]) - max(b[1], g[1]) + 1
                if iw > 0 and ih > 0:
                    inter = iw * ih
                    area_b = (b[2] - b[0] + 1) * (b[3] - b[1] + 1)
                    uni = area_b + (g[2] - g[0] + 1) * (g[3] - g[1] + 1) - inter
                    if inter / uni > best:
                        best, jbest = inter / uni, j
            if best >= iou_thr:
                if gts[i][jbest][1]:
                    continue
                if not taken[i][jbest]:
                    taken[i][jbest] = True
                    tp.append(1)
                    fp.append(0)
                else:
                    tp.append(0)
                    fp.append(1)
            else:
                tp.append(0)
                fp.append(1)
        tp, fp = np.cumsum(tp), np.cumsum(fp)
        rec = tp / npos
        prec = tp / np.maximum(tp + fp, np.finfo(np.float64).eps)
        if use_07:
            points = np.arange(0.0, 1.1, 0.1)
            ap = sum((prec[rec >= t].max() if (rec >= t).any() else 0.0) for t in points) / 11
        else:
            mrec = np.concatenate(([0.0], rec, [1.0]))
            mpre = np.concatenate(([0.0], prec, [0.0]))
            for k in range(len(mpre) - 2, -1, -1):
                mpre[k] = max(mpre[k], mpre[k + 1])
            ap = sum((mrec[k + 1] - mrec[k]) * mpre[k + 1] for k in range(len(mrec) - 1)
                     if mrec[k + 1] != mrec[k])
        aps.append(ap)
    return float(np.mean(aps))


# One class with ground truth ('cat'); 'dog' has a detection but no ground truth (left out of the mean).
HAND = {
    "a": [("cat", [10, 10, 50, 50], 0), ("cat", [100, 100, 150, 150], 0), ("cat", [200, 10, 240, 50], 1)],
    "b": [("cat", [10, 10, 60, 60], 0)],
}
HAND_OUT = {
    "a": output([(0, [200, 10, 240, 50], 0.95),   # on the difficult cat: neither TP nor FP
                 (0, [10, 10, 50, 50], 0.9),      # TP
                 (0, [300, 300, 320, 320], 0.8),  # FP
                 (0, [10, 10, 50, 50], 0.6)]),    # duplicate of a found cat: FP
    "b": output([(0, [10, 10, 60, 60], 0.7),      # TP
                 (1, [5, 5, 30, 30], 0.5)]),      # a dog where there is none
}
# Sorted by score the cat detections are TP FP TP FP over 3 cats: recall 1/3 1/3 2/3 2/3, precision
# 1 1/2 2/3 1/2. Area under the envelope: 1/3*1 + 1/3*2/3 = 5/9. 11 points: recall >= 0..0.3 -> 1,
# 0.4..0.6 -> 2/3, 0.7..1 -> 0: (4 + 3*2/3)/11 = 6/11.
AREA_AP, POINTS_AP = 5 / 9, 6 / 11
