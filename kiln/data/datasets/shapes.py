"""The generated **shapes** dataset: kiln's built-in data, made on demand, no download.

``generate_shapes_dataset`` draws circles, squares and triangles of random size, colour and
rotation, partly overlapping, on textured noisy backgrounds, writes real image files plus a COCO
instances json, and caches the result in a folder keyed by every generation parameter. Each
annotation's ``segmentation`` is the exact geometry of what was drawn: the filled polygon, cut to
the image and minus the shapes drawn over it (disjoint convex polygon parts), so its rasterized mask
is the shape's visible pixels (up to edge pixels, which OpenCV and pycocotools rasterize slightly
differently); ``bbox`` is the drawn shape's pixel box (cut by the image border only) and ``area`` the
visible area. Output is a pure function of the parameters (seeded per image), so two machines produce
identical data.

Layout of one cached split::

    <root>/shapes-<split>-<n>x<size>-seed<seed>-<hash>/
        annotations.json        # COCO instances; categories circle=1, square=2, triangle=3
        images/000001.jpg ...

Concurrent writers are safe: each generates into a private temporary folder and renames it into
place; a writer that loses the race discards its copy and uses the winner's.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import math
import os
import os.path as osp
import shutil
import tempfile
from collections.abc import Sequence
from typing import Any

import numpy as np

from kiln.registry import DATASETS
from kiln.structures.polygon_ops import clip_polygon, polygon_area, subtract_convex

from ..catalog import DatasetCatalog, MetadataCatalog, add_lazy_registrar
from .coco import load_coco_json
from .coco_dataset import CocoDataset

logger = logging.getLogger(__name__)

__all__ = [
    "SHAPE_CLASSES",
    "ShapesDataset",
    "default_data_root",
    "generate_shapes_dataset",
    "register_shapes",
    "shapes_paths",
]

SHAPE_CLASSES = ("circle", "square", "triangle")
DEFAULT_NUM_IMAGES = {"train": 1000, "val": 200}
_SPLIT_IDS = {"train": 0, "val": 1, "test": 2}
# Bump when the drawing code changes, so old caches are not reused for new data.
_GENERATOR_VERSION = 4


def default_data_root() -> str:
    """``$KILN_DATA`` if set, else ``~/.cache/kiln/data``."""
    return os.environ.get("KILN_DATA") or osp.join(osp.expanduser("~"), ".cache", "kiln", "data")


@functools.lru_cache(maxsize=4)
def _grid(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    return yy, xx


def _background(rng: np.random.Generator, h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """A textured background (float32 H×W×3) and its mean colour."""
    base = rng.uniform(0, 255, size=3).astype(np.float32)
    kind = rng.integers(0, 3)
    yy, xx = _grid(h, w)
    if kind == 0:  # linear gradient
        angle = rng.uniform(0, 2 * math.pi)
        ramp = (np.cos(angle) * xx / w + np.sin(angle) * yy / h)[..., None]
        img = base + ramp * rng.uniform(-60, 60, size=3).astype(np.float32)
    elif kind == 1:  # stripes
        period = rng.uniform(6, 24)
        angle = rng.uniform(0, math.pi)
        wave = np.sin((np.cos(angle) * xx + np.sin(angle) * yy) * 2 * math.pi / period)[..., None]
        img = base + wave * rng.uniform(10, 35, size=3).astype(np.float32)
    else:  # blotches: upsampled coarse noise
        import cv2

        coarse = rng.normal(0, 30, size=(max(2, h // 16), max(2, w // 16), 3)).astype(np.float32)
        img = base + cv2.resize(coarse, (w, h), interpolation=cv2.INTER_CUBIC)
    return img, base


def _shape_points(cls: str, cx: float, cy: float, size: float, angle: float) -> np.ndarray:
    """Polygon vertices (K×2 float) of a shape of extent ``size`` centred at (cx, cy)."""
    if cls == "circle":
        k = 32
        r = size / 2
        t = np.linspace(0, 2 * math.pi, k, endpoint=False)
        return np.stack([cx + r * np.cos(t), cy + r * np.sin(t)], axis=1)
    if cls == "square":
        half = size / 2
        corners = np.array([[-half, -half], [half, -half], [half, half], [-half, half]])
    elif cls == "triangle":
        r = size / math.sqrt(3)  # circumradius of an equilateral triangle with side `size`
        t = np.array([-math.pi / 2, math.pi / 6, 5 * math.pi / 6])
        corners = np.stack([r * np.cos(t), r * np.sin(t) + r / 4], axis=1)
    else:
        raise ValueError(f"Unknown shape class '{cls}'; available: {SHAPE_CLASSES}.")
    c, s = math.cos(angle), math.sin(angle)
    rot = corners @ np.array([[c, s], [-s, c]])
    return rot + np.array([cx, cy])


def _overlap(a: Sequence[float], b: Sequence[float]) -> float:
    """The larger of IoU and intersection over the smaller box (catches a shape hidden in another)."""
    iw = min(a[2], b[2]) - max(a[0], b[0])
    ih = min(a[3], b[3]) - max(a[1], b[1])
    if iw <= 0 or ih <= 0:
        return 0.0
    inter = iw * ih
    area_a = (a[2] - a[0]) * (a[3] - a[1])
    area_b = (b[2] - b[0]) * (b[3] - b[1])
    return max(inter / (area_a + area_b - inter), 0.5 * inter / min(area_a, area_b))


def _render_image(rng: np.random.Generator, h: int, w: int, classes: Sequence[str], min_objects: int,
                  max_objects: int, size_range: tuple[float, float], max_overlap: float,
                  noise_std: float) -> tuple[np.ndarray, list[dict[str, Any]]]:
    import cv2

    img, bg = _background(rng, h, w)
    objects: list[dict[str, Any]] = []
    boxes: list[list[float]] = []
    drawn: list[np.ndarray] = []  # each shape's polygon, in drawing order
    n = int(rng.integers(min_objects, max_objects + 1))
    short = min(h, w)
    for _ in range(n):
        for _attempt in range(20):
            label = int(rng.integers(0, len(classes)))
            size = rng.uniform(*size_range) * short
            cx = rng.uniform(size * 0.4, w - size * 0.4)
            cy = rng.uniform(size * 0.4, h - size * 0.4)
            spin = math.pi if classes[label] == "triangle" else 0.35
            angle = rng.uniform(-spin, spin)
            pts = np.round(_shape_points(classes[label], cx, cy, size, angle)).astype(np.int32)
            # fillPoly covers min..max inclusive, so the box's far edge is max + 1; shapes may be cut
            # by the image border, the box is the visible part.
            box = [float(max(pts[:, 0].min(), 0)), float(max(pts[:, 1].min(), 0)),
                   float(min(pts[:, 0].max() + 1, w)), float(min(pts[:, 1].max() + 1, h))]
            if box[2] - box[0] < 4 or box[3] - box[1] < 4:
                continue
            if any(_overlap(box, b) > max_overlap for b in boxes):
                continue
            break
        else:
            continue  # no room for another shape; fewer objects in this image
        # A colour clearly different from the background, so every shape is visible.
        for _c in range(10):
            colour = rng.uniform(0, 255, size=3)
            if np.abs(colour - bg).sum() > 150:
                break
        cv2.fillPoly(img, [pts], colour.tolist())
        boxes.append(box)
        drawn.append(_as_drawn(pts))
        x0, y0, x1, y1 = box
        objects.append(dict(category_id=label + 1, bbox=[x0, y0, x1 - x0, y1 - y0], iscrowd=0))
    for i, obj in enumerate(objects):
        parts = _visible_parts(drawn[i], drawn[i + 1:], h, w)
        obj["segmentation"] = [p.tolist() for p in parts]
        obj["area"] = float(sum(polygon_area(p) for p in parts))
    img += rng.standard_normal(size=img.shape, dtype=np.float32) * np.float32(noise_std)
    return np.clip(img, 0, 255).astype(np.uint8), objects


def _as_drawn(pts: np.ndarray) -> np.ndarray:
    """The region ``cv2.fillPoly`` paints for integer vertices ``pts``, as a polygon in continuous
    pixel coordinates: a vertex ``v`` is pixel ``v``'s centre ``v + 0.5``, and the fill includes the
    pixels its edges pass through, i.e. the polygon grown by half a pixel (edges moved outwards).

    The shapes are convex; rounding their vertices may leave repeated or collinear points, so the
    convex hull of the vertices is grown."""
    import cv2

    hull = cv2.convexHull(pts.astype(np.int32).reshape(-1, 1, 2)).reshape(-1, 2).astype(np.float64) + 0.5
    x, y = hull[:, 0], hull[:, 1]
    ccw = (np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))) > 0
    edges = np.roll(hull, -1, axis=0) - hull
    normals = np.stack([edges[:, 1], -edges[:, 0]], axis=1) * (1.0 if ccw else -1.0)
    normals /= np.linalg.norm(normals, axis=1, keepdims=True)
    offsets = np.einsum("ij,ij->i", normals, hull) + 0.5
    out = []
    for k in range(len(hull)):  # vertex k joins the moved edges k-1 and k
        a = np.stack([normals[k - 1], normals[k]])
        if abs(np.linalg.det(a)) < 1e-9:  # collinear edges: the vertex just moves outwards
            out.append(hull[k] + 0.5 * normals[k])
        else:
            out.append(np.linalg.solve(a, [offsets[k - 1], offsets[k]]))
    return np.asarray(out)


def _visible_parts(shape: np.ndarray, later: Sequence[np.ndarray], h: int, w: int) -> list[np.ndarray]:
    """The exact visible region of a drawn shape as COCO polygon parts: the shape cut to the image,
    minus every shape drawn after it (all shapes are convex, so the parts are disjoint convex
    polygons).

    ``shape`` is in continuous pixel coordinates: OpenCV draws a vertex ``v`` at pixel ``v``, whose
    centre is ``v + 0.5``, so the rasterized polygon covers the pixels the drawing covered.
    """
    parts = [clip_polygon(shape.reshape(-1), 0, 0, w, h)]
    for other in later:
        parts = [piece for part in parts for piece in subtract_convex(part, other)]
    return [p for p in parts if p.size >= 6 and polygon_area(p) > 1e-6]


def _params(split: str, num_images: int, image_size: int | Sequence[int], seed: int, classes: Sequence[str],
            min_objects: int, max_objects: int, size_range: Sequence[float], max_overlap: float,
            noise_std: float, image_format: str) -> dict[str, Any]:
    if isinstance(image_size, int):
        hw = [image_size, image_size]
    else:
        hw = [int(v) for v in image_size]
    return dict(version=_GENERATOR_VERSION, split=split, num_images=int(num_images), height=hw[0],
                width=hw[1], seed=int(seed), classes=list(classes), min_objects=int(min_objects),
                max_objects=int(max_objects), size_range=[float(v) for v in size_range],
                max_overlap=float(max_overlap), noise_std=float(noise_std), image_format=image_format)


def _cache_dir(root: str, p: dict[str, Any]) -> str:
    digest = hashlib.sha1(json.dumps(p, sort_keys=True).encode()).hexdigest()[:10]
    return osp.join(root, f"shapes-{p['split']}-{p['num_images']}x{p['height']}x{p['width']}-seed{p['seed']}-"
                          f"{digest}")


def generate_shapes_dataset(
    root: str | None = None,
    num_images: int | None = None,
    image_size: int | Sequence[int] = 128,
    seed: int = 0,
    *,
    split: str = "train",
    classes: Sequence[str] = SHAPE_CLASSES,
    min_objects: int = 1,
    max_objects: int = 4,
    size_range: Sequence[float] = (0.15, 0.45),
    max_overlap: float = 0.3,
    noise_std: float = 8.0,
    image_format: str = "jpg",
) -> dict[str, str]:
    """Generate (or reuse from the cache) one split of the shapes dataset.

    Args:
        root: cache folder; default :func:`default_data_root` (``$KILN_DATA`` or ``~/.cache/kiln/data``).
        num_images: images in the split (default 1000 for train, 200 otherwise).
        image_size: ``S`` or ``(H, W)`` in pixels.
        seed: with ``split``, determines every pixel; train and val of one seed differ.
        classes: subset/order of ``('circle', 'square', 'triangle')``; category ids are 1-based in order.
        min_objects, max_objects: shapes per image (fewer if the image is crowded).
        size_range: shape extent as a fraction of the shorter image side.
        max_overlap: bound on the overlap of two shapes' boxes: both their IoU and half their
            intersection over the smaller box stay below it (partial overlaps, no hidden shapes).
        noise_std: pixel noise added over everything.
        image_format: ``'jpg'`` or ``'png'``.

    Returns:
        ``dict(root=..., ann_file=.../annotations.json, img_prefix=.../images)``.

    Example::

        >>> paths = generate_shapes_dataset('/tmp/data', num_images=10, image_size=64)   # doctest: +SKIP
        >>> CocoDataset(paths['ann_file'], img_prefix=paths['img_prefix'], pipeline=[...])   # doctest: +SKIP
    """
    import cv2

    if image_format not in ("jpg", "png"):
        raise ValueError(f"generate_shapes_dataset: image_format must be 'jpg' or 'png', "
                         f"got {image_format!r}.")
    bad = [c for c in classes if c not in SHAPE_CLASSES]
    if bad or len(classes) == 0:
        raise ValueError(f"generate_shapes_dataset: unknown classes {bad}; choose from {SHAPE_CLASSES}.")
    if not 1 <= min_objects <= max_objects:
        raise ValueError(f"generate_shapes_dataset: need 1 <= min_objects <= max_objects, got "
                         f"{min_objects}, {max_objects}.")
    if num_images is None:
        num_images = DEFAULT_NUM_IMAGES.get(split, 200)
    if num_images < 1:
        raise ValueError(f"generate_shapes_dataset: num_images must be >= 1, got {num_images}.")
    root = os.fspath(root) if root is not None else default_data_root()
    p = _params(split, num_images, image_size, seed, classes, min_objects, max_objects, size_range,
                max_overlap, noise_std, image_format)
    final = _cache_dir(root, p)
    out = dict(root=final, ann_file=osp.join(final, "annotations.json"), img_prefix=osp.join(final, "images"))
    if osp.isfile(out["ann_file"]):
        return out

    os.makedirs(root, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=".shapes-tmp-", dir=root)
    try:
        os.makedirs(osp.join(tmp, "images"))
        h, w = p["height"], p["width"]
        split_id = _SPLIT_IDS.get(split, int(hashlib.sha1(split.encode()).hexdigest()[:6], 16))
        images, annotations = [], []
        ext = "." + image_format
        params = [cv2.IMWRITE_JPEG_QUALITY, 95] if image_format == "jpg" else [cv2.IMWRITE_PNG_COMPRESSION, 1]
        for i in range(num_images):
            rng = np.random.default_rng([int(seed), split_id, i])
            img, objs = _render_image(rng, h, w, list(classes), min_objects, max_objects,
                                      (p["size_range"][0], p["size_range"][1]), max_overlap, noise_std)
            name = f"{i + 1:06d}{ext}"
            if not cv2.imwrite(osp.join(tmp, "images", name), img, params):
                raise OSError(f"generate_shapes_dataset: could not write {osp.join(tmp, 'images', name)}.")
            images.append(dict(id=i + 1, file_name=name, height=h, width=w))
            for obj in objs:
                annotations.append(dict(id=len(annotations) + 1, image_id=i + 1, **obj))
        coco = dict(
            info=dict(description="kiln generated shapes", params=p),
            images=images,
            annotations=annotations,
            categories=[dict(id=k + 1, name=c, supercategory="shape") for k, c in enumerate(classes)],
        )
        with open(osp.join(tmp, "annotations.json"), "w", encoding="utf-8") as f:
            json.dump(coco, f)
        try:
            os.rename(tmp, final)
        except OSError:
            if not osp.isfile(out["ann_file"]):
                raise
            # Another process finished first; its data is identical, keep it.
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            logger.info("Generated %d shapes images (%s) in %s", num_images, split, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def shapes_paths(split: str = "train", **kwargs: Any) -> dict[str, str]:
    """``dict(ann_file, img_prefix, root)`` of a shapes split (generated if needed), for configs."""
    return generate_shapes_dataset(split=split, **kwargs)


@DATASETS.register_module()
class ShapesDataset(CocoDataset):
    """``CocoDataset`` over a generated shapes split; builds from config without any files.

    Example config::

        dict(type='ShapesDataset', split='train', num_images=500, image_size=128, pipeline=train_pipeline)

    Args:
        split: ``'train'``, ``'val'`` or another name (a different random stream).
        num_images, image_size, seed, root: as in :func:`generate_shapes_dataset`.
        generator_args: more keyword arguments for :func:`generate_shapes_dataset`.
        classes: the shapes to draw and their label order (default all three).
        pipeline, test_mode, filter_empty_gt, min_size: as in ``CocoDataset``.
    """

    def __init__(self, split: str = "train", num_images: int | None = None,
                 image_size: int | Sequence[int] = 128, seed: int = 0, root: str | None = None,
                 generator_args: dict[str, Any] | None = None, pipeline: Sequence[Any] | None = None,
                 classes: Sequence[str] | None = None, test_mode: bool = False, filter_empty_gt: bool = True,
                 min_size: int | None = 32) -> None:
        gen_args = dict(generator_args or {})
        if classes is not None and "classes" not in gen_args:
            # Generate only the requested shapes, so labels follow `classes` and no image is empty.
            gen_args["classes"] = tuple(classes)
        paths = generate_shapes_dataset(root, num_images, image_size, seed, split=split, **gen_args)
        self.split = split
        self.paths = paths
        super().__init__(paths["ann_file"], pipeline, classes=classes, img_prefix=paths["img_prefix"],
                         test_mode=test_mode, filter_empty_gt=filter_empty_gt, min_size=min_size)


def register_shapes(name: str, split: str, root: str | None = None, **kwargs: Any) -> None:
    """Register a shapes split in the catalogs (generated on the first ``DatasetCatalog.get``)."""

    def load() -> list[dict[str, Any]]:
        paths = generate_shapes_dataset(root, split=split, **kwargs)
        meta = MetadataCatalog.get(name)
        # The cache folder may change (e.g. $KILN_DATA differs between calls); keep the newest paths.
        for key in ("json_file", "image_root"):
            meta.__dict__.pop(key, None)
        return load_coco_json(paths["ann_file"], paths["img_prefix"], name)

    DatasetCatalog.register(name, load)
    classes = list(kwargs.get("classes", SHAPE_CLASSES))
    MetadataCatalog.get(name).set(thing_classes=classes, evaluator_type="coco",
                                  thing_dataset_id_to_contiguous_id={i + 1: i for i in range(len(classes))})


def _register_builtin() -> None:
    for split in ("train", "val"):
        name = f"shapes_{split}"
        if name not in DatasetCatalog:
            register_shapes(name, split)


add_lazy_registrar(_register_builtin)  # on first catalog use, with the built-in Detectron2 names
