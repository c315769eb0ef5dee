"""Shared helpers for kiln.data tests: tiny real COCO/VOC files on disk."""

from __future__ import annotations

import json
import os.path as osp
from typing import Any

import cv2
import numpy as np
import pytest


def write_image(path: str, h: int, w: int, value: int = 128) -> None:
    """Write a real JPEG of size h×w."""
    img = np.full((h, w, 3), value, dtype=np.uint8)
    img[h // 4: h // 2, w // 4: w // 2] = 255 - value
    assert cv2.imwrite(path, img)


def make_coco(tmp_path: Any, images: list[dict] | None = None, annotations: list[dict] | None = None,
              categories: list[dict] | None = None, write_images: bool = True) -> tuple[str, str]:
    """Write a COCO json + JPEGs; returns (json_file, image_root)."""
    root = tmp_path / "coco"
    (root / "images").mkdir(parents=True, exist_ok=True)
    if images is None:
        images = [dict(id=1, file_name="a.jpg", height=40, width=60),
                  dict(id=2, file_name="b.jpg", height=50, width=30)]
    if categories is None:
        categories = [dict(id=7, name="cat"), dict(id=3, name="dog")]
    if annotations is None:
        annotations = [
            dict(id=1, image_id=1, category_id=7, bbox=[1, 2, 10, 20], area=200, iscrowd=0,
                 segmentation=[[1, 2, 11, 2, 11, 22, 1, 22]]),
            dict(id=2, image_id=1, category_id=3, bbox=[5, 5, 4, 4], area=16, iscrowd=1),
            dict(id=3, image_id=2, category_id=3, bbox=[0, 0, 10, 10], area=100, iscrowd=0),
        ]
    if write_images:
        for im in images:
            write_image(str(root / "images" / im["file_name"]), im["height"], im["width"])
    json_file = root / "ann.json"
    json_file.write_text(json.dumps(dict(images=images, annotations=annotations, categories=categories)))
    return str(json_file), str(root / "images")


@pytest.fixture(scope="session")
def shapes_small(tmp_path_factory: Any) -> dict[str, str]:
    """A generated shapes split of 24 images of 64×64 (shared by the session)."""
    from kiln.data.datasets import generate_shapes_dataset

    root = tmp_path_factory.mktemp("shapes")
    return generate_shapes_dataset(str(root), num_images=24, image_size=64, seed=0)


def voc_tree(tmp_path: Any, objects: dict[str, list[tuple[str, list[int], int]]]) -> str:
    """Write a VOC2007-like folder.

    ``objects[id] = [(class, [xmin, ymin, xmax, ymax] 1-based, difficult)]``.
    """
    root = tmp_path / "VOC2007"
    for sub in ("Annotations", "JPEGImages", "ImageSets/Main"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    for fid, objs in objects.items():
        write_image(str(root / "JPEGImages" / f"{fid}.jpg"), 30, 40)
        xml_objs = "".join(
            f"<object><name>{c}</name><difficult>{d}</difficult><bndbox><xmin>{b[0]}</xmin><ymin>{b[1]}</ymin>"
            f"<xmax>{b[2]}</xmax><ymax>{b[3]}</ymax></bndbox></object>" for c, b, d in objs)
        (root / "Annotations" / f"{fid}.xml").write_text(
            f"<annotation><filename>{fid}.jpg</filename><size><width>40</width><height>30</height>"
            f"<depth>3</depth></size>{xml_objs}</annotation>")
    (root / "ImageSets" / "Main" / "trainval.txt").write_text("\n".join(objects) + "\n")
    return str(root)


def listing(path: str) -> list[str]:
    """Sorted file names in ``path``."""
    import os

    return sorted(os.listdir(path)) if osp.isdir(path) else []
