"""Helpers for tests that run MMDetection's own config files: the released trees and mini datasets.

The trees come from the released wheels (``scripts/fetch_upstream_configs.py``, run by ``make test``);
the datasets are small generated images laid out as MMDetection's configs expect them
(``data/coco/annotations/instances_train2017.json`` + ``train2017/``, ``data/VOCdevkit/VOC2007/...``),
with real COCO / VOC class names, so a config runs with only ``data_root`` changed.
"""

from __future__ import annotations

import json
import os
import os.path as osp
import shutil
from typing import Any

import pytest

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))

COCO_CLASSES = (
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat", "traffic light",
    "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat", "dog", "horse", "sheep", "cow",
    "elephant", "bear", "zebra", "giraffe", "backpack", "umbrella", "handbag", "tie", "suitcase", "frisbee",
    "skis", "snowboard", "sports ball", "kite", "baseball bat", "baseball glove", "skateboard", "surfboard",
    "tennis racket", "bottle", "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple",
    "sandwich", "orange", "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair", "couch",
    "potted plant", "bed", "dining table", "toilet", "tv", "laptop", "mouse", "remote", "keyboard",
    "cell phone", "microwave", "oven", "toaster", "sink", "refrigerator", "book", "clock", "vase",
    "scissors", "teddy bear", "hair drier", "toothbrush",
)
# COCO's category ids skip some numbers; keep the real ids so a config's ann_file looks like COCO's.
COCO_IDS = (1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 27, 28,
            31, 32, 33, 34, 35, 36, 37, 38, 39, 40, 41, 42, 43, 44, 46, 47, 48, 49, 50, 51, 52, 53, 54, 55,
            56, 57, 58, 59, 60, 61, 62, 63, 64, 65, 67, 70, 72, 73, 74, 75, 76, 77, 78, 79, 80, 81, 82, 84,
            85, 86, 87, 88, 89, 90)
VOC_CLASSES = ("aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
               "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train",
               "tvmonitor")
# The three generated shapes stand for these classes.
SHAPES_AS_COCO = ("person", "car", "dog")
SHAPES_AS_VOC = ("person", "car", "dog")


def upstream_configs(version: str) -> str:
    """``configs/`` of the released MMDetection ``version`` ('3.3.0' or '2.28.2')."""
    root = os.environ.get("KILN_UPSTREAM_CONFIGS", osp.join(REPO, ".venv", "upstream"))
    path = osp.join(root, f"mmdet-{version}", "configs")
    if not osp.isdir(path):
        pytest.fail(f"{path} is missing: run `make test` (it fetches MMDetection's released config trees) "
                    f"or `python scripts/fetch_upstream_configs.py --dest {root}`.")
    return path


def _shapes(root: str, split: str, num_images: int, size: int, seed: int) -> tuple[dict, str]:
    from kiln.data.datasets import generate_shapes_dataset

    paths = generate_shapes_dataset(osp.join(root, ".shapes"), num_images=num_images, image_size=size,
                                    seed=seed, split=split)
    with open(paths["ann_file"], encoding="utf-8") as f:
        return json.load(f), paths["img_prefix"]


def make_mini_coco(data_root: str, *, num_train: int = 8, num_val: int = 4, size: int = 96,
                   seed: int = 0) -> str:
    """``data_root/{annotations/instances_{train,val}2017.json, train2017/, val2017/}`` with COCO's 80
    categories (generated shapes labelled person/car/dog). Returns ``data_root`` with a trailing slash."""
    os.makedirs(osp.join(data_root, "annotations"), exist_ok=True)
    categories = [dict(id=i, name=n, supercategory="none") for i, n in zip(COCO_IDS, COCO_CLASSES)]
    to_coco = {k + 1: COCO_IDS[COCO_CLASSES.index(n)] for k, n in enumerate(SHAPES_AS_COCO)}
    for split, num in (("train", num_train), ("val", num_val)):
        coco, img_dir = _shapes(data_root, split, num, size, seed)
        out_dir = osp.join(data_root, f"{split}2017")
        os.makedirs(out_dir, exist_ok=True)
        for im in coco["images"]:
            shutil.copy(osp.join(img_dir, im["file_name"]), osp.join(out_dir, im["file_name"]))
        for ann in coco["annotations"]:
            ann["category_id"] = to_coco[ann["category_id"]]
        coco["categories"] = categories
        with open(osp.join(data_root, "annotations", f"instances_{split}2017.json"), "w") as f:
            json.dump(coco, f)
    return data_root.rstrip("/") + "/"


def make_mini_proposals(data_root: str, layout: str = "detectron2", seed: int = 0) -> None:
    """``data_root/proposals/rpn_r50_fpn_1x_{train,val}2017.pkl`` (the files MMDetection's Fast R-CNN configs
    read) for a :func:`make_mini_coco` tree: per image its ground-truth boxes jittered plus 20 random boxes,
    best first, in ``layout`` 'mmdet2' (list of N×5 arrays), 'mmdet3' (dict keyed by '<folder>/<file name>')
    or 'detectron2' (ids -> XYWH boxes in random order with objectness logits; it serves both MMDetection
    versions, since kiln matches it by image id)."""
    import pickle

    import numpy as np

    rng = np.random.default_rng(seed)
    os.makedirs(osp.join(data_root, "proposals"), exist_ok=True)
    for split in ("train", "val"):
        with open(osp.join(data_root, "annotations", f"instances_{split}2017.json"), encoding="utf-8") as f:
            coco = json.load(f)
        gts: dict[int, list] = {im["id"]: [] for im in coco["images"]}
        for ann in coco["annotations"]:
            x, y, w, h = ann["bbox"]
            gts[ann["image_id"]].append([x, y, x + w, y + h])
        size = max(max(im["width"], im["height"]) for im in coco["images"])
        props = []
        for im in coco["images"]:
            gt = np.asarray(gts[im["id"]], np.float32).reshape(-1, 4)
            xy = rng.uniform(0, size * 0.6, (20, 2))
            rand = np.concatenate([xy, xy + rng.uniform(size * 0.08, size * 0.4, (20, 2))], axis=1)
            boxes = np.concatenate([gt + rng.normal(0, 2, gt.shape), rand]).clip(0, size - 1)
            scores = np.linspace(0.99, 0.1, len(boxes))
            props.append((im, np.concatenate([boxes, scores[:, None]], axis=1).astype(np.float32)))
        if layout == "mmdet2":
            data: Any = [p for _, p in props]
        elif layout == "mmdet3":
            data = {f"{split}2017/{im['file_name']}": dict(bboxes=p[:, :4], scores=p[:, 4])
                    for im, p in props}
        elif layout == "detectron2":
            shuffled = [p[rng.permutation(len(p))] for _, p in props]
            data = dict(ids=[im["id"] for im, _ in props], bbox_mode=1,
                        boxes=[np.concatenate([p[:, :2], p[:, 2:4] - p[:, :2]], 1) for p in shuffled],
                        objectness_logits=[np.log(p[:, 4] / (1 - p[:, 4])) for p in shuffled])
        else:
            raise ValueError(f"layout={layout!r}: expected 'mmdet2', 'mmdet3' or 'detectron2'")
        with open(osp.join(data_root, "proposals", f"rpn_r50_fpn_1x_{split}2017.pkl"), "wb") as f:
            pickle.dump(data, f)


def _voc_xml(im: dict, objects: list[dict], folder: str) -> str:
    objs = []
    for ann in objects:
        x, y, w, h = ann["bbox"]
        objs.append(
            f"<object><name>{ann['name']}</name><pose>Unspecified</pose><truncated>0</truncated>"
            f"<difficult>{ann.get('difficult', 0)}</difficult><bndbox><xmin>{int(x) + 1}</xmin>"
            f"<ymin>{int(y) + 1}</ymin><xmax>{int(x + w)}</xmax><ymax>{int(y + h)}</ymax></bndbox></object>"
        )
    return (f"<annotation><folder>{folder}</folder><filename>{im['file_name']}</filename><size>"
            f"<width>{im['width']}</width><height>{im['height']}</height><depth>3</depth></size>"
            f"{''.join(objs)}</annotation>")


def make_mini_voc(data_root: str, *, years: tuple[str, ...] = ("2007", "2012"), num_train: int = 6,
                  num_test: int = 4, size: int = 96, seed: int = 0) -> str:
    """``data_root/VOC<year>/{Annotations, JPEGImages, ImageSets/Main/{trainval,test}.txt}`` with VOC's
    20 classes (generated shapes labelled person/car/dog; every third object ``difficult``). Returns
    ``data_root`` with a trailing slash (the configs' ``data/VOCdevkit/``)."""
    for year_idx, year in enumerate(years):
        base = osp.join(data_root, f"VOC{year}")
        for sub in ("Annotations", "JPEGImages", osp.join("ImageSets", "Main")):
            os.makedirs(osp.join(base, sub), exist_ok=True)
        for split, num in (("trainval", num_train), ("test", num_test)):
            coco, img_dir = _shapes(data_root, "train" if split == "trainval" else "val", num, size,
                                    seed + year_idx)
            by_image: dict[int, list[dict]] = {}
            for k, ann in enumerate(coco["annotations"]):
                ann = dict(ann, name=SHAPES_AS_VOC[ann["category_id"] - 1], difficult=int(k % 3 == 2))
                by_image.setdefault(ann["image_id"], []).append(ann)
            ids = []
            for im in coco["images"]:
                stem = f"{year}_{split}_{im['id']:06d}"
                ids.append(stem)
                im = dict(im, file_name=stem + ".jpg")
                src = osp.join(img_dir, f"{im['id']:06d}.jpg")
                shutil.copy(src, osp.join(base, "JPEGImages", stem + ".jpg"))
                with open(osp.join(base, "Annotations", stem + ".xml"), "w") as f:
                    f.write(_voc_xml(im, by_image.get(im["id"], []), f"VOC{year}"))
            with open(osp.join(base, "ImageSets", "Main", f"{split}.txt"), "w") as f:
                f.write("\n".join(ids) + "\n")
    return data_root.rstrip("/") + "/"


def small_overrides(*pairs: Any) -> list[str]:
    """Flatten ``('k', v)`` pairs into ``--cfg-options`` strings."""
    return [f"{k}={v}" for k, v in pairs]


def run_upstream(config: str, work_dir: str, options: list[str], *, cwd: str, test: bool = False,
                 timeout: int = 900) -> tuple[Any, Any]:
    """``kiln train CONFIG --cfg-options ...`` (then ``kiln test CONFIG WORK_DIR`` when ``test``) in
    subprocesses run in ``cwd`` (where ``data/`` lies, as MMDetection's configs expect). Returns the two
    CompletedProcess objects (the second ``None`` without ``test``); a failure shows the output's tail."""
    import subprocess
    import sys

    env = dict(os.environ, OMP_NUM_THREADS="1")

    def run(*args: str) -> Any:
        proc = subprocess.run([sys.executable, "-m", "kiln", *args], capture_output=True, text=True, env=env,
                              cwd=cwd, timeout=timeout)
        tail = f"{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
        assert proc.returncode == 0, f"kiln {args[0]} {config} failed:\n{tail}"
        return proc

    train = run("train", config, "--work-dir", work_dir, "--cfg-options", *options)
    tested = None
    if test:
        tested = run("test", config, work_dir, "--work-dir", work_dir, "--cfg-options", *options)
    return train, tested
