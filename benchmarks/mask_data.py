"""Instance-mask costs on the data and evaluation side (issue 14), each next to a baseline of the same run.

1. MM train pipeline (load, resize, flip, pad) per sample with ``LoadAnnotations(with_mask=True)``,
   bitmaps (``poly2mask=True``) and polygons (``poly2mask=False``), vs the same pipeline with boxes only.
2. ``BitmapMasks.crop_and_resize`` (mask targets: 512 RoIs over 20 ground-truth masks of 800×1216) vs
   torchvision's ``roi_align`` called by hand the way MMDetection does it (every RoI's mask gathered
   first), and ``PolygonMasks.crop_and_resize`` (rasterizing per RoI) for scale.
3. RLE encoding of 100 predicted 480×640 masks for the result json: kiln's ``encode_masks`` (text
   counts, ready for json) vs pycocotools called per mask by hand (Detectron2's loop): the overhead.

Run: ``.venv/bin/python benchmarks/mask_data.py [--samples 200]``
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import numpy as np
import torch


def _median_times(fns, repeat: int) -> list[float]:
    """Median seconds of each function, runs interleaved so machine load hits all of them alike."""
    times: list[list[float]] = [[] for _ in fns]
    for _ in range(repeat):
        for fn, ts in zip(fns, times):
            t = time.perf_counter()
            fn()
            ts.append(time.perf_counter() - t)
    return [statistics.median(ts) for ts in times]


def bench_pipeline(samples: int) -> None:
    from kiln.data import CocoDataset
    from kiln.data.datasets import generate_shapes_dataset

    def pipeline(**load):
        return [dict(type="LoadImageFromFile"), dict(type="LoadAnnotations", with_bbox=True, **load),
                dict(type="Resize", img_scale=(1333, 800), keep_ratio=True),
                dict(type="RandomFlip", flip_ratio=0.5), dict(type="Pad", size_divisor=32)]

    with tempfile.TemporaryDirectory() as d:
        paths = generate_shapes_dataset(d, num_images=samples, image_size=256, seed=0, max_objects=6)
        variants = {"boxes only": pipeline(), "bitmaps (poly2mask=True)": pipeline(with_mask=True),
                    "polygons (poly2mask=False)": pipeline(with_mask=True, poly2mask=False)}
        sets = {k: CocoDataset(paths["ann_file"], v, img_prefix=paths["img_prefix"], min_size=None)
                for k, v in variants.items()}
        per = {k: [] for k in sets}
        for i in range(samples):  # interleaved, so machine load hits every variant alike
            for k, ds in sets.items():
                np.random.seed(i)
                t = time.perf_counter()
                ds[i]
                per[k].append(time.perf_counter() - t)
    base = statistics.median(per["boxes only"])
    print(f"1. MM pipeline per sample (256² shapes resized to 800², {samples} samples, median):")
    for k, v in per.items():
        m = statistics.median(v)
        print(f"   {k:28s} {m * 1e3:7.2f} ms   ratio vs boxes only {m / base:5.2f}")


def bench_crop_and_resize() -> None:
    from torchvision.ops import roi_align

    from kiln.structures import PolygonMasks

    rng = np.random.default_rng(0)
    h, w, n, r = 800, 1216, 20, 512
    polys = []
    for _ in range(n):
        cx, cy, s = rng.uniform(100, w - 100), rng.uniform(100, h - 100), rng.uniform(20, 90)
        ang = np.sort(rng.uniform(0, 2 * np.pi, 12))
        polys.append([np.stack([cx + s * np.cos(ang), cy + s * np.sin(ang)], 1).reshape(-1)])
    pm = PolygonMasks(polys, h, w)
    bm = pm.to_bitmap()
    inds = torch.from_numpy(rng.integers(0, n, r))
    gt_boxes = torch.from_numpy(bm.get_bboxes())
    boxes = gt_boxes[inds] + torch.from_numpy(rng.normal(0, 8, (r, 4))).float()

    def kiln_bitmap():
        bm.crop_and_resize(boxes, (28, 28), inds=inds)

    def by_hand():  # every RoI's mask gathered, then RoIAlign (MMDetection's way)
        src = torch.from_numpy(bm.masks).index_select(0, inds).float()[:, None]
        rois = torch.cat([torch.arange(r, dtype=torch.float32)[:, None], boxes], 1)
        return roi_align(src, rois, (28, 28), 1.0, 0, True).squeeze(1) >= 0.5

    def kiln_polygon():
        pm.crop_and_resize(boxes, (28, 28), inds=inds)

    assert torch.equal(bm.crop_and_resize(boxes, (28, 28), inds=inds), by_hand())
    t_kiln, t_hand, t_poly = _median_times((kiln_bitmap, by_hand, kiln_polygon), 7)
    print(f"2. crop_and_resize, {r} RoIs over {n} masks of {h}x{w} -> 28x28 (median of 7, interleaved):")
    print(f"   BitmapMasks (unique masks once)   {t_kiln * 1e3:7.2f} ms")
    print(f"   roi_align over gathered masks     {t_hand * 1e3:7.2f} ms   "
          f"ratio kiln/by hand {t_kiln / t_hand:5.2f}")
    print(f"   PolygonMasks (rasterize per RoI)  {t_poly * 1e3:7.2f} ms")


def bench_rle() -> None:
    from pycocotools import mask as mask_utils

    from kiln.evaluation.coco_results import encode_masks

    rng = np.random.default_rng(0)
    masks = np.zeros((100, 480, 640), bool)
    for m in masks:
        y, x = rng.integers(0, 400), rng.integers(0, 560)
        m[y:y + rng.integers(10, 80), x:x + rng.integers(10, 80)] = True

    def per_mask():
        return [mask_utils.encode(np.array(m[:, :, None], order="F", dtype=np.uint8))[0] for m in masks]

    assert [r["counts"] for r in encode_masks(masks)] == [r["counts"].decode() for r in per_mask()]
    t_kiln, t_loop = _median_times((lambda: encode_masks(masks), per_mask), 15)
    print("3. RLE encoding of 100 masks of 480x640 (median of 15, interleaved):")
    print(f"   encode_masks              {t_kiln * 1e3:7.2f} ms")
    print(f"   pycocotools per mask      {t_loop * 1e3:7.2f} ms   ratio kiln/loop {t_kiln / t_loop:5.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=200)
    args = parser.parse_args()
    torch.set_num_threads(1)
    bench_pipeline(args.samples)
    bench_crop_and_resize()
    bench_rle()


if __name__ == "__main__":
    main()
