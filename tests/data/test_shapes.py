"""The generated shapes dataset."""

import json
import os
import threading

import cv2
import numpy as np
import pytest
from data_helpers import listing

from kiln.data import DatasetCatalog, MetadataCatalog
from kiln.data.datasets import SHAPE_CLASSES, generate_shapes_dataset, shapes_paths
from kiln.registry import DATASETS
from kiln.structures.polygon_ops import polygon_area, segmentation_to_bitmask


def test_writes_real_images_and_a_valid_coco_json(tmp_path):
    p = generate_shapes_dataset(str(tmp_path), num_images=6, image_size=(48, 64), seed=1)
    coco = json.loads(open(p["ann_file"]).read())
    assert [c["name"] for c in coco["categories"]] == list(SHAPE_CLASSES)
    assert len(coco["images"]) == 6 and len(coco["annotations"]) >= 6
    for im in coco["images"]:
        img = cv2.imread(os.path.join(p["img_prefix"], im["file_name"]))
        assert img.shape == (48, 64, 3)
    for a in coco["annotations"]:
        x, y, w, h = a["bbox"]
        assert w >= 4 and h >= 4 and x >= 0 and y >= 0 and x + w <= 64 and y + h <= 48


def _drawn_pixels(img, mask):
    """The pixels of the colour a shape was drawn in (no noise, PNG): the most common one in its mask."""
    colours, counts = np.unique(img[mask].reshape(-1, 3), axis=0, return_counts=True)
    return (img == colours[counts.argmax()]).all(-1)


def test_boxes_are_tight_and_polygons_cover_the_drawn_shapes(tmp_path):
    # No noise, PNG: a shape's pixels have exactly its colour.
    p = generate_shapes_dataset(
        str(tmp_path), num_images=12, image_size=64, seed=3, noise_std=0.0, image_format="png", max_objects=1
    )
    coco = json.loads(open(p["ann_file"]).read())
    ious = []
    for a in coco["annotations"]:
        img = cv2.imread(os.path.join(p["img_prefix"], f"{a['image_id']:06d}.png")).astype(int)
        mask = segmentation_to_bitmask(a["segmentation"], 64, 64).astype(bool)
        drawn = _drawn_pixels(img, mask)
        ys, xs = np.nonzero(drawn)
        x, y, w, h = (int(v) for v in a["bbox"])
        assert (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1) == (x, y, x + w, y + h)
        ious.append((mask & drawn).sum() / (mask | drawn).sum())
        assert a["area"] == pytest.approx(sum(polygon_area(np.asarray(q)) for q in a["segmentation"]))
    # the polygon is the drawn region; only edge pixels may go either way
    assert min(ious) > 0.9 and np.mean(ious) > 0.97


def test_polygons_leave_out_what_later_shapes_cover(tmp_path):
    p = generate_shapes_dataset(str(tmp_path), num_images=30, image_size=96, seed=4, noise_std=0.0,
                                image_format="png", min_objects=3, max_objects=4, max_overlap=0.45)
    coco = json.loads(open(p["ann_file"]).read())
    by_image = {}
    for a in coco["annotations"]:
        by_image.setdefault(a["image_id"], []).append(a)
    cut = 0
    for image_id, anns in by_image.items():
        img = cv2.imread(os.path.join(p["img_prefix"], f"{image_id:06d}.png")).astype(int)
        masks = [segmentation_to_bitmask(a["segmentation"], 96, 96).astype(bool) for a in anns]
        for i, (a, m) in enumerate(zip(anns, masks)):
            drawn = _drawn_pixels(img, m)
            assert (m & drawn).sum() / (m | drawn).sum() > 0.85  # the visible part, not the whole shape
            for other in masks[i + 1:]:
                assert (m & other).sum() <= 0.02 * min(m.sum(), other.sum())  # visible parts are disjoint
            cut += len(a["segmentation"]) > 1
    assert cut > 0  # some shapes were partly covered, so their polygons have several parts


def test_same_parameters_give_identical_data_and_use_the_cache(tmp_path):
    a = generate_shapes_dataset(str(tmp_path / "a"), num_images=3, image_size=32, seed=5)
    b = generate_shapes_dataset(str(tmp_path / "b"), num_images=3, image_size=32, seed=5)
    for name in listing(a["img_prefix"]):
        assert (
            open(os.path.join(a["img_prefix"], name), "rb").read()
            == open(os.path.join(b["img_prefix"], name), "rb").read()
        )
    mtime = os.path.getmtime(a["ann_file"])
    assert generate_shapes_dataset(str(tmp_path / "a"), num_images=3, image_size=32, seed=5) == a
    assert os.path.getmtime(a["ann_file"]) == mtime


def test_cache_is_keyed_by_parameters(tmp_path):
    a = generate_shapes_dataset(str(tmp_path), num_images=3, image_size=32, seed=5)
    assert generate_shapes_dataset(str(tmp_path), num_images=3, image_size=32, seed=6)["root"] != a["root"]
    assert (
        generate_shapes_dataset(str(tmp_path), num_images=3, image_size=32, seed=5, split="val")["root"]
        != a["root"]
    )
    assert (
        generate_shapes_dataset(str(tmp_path), num_images=3, image_size=32, seed=5, max_objects=2)["root"]
        != a["root"]
    )


def test_concurrent_writers_leave_one_complete_copy(tmp_path):
    results, errors = [], []

    def run():
        try:
            results.append(generate_shapes_dataset(str(tmp_path), num_images=20, image_size=32, seed=2))
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len({r["root"] for r in results}) == 1
    assert len(listing(results[0]["img_prefix"])) == 20
    assert [n for n in listing(str(tmp_path)) if n.startswith(".shapes-tmp")] == []


def test_default_root_comes_from_kiln_data_env(tmp_path, monkeypatch):
    monkeypatch.setenv("KILN_DATA", str(tmp_path))
    p = shapes_paths("val", num_images=2, image_size=32)
    assert p["ann_file"].startswith(str(tmp_path)) and os.path.isfile(p["ann_file"])


def test_builtin_catalog_entries_generate_on_first_use(tmp_path, monkeypatch):
    monkeypatch.setenv("KILN_DATA", str(tmp_path))
    assert MetadataCatalog.get("shapes_val").thing_classes == list(SHAPE_CLASSES)
    dicts = DatasetCatalog.get("shapes_val")
    assert len(dicts) == 200 and dicts[0]["file_name"].startswith(str(tmp_path))
    assert MetadataCatalog.get("shapes_val").json_file.startswith(str(tmp_path))


def test_shapes_dataset_builds_from_config(tmp_path):
    ds = DATASETS.build(
        dict(
            type="ShapesDataset",
            split="train",
            num_images=5,
            image_size=40,
            root=str(tmp_path),
            pipeline=[dict(type="LoadImageFromFile"), dict(type="LoadAnnotations")],
        )
    )
    out = ds[0]
    assert ds.CLASSES == SHAPE_CLASSES and out["img"].shape == (40, 40, 3) and len(out["gt_bboxes"]) >= 1


def test_bad_generator_arguments_are_explained(tmp_path):
    with pytest.raises(ValueError, match="unknown classes \\['star'\\]"):
        generate_shapes_dataset(str(tmp_path), num_images=1, classes=("circle", "star"))
    with pytest.raises(ValueError, match="image_format"):
        generate_shapes_dataset(str(tmp_path), num_images=1, image_format="bmp")
