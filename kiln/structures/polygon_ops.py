"""Pure polygon helpers behind the mask structures: rasterization, clipping to a window, areas.

Polygons follow COCO: a flat ``(2k,)`` float array ``x0, y0, x1, y1, ...`` in continuous pixel
coordinates (pixel ``i`` covers ``[i, i + 1)``); one instance is a list of such parts whose union is
the object (COCO polygons cannot express holes).
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

__all__ = ["polygons_to_bitmask", "segmentation_to_bitmask", "valid_polygons", "clip_polygon",
           "clip_halfplane", "subtract_convex", "polygon_area", "as_polygon"]


def as_polygon(poly: Sequence[float] | np.ndarray, where: str = "polygon") -> np.ndarray:
    """Return ``poly`` as a flat float64 ``(2k,)`` array; refuse odd lengths and fewer than 3 points.

    ``where`` names the offending instance/part in the error (e.g. ``'instance 3, part 0'``).
    """
    arr = np.asarray(poly, dtype=np.float64).reshape(-1)
    if arr.size % 2 or arr.size < 6:
        raise ValueError(
            f"{where}: a polygon is a flat list x0, y0, x1, y1, ... of at least 3 points (6 numbers, an "
            f"even count); got {arr.size} numbers. Drop degenerate polygons from the annotation or store "
            "the instance as a bitmap mask.")
    return arr


def polygons_to_bitmask(polygons: Sequence[np.ndarray], height: int, width: int) -> np.ndarray:
    """Rasterize one instance (the union of its polygon parts) into a ``height x width`` bool mask.

    Uses pycocotools' rasterizer, as COCO's own annotations and both MMDetection and Detectron2 do, so
    masks agree pixel for pixel with theirs. Parts with fewer than 3 points cover nothing.
    """
    parts = [np.asarray(p, dtype=np.float64).reshape(-1) for p in polygons]
    # pycocotools reads a list whose first item has 4 numbers as boxes, so degenerate parts must go.
    parts = [p for p in parts if p.size >= 6]
    if not parts:
        return np.zeros((int(height), int(width)), dtype=bool)
    from pycocotools import mask as mask_utils

    rles = mask_utils.frPyObjects([p.tolist() for p in parts], int(height), int(width))
    with warnings.catch_warnings():
        # pycocotools' decode trips numpy 2's __array__(copy=) deprecation; harmless here.
        warnings.simplefilter("ignore", DeprecationWarning)
        return mask_utils.decode(mask_utils.merge(rles)).astype(bool)


def valid_polygons(segm: Sequence[Sequence[float]]) -> list[np.ndarray]:
    """The parts of a COCO polygon list that are polygons (an even count of at least 6 numbers), as
    MMDetection's and Detectron2's loaders keep them; the others cover no pixel."""
    parts = [np.asarray(p, dtype=np.float64).reshape(-1) for p in segm]
    return [p for p in parts if p.size >= 6 and p.size % 2 == 0]


def segmentation_to_bitmask(segm: Any, height: int, width: int) -> np.ndarray:
    """Decode one COCO ``segmentation`` into a ``height x width`` uint8 mask.

    Accepts the three COCO forms: a polygon list, an uncompressed RLE (``counts`` a list) and a
    compressed RLE (``counts`` a string). An RLE whose ``size`` is not ``[height, width]`` is refused:
    it belongs to another image size.
    """
    if isinstance(segm, (list, tuple)):
        return polygons_to_bitmask(valid_polygons(segm), height, width).astype(np.uint8)
    if not isinstance(segm, Mapping) or "counts" not in segm or "size" not in segm:
        raise ValueError(f"segmentation must be a polygon list or an RLE dict with 'counts' and 'size', got "
                         f"{type(segm).__name__}: {str(segm)[:80]}.")
    if [int(v) for v in segm["size"]] != [int(height), int(width)]:
        raise ValueError(f"RLE segmentation has size {list(segm['size'])} but the image is "
                         f"{[int(height), int(width)]} (h, w); the annotation belongs to another image size.")
    from pycocotools import mask as mask_utils

    rle = dict(segm)
    if isinstance(rle["counts"], list):
        rle = mask_utils.frPyObjects(rle, int(height), int(width))
    elif isinstance(rle["counts"], str):
        rle["counts"] = rle["counts"].encode("ascii")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # pycocotools vs numpy 2, harmless
        return mask_utils.decode(rle).astype(np.uint8)


def clip_halfplane(poly: np.ndarray, normal: Sequence[float], offset: float) -> np.ndarray:
    """The part of a flat polygon where ``normal . p <= offset`` (one Sutherland–Hodgman pass).

    Returns a flat array, empty when nothing is left.
    """
    pts = np.asarray(poly, dtype=np.float64).reshape(-1, 2)
    if len(pts) == 0:
        return pts.reshape(-1)
    dist = offset - pts @ np.asarray(normal, dtype=np.float64)  # >= 0 inside
    inside = dist >= 0
    if inside.all():
        return pts.reshape(-1)
    nxt = np.roll(pts, -1, axis=0)
    nxt_dist = np.roll(dist, -1)
    crossing = inside != (nxt_dist >= 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.where(crossing, dist / (dist - nxt_dist), 0.0)
    cut = pts + t[:, None] * (nxt - pts)
    # Per vertex: the vertex when inside, then where its outgoing edge crosses the line.
    both = np.stack([pts, cut], axis=1)
    keep = np.stack([inside, crossing], axis=1)
    return both[keep].reshape(-1)


def clip_polygon(poly: np.ndarray, x0: float, y0: float, x1: float, y1: float) -> np.ndarray:
    """Intersect a flat polygon with the window ``[x0, x1] x [y0, y1]`` (Sutherland–Hodgman).

    Exact for any simple polygon against a rectangle; a concave polygon cut into several pieces comes
    back as one polygon joined by zero-width seams along the window's border, which cover no pixel.
    Returns a flat array, empty when nothing is left.
    """
    out = np.asarray(poly, dtype=np.float64).reshape(-1)
    xs, ys = out[0::2], out[1::2]
    if xs.size and xs.min() >= x0 and xs.max() <= x1 and ys.min() >= y0 and ys.max() <= y1:
        return out.copy()  # the usual case: nothing to cut
    for normal, offset in (((-1.0, 0.0), -x0), ((1.0, 0.0), x1), ((0.0, -1.0), -y0), ((0.0, 1.0), y1)):
        out = clip_halfplane(out, normal, offset)
        if out.size == 0:
            return out
    # Crossing points land on the border up to rounding; put them exactly on it.
    pts = out.reshape(-1, 2)
    np.clip(pts[:, 0], x0, x1, out=pts[:, 0])
    np.clip(pts[:, 1], y0, y1, out=pts[:, 1])
    return pts.reshape(-1)


def subtract_convex(poly: np.ndarray, convex: np.ndarray, min_area: float = 1e-9) -> list[np.ndarray]:
    """``poly`` minus the convex polygon ``convex``, as disjoint flat pieces (convex when ``poly`` is).

    Peels off, edge by edge of ``convex``, the part of what is left that lies outside that edge; what
    finally remains is inside ``convex`` and dropped. Pieces with no area are left out. Used where an
    object drawn later hides part of an earlier one (the generated shapes dataset).
    """
    hull = np.asarray(convex, dtype=np.float64).reshape(-1, 2)
    x, y = hull[:, 0], hull[:, 1]
    ccw = (np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))) > 0  # math orientation
    pieces, rest = [], np.asarray(poly, dtype=np.float64).reshape(-1)
    for a, b in zip(hull, np.roll(hull, -1, axis=0)):
        edge = b - a
        outward = np.array([edge[1], -edge[0]]) if ccw else np.array([-edge[1], edge[0]])
        offset = float(outward @ a)
        outside = clip_halfplane(rest, -outward, -offset)  # outward . p >= offset
        if outside.size >= 6 and polygon_area(outside) > min_area:
            pieces.append(outside)
        rest = clip_halfplane(rest, outward, offset)
        if rest.size < 6:
            break
    return pieces


def polygon_area(poly: np.ndarray) -> float:
    """Shoelace area of one flat polygon (the geometric area, not a pixel count)."""
    pts = np.asarray(poly, dtype=np.float64).reshape(-1, 2)
    x, y = pts[:, 0], pts[:, 1]
    return float(0.5 * abs(np.dot(x, np.roll(y, 1)) - np.dot(y, np.roll(x, 1))))
