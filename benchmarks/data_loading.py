"""Data side costs: shapes generation, loader overhead, resume positioning.

Each figure is printed next to a baseline measured in the same run:

1. ``generate_shapes_dataset`` (1000 images, 128×128 JPEG) vs. only encoding and writing 1000
   pre-made noise images with cv2 (the floor any generator pays).
2. ``build_train_loader`` (ResumableLoader: per-sample seeded RNGs, own generator, batch keys)
   vs. a plain ``torch.utils.data.DataLoader`` with a list collate, same dataset and pipeline,
   0 and 2 workers. Ratio = kiln images/s ÷ plain images/s (goal ≥ 0.95).
   Plus the CPU time per sample of kiln's seeded wrapper vs. calling the dataset directly
   (in-process, interleaved, median: robust on a busy machine where wall-clock ratios swing).
3. ``set_start`` far into an infinite stream (index arithmetic only) vs. loading one batch.

Run: ``.venv/bin/python benchmarks/data_loading.py [--images 1000] [--batches 60]``
"""

from __future__ import annotations

import argparse
import os
import os.path as osp
import statistics
import tempfile
import time

import numpy as np


def bench_generation(n: int, size: int) -> None:
    import cv2

    from kiln.data.datasets import generate_shapes_dataset

    with tempfile.TemporaryDirectory() as d:
        t, c = time.perf_counter(), time.process_time()
        generate_shapes_dataset(d, num_images=n, image_size=size, seed=0)
        gen, gen_cpu = time.perf_counter() - t, time.process_time() - c
        rng = np.random.default_rng(0)
        imgs = [rng.integers(0, 255, (size, size, 3), dtype=np.uint8) for _ in range(16)]
        os.makedirs(osp.join(d, "floor"))
        t, c = time.perf_counter(), time.process_time()
        for i in range(n):
            cv2.imwrite(osp.join(d, "floor", f"{i:06d}.jpg"), imgs[i % 16], [cv2.IMWRITE_JPEG_QUALITY, 95])
        floor, floor_cpu = time.perf_counter() - t, time.process_time() - c
    # CPU time is reported too: on a shared machine wall time mostly measures the neighbours.
    print(f"shapes generation: {n} images {size}x{size}: wall {gen:.2f} s, CPU {gen_cpu:.2f} s; "
          f"cv2 write-only floor wall {floor:.2f} s, CPU {floor_cpu:.2f} s; "
          f"ratio gen/floor (CPU) = {gen_cpu / max(floor_cpu, 1e-9):.2f}x")


def bench_loader(n_images: int, batches: int) -> None:
    import torch
    from torch.utils.data import DataLoader, RandomSampler

    from kiln.data import ShapesDataset, build_train_loader

    pipeline = [
        dict(type="LoadImageFromFile"),
        dict(type="LoadAnnotations", with_bbox=True),
        dict(type="Resize", img_scale=(256, 256), keep_ratio=True),
        dict(type="RandomFlip", flip_ratio=0.5),
        dict(type="Normalize", mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375], to_rgb=True),
        dict(type="Pad", size_divisor=32),
        dict(type="DefaultFormatBundle"),
        dict(type="Collect", keys=["img", "gt_bboxes", "gt_labels"]),
    ]
    with tempfile.TemporaryDirectory() as d:
        ds = ShapesDataset(split="train", num_images=n_images, image_size=128, root=d, pipeline=pipeline)
        bs = 8
        for workers in (0, 2):
            def run(loader: object) -> float:
                it = iter(loader)
                next(it)  # start-up (worker fork) is not throughput
                t = time.perf_counter()
                for _ in range(batches):
                    next(it)
                el = time.perf_counter() - t
                del it
                return batches * bs / el

            def kiln(w: int = workers) -> float:
                return run(build_train_loader(ds, total_batch_size=bs, num_workers=w, seed=0, infinite=True))

            def plain(w: int = workers) -> float:
                g = torch.Generator()
                g.manual_seed(0)
                sampler = RandomSampler(ds, replacement=True, num_samples=10**7, generator=g)
                return run(DataLoader(ds, batch_size=bs, num_workers=w, collate_fn=list, sampler=sampler,
                                      generator=g))

            ks, ps = [], []
            for r in range(6):  # interleaved, order swapped each round (noisy shared machine)
                if r % 2:
                    ks.append(kiln())
                    ps.append(plain())
                else:
                    ps.append(plain())
                    ks.append(kiln())
            mk, mp = statistics.median(ks), statistics.median(ps)
            print(f"loader, {workers} workers, batch {bs}, median of 6: kiln {mk:.0f} img/s, "
                  f"plain DataLoader {mp:.0f} img/s, ratio {mk / mp:.2f}x "
                  f"(kiln runs {[round(k) for k in ks]}, plain {[round(p) for p in ps]})")


def bench_sample_overhead(n_images: int, rounds: int = 15) -> None:
    """CPU time of producing a batch through kiln's seeded wrapper vs calling the dataset directly."""
    from kiln.data import ShapesDataset
    from kiln.data.build import _SeededBatchDataset

    pipeline = [
        dict(type="LoadImageFromFile"),
        dict(type="LoadAnnotations", with_bbox=True),
        dict(type="Resize", img_scale=(256, 256), keep_ratio=True),
        dict(type="RandomFlip", flip_ratio=0.5),
        dict(type="DefaultFormatBundle"),
        dict(type="Collect", keys=["img", "gt_bboxes", "gt_labels"]),
    ]
    with tempfile.TemporaryDirectory() as d:
        ds = ShapesDataset(split="train", num_images=n_images, image_size=128, root=d, pipeline=pipeline)
        wrapped = _SeededBatchDataset(ds)
        idx = list(range(0, min(n_images, 64)))
        key = (0, 0, 0, tuple(enumerate(idx)))
        direct, kiln = [], []
        for _ in range(rounds):
            c = time.process_time()
            [ds[i] for i in idx]
            direct.append(time.process_time() - c)
            c = time.process_time()
            wrapped[key]
            kiln.append(time.process_time() - c)
        md, mk = statistics.median(direct), statistics.median(kiln)
        n = len(idx)
        print(f"per-sample CPU, {n} samples x {rounds} rounds (median): direct {1e3 * md / n:.3f} ms, "
              f"kiln seeded wrapper {1e3 * mk / len(idx):.3f} ms, overhead "
              f"{1e6 * (mk - md) / len(idx):+.0f} us/sample, ratio direct/kiln = {md / mk:.3f}")


def bench_resume_skip() -> None:
    from kiln.data import build_train_loader

    dicts = [dict(i=i) for i in range(118_000)]  # COCO train2017-sized index space
    loader = build_train_loader(dicts, total_batch_size=16, seed=0, infinite=True)
    t = time.perf_counter()
    first = next(iter(loader))
    one = time.perf_counter() - t
    loader = build_train_loader(dicts, total_batch_size=16, seed=0, infinite=True)
    loader.set_start(90_000)
    t = time.perf_counter()
    next(iter(loader))
    skip = time.perf_counter() - t
    assert len(first) == 16
    print(f"resume: set_start(90000) on a 118k-image infinite stream, first batch after {skip:.2f} s "
          f"(vs {one:.3f} s for batch 0; replaying 90000 batches of 16 decoded images would take hours)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=1000)
    ap.add_argument("--batches", type=int, default=60)
    args = ap.parse_args()
    bench_generation(args.images, 128)
    bench_sample_overhead(200)
    bench_loader(200, args.batches)
    bench_resume_skip()


if __name__ == "__main__":
    main()
