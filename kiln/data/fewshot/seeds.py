"""K-shot seed files as TFA/DeFRCN publish them, read as they are, and a generator that writes the same
kind of files for any COCO- or VOC-format dataset.

Layouts (``ROOT`` = ``datasets/cocosplit`` or ``datasets/vocsplit``; seed 0 may also sit in ``ROOT``
itself, as TFA ships it):

* COCO: ``ROOT/seed{S}/full_box_{K}shot_{class}_trainval.json``: a COCO json per class holding the K
  annotations of that class (and their images);
* VOC: ``ROOT/seed{S}/box_{K}shot_{class}_train.txt``: image paths (``.../JPEGImages/<id>.jpg``), one per
  line; the objects of ``class`` in those images are the K shots (at most K are kept, a seeded choice
  when the listed images hold more).

Either kind is read into one COCO dict (categories = the given classes, ids 1..N in that order), which
kiln's COCO-format datasets then load.
"""

from __future__ import annotations

import json
import os
import os.path as osp
import random
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

__all__ = ["seed_dir", "read_coco_seed_files", "read_voc_seed_files", "sample_class_kshot",
           "generate_coco_seed_files", "generate_voc_seed_files"]


def seed_dir(root: str, seed: int) -> str:
    """``root/seed{seed}``; for seed 0 also ``root`` itself when it has no ``seed0`` folder (TFA's layout)."""
    path = osp.join(root, f"seed{seed}")
    if seed == 0 and not osp.isdir(path):
        return root
    return path


def _need(path: str, what: str) -> None:
    if not osp.isfile(path):
        raise FileNotFoundError(f"few-shot seed file '{path}' ({what}) does not exist; get DeFRCN's/TFA's "
                                f"published split files, or write them with kiln.data.fewshot."
                                f"generate_coco_seed_files / generate_voc_seed_files (`kiln fewshot` does "
                                f"for a COCO-format dataset)")


def read_coco_seed_files(root: str, classes: Sequence[str], shot: int, seed: int,
                         image_root: str = "") -> dict[str, Any]:
    """Merge ``full_box_{shot}shot_{class}_trainval.json`` of every class into one COCO dict.

    Category ids are renumbered 1..N in ``classes`` order (looked up by name); ``file_name`` gets
    ``image_root`` prepended when given.
    """
    folder = seed_dir(root, seed)
    images: dict[Any, dict] = {}
    anns: dict[Any, dict] = {}
    for idx, cls in enumerate(classes):
        path = osp.join(folder, f"full_box_{shot}shot_{cls}_trainval.json")
        _need(path, f"{shot}-shot class '{cls}', seed {seed}")
        with open(path) as f:
            data = json.load(f)
        ids = {c["id"] for c in data.get("categories", []) if c["name"] == cls}
        for im in data["images"]:
            images.setdefault(im["id"], dict(im, file_name=osp.join(image_root, im["file_name"])))
        for a in data["annotations"]:
            if ids and a["category_id"] not in ids:
                continue  # a file holding other classes' boxes too: keep its own class only
            anns[(a["image_id"], a.get("id", len(anns)), idx)] = dict(a, category_id=idx + 1)
    out_anns = []
    for n, a in enumerate(anns.values(), start=1):
        out_anns.append(dict(a, id=n))
    used = {a["image_id"] for a in out_anns}
    return {"images": [im for k, im in images.items() if k in used], "annotations": out_anns,
            "categories": [{"id": i + 1, "name": c} for i, c in enumerate(classes)]}


def read_voc_seed_files(root: str, classes: Sequence[str], shot: int, seed: int,
                        voc_root: str) -> dict[str, Any]:
    """Read ``box_{shot}shot_{class}_train.txt`` of every class into one COCO dict.

    Each listed image is looked up as ``voc_root/VOC2012/...`` when its id has an underscore (VOC2012's
    ``2008_000123``), else ``voc_root/VOC2007/...``, as DeFRCN does; only the objects of the file's class
    are kept, at most ``shot`` per class (a choice seeded by ``seed`` when the images hold more).
    """
    from kiln.data.datasets.pascal_voc import parse_voc_xml

    folder = seed_dir(root, seed)
    rng = random.Random(seed)
    images: dict[str, dict] = {}
    anns: list[dict] = []
    for idx, cls in enumerate(classes):
        path = osp.join(folder, f"box_{shot}shot_{cls}_train.txt")
        _need(path, f"{shot}-shot class '{cls}', seed {seed}")
        with open(path) as f:
            fileids = [osp.splitext(osp.basename(line.strip()))[0] for line in f if line.strip()]
        objs = []
        for fid in fileids:
            year_dir = osp.join(voc_root, "VOC2012" if "_" in fid else "VOC2007")
            parsed = parse_voc_xml(osp.join(year_dir, "Annotations", fid + ".xml"), [cls], skip_unknown=True)
            images.setdefault(fid, {"id": fid, "file_name": osp.join(year_dir, "JPEGImages", fid + ".jpg"),
                                    "height": parsed["height"], "width": parsed["width"]})
            objs += [(fid, o["bbox"]) for o in parsed["objects"]]
        if len(objs) > shot:
            objs = rng.sample(objs, shot)
        for fid, (x0, y0, x1, y1) in objs:
            anns.append({"id": len(anns) + 1, "image_id": fid, "category_id": idx + 1, "iscrowd": 0,
                         "bbox": [x0, y0, x1 - x0, y1 - y0], "area": (x1 - x0) * (y1 - y0)})
    used = {a["image_id"] for a in anns}
    ids = {fid: n for n, fid in enumerate(sorted(used), start=1)}
    return {"images": [dict(im, id=ids[k]) for k, im in images.items() if k in used],
            "annotations": [dict(a, image_id=ids[a["image_id"]]) for a in anns],
            "categories": [{"id": i + 1, "name": c} for i, c in enumerate(classes)]}


def sample_class_kshot(coco: dict[str, Any], category_id: int, shot: int, seed: int) -> dict[str, Any]:
    """TFA-style K-shot sample of one class: images holding it are visited in a seeded order and taken
    while the class's box count stays <= ``shot``; only that class's (non-crowd) boxes are kept."""
    if shot < 1:
        raise ValueError(f"shot must be >= 1, got {shot}")
    per_img: dict[Any, list[dict]] = defaultdict(list)
    for a in coco["annotations"]:
        if a["category_id"] == category_id and not a.get("iscrowd", 0):
            per_img[a["image_id"]].append(a)
    order = sorted(per_img)
    random.Random(f"{seed}-{category_id}").shuffle(order)
    keep: list[dict] = []
    for img_id in order:
        if len(keep) + len(per_img[img_id]) > shot:
            continue
        keep += per_img[img_id]
        if len(keep) == shot:
            break
    ids = {a["image_id"] for a in keep}
    return {"images": [im for im in coco["images"] if im["id"] in ids], "annotations": keep,
            "categories": [c for c in coco["categories"] if c["id"] == category_id]}


def generate_coco_seed_files(ann_file: str, out_root: str, shots: Sequence[int], seeds: Sequence[int],
                             classes: Sequence[str] | None = None) -> list[str]:
    """Write ``out_root/seed{S}/full_box_{K}shot_{class}_trainval.json`` for every class, shot and seed
    from a COCO instances json; return the files written."""
    with open(ann_file) as f:
        coco = json.load(f)
    cats = {c["name"]: c["id"] for c in coco["categories"]}
    names = list(classes or cats)
    missing = [c for c in names if c not in cats]
    if missing:
        raise ValueError(f"classes {missing} are not categories of '{ann_file}' ({sorted(cats)})")
    written = []
    for seed in seeds:
        folder = osp.join(out_root, f"seed{seed}")
        os.makedirs(folder, exist_ok=True)
        for shot in shots:
            for name in names:
                path = osp.join(folder, f"full_box_{shot}shot_{name}_trainval.json")
                tmp = path + ".tmp"
                with open(tmp, "w") as f:
                    json.dump(sample_class_kshot(coco, cats[name], shot, seed), f)
                os.replace(tmp, path)
                written.append(path)
    return written


def generate_voc_seed_files(dirname: str, split: str, out_root: str, shots: Sequence[int],
                            seeds: Sequence[int], classes: Sequence[str]) -> list[str]:
    """Write ``out_root/seed{S}/box_{K}shot_{class}_train.txt`` for a VOC-format folder (``dirname`` with
    ``Annotations/``, ``JPEGImages/``, ``ImageSets/Main/{split}.txt``); return the files written."""
    from kiln.data.datasets.pascal_voc import parse_voc_xml, read_voc_split

    ids = read_voc_split(osp.join(dirname, "ImageSets", "Main", split + ".txt"))
    anns, n = [], 0
    for fid in ids:
        xml = osp.join(dirname, "Annotations", fid + ".xml")
        parsed = parse_voc_xml(xml, list(classes), skip_unknown=True)
        for o in parsed["objects"]:
            if not o["difficult"]:
                n += 1
                anns.append({"id": n, "image_id": fid, "category_id": o["label"] + 1})
    coco = {"images": [{"id": fid} for fid in ids], "annotations": anns,
            "categories": [{"id": i + 1, "name": c} for i, c in enumerate(classes)]}
    written = []
    for seed in seeds:
        folder = osp.join(out_root, f"seed{seed}")
        os.makedirs(folder, exist_ok=True)
        for shot in shots:
            for i, name in enumerate(classes):
                picked = sample_class_kshot(coco, i + 1, shot, seed)["images"]
                path = osp.join(folder, f"box_{shot}shot_{name}_train.txt")
                with open(path, "w") as f:
                    f.writelines(osp.join(dirname, "JPEGImages", im["id"] + ".jpg") + "\n" for im in picked)
                written.append(path)
    return written
