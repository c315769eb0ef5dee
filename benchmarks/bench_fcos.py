"""kiln FCOS-R50-FPN vs torchvision ``fcos_resnet50_fpn``: train-step time, peak memory, inference.

The two models are the same network (torchvision's FCOS is MMDetection's centre-sampling / normalised-
distance / centerness-on-regression / GIoU variant; kiln is configured to it, as in
tests/models/test_fcos_torchvision_parity.py), randomly initialised, fed the same images, boxes, batch size
and optimizer (SGD), with the same test thresholds (score 0.05, 1000 candidates per level, 100 per image).
torchvision's transform is set to the image size and an identity normalisation so it does not resize.
Each side runs in its own fresh subprocess; the sides alternate for ``--rounds`` rounds and the best
round of each is reported (peak memory as in detector_step.py: CUDA max allocated, or on CPU the peak
RSS added by training on top of the built model).

Usage::

    .venv/bin/python benchmarks/bench_fcos.py --size 256 --batch 2 --steps 3 --rounds 2 --threads 1
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from detector_step import _current_rss_kb, _data  # noqa: E402


def _kiln_model(num_classes: int):
    from kiln.models import build_detector

    return build_detector(dict(
        type="FCOS",
        backbone=dict(type="ResNet", depth=50, out_indices=(0, 1, 2, 3), frozen_stages=-1, norm_eval=False,
                      norm_cfg=dict(type="BN"), style="pytorch"),
        neck=dict(type="FPN", in_channels=[256, 512, 1024, 2048], out_channels=256, start_level=1,
                  add_extra_convs="on_output", num_outs=5, relu_before_extra_convs=True),
        bbox_head=dict(type="FCOSHead", num_classes=num_classes, in_channels=256, feat_channels=256,
                       strides=[8, 16, 32, 64, 128], norm_on_bbox=True, centerness_on_reg=True,
                       center_sampling=True, conv_bias=True, prior_offset=0.0,
                       loss_bbox=dict(type="GIoULoss", loss_weight=1.0)),
        test_cfg=dict(nms_pre=1000, score_thr=0.05, min_bbox_size=-1, nms=dict(type="nms", iou_threshold=0.6),
                      max_per_img=100),
    ))


def _tv_model(num_classes: int, size: int):
    from torchvision.models.detection import fcos_resnet50_fpn

    return fcos_resnet50_fpn(weights=None, weights_backbone=None, num_classes=num_classes, min_size=size,
                             max_size=size, image_mean=[0.0, 0.0, 0.0], image_std=[1.0, 1.0, 1.0],
                             score_thresh=0.05, topk_candidates=1000, nms_thresh=0.6, detections_per_img=100)


def worker(which: str, size: int, batch: int, steps: int, infer_iters: int, device_name: str) -> dict:
    """Build one model, time ``steps`` train steps and ``infer_iters`` inference batches."""
    import torch

    torch.manual_seed(0)
    device = torch.device(device_name)
    images, boxes, labels = _data(batch, size, device)
    num_classes = 80
    labels = [lab % num_classes for lab in labels]
    if which == "kiln":
        model = _kiln_model(num_classes).to(device)
        meta = dict(img_shape=(size, size, 3), ori_shape=(size, size, 3), scale_factor=[1.0] * 4)
        train_batch = [dict(img=im, img_metas=meta, gt_bboxes=b, gt_labels=lab)
                       for im, b, lab in zip(images, boxes, labels)]
        test_batch = [dict(img=im, img_metas=meta) for im in images]

        def train_forward():
            return model(train_batch)

        def infer():
            return model(test_batch)
    else:
        model = _tv_model(num_classes, size).to(device)
        targets = [dict(boxes=b, labels=lab) for b, lab in zip(boxes, labels)]

        def train_forward():
            return model(images, targets)

        def infer():
            return model(images)
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize()

    def step():
        losses = train_forward()
        sum(losses.values()).backward()
        opt.step()
        opt.zero_grad()
        sync()

    rss0 = _current_rss_kb()
    model.train()
    step()  # warm-up (allocator, autograd caches)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    times = []
    for _ in range(steps):
        t = time.perf_counter()
        step()
        times.append(time.perf_counter() - t)
    peak_mb = (torch.cuda.max_memory_allocated() / 2**20 if device.type == "cuda"
               else (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss0) / 1024)
    model.eval()
    with torch.no_grad():
        infer()
        sync()
        t = time.perf_counter()
        for _ in range(infer_iters):
            infer()
        sync()
        infer_s = time.perf_counter() - t
    return dict(step_s=statistics.median(times), peak_mb=peak_mb, images_per_s=batch * infer_iters / infer_s)


def main() -> None:
    """Run both sides in alternating subprocesses and print the figures and the kiln/torchvision ratios."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--infer-iters", type=int, default=3)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads in the workers")
    p.add_argument("--worker", choices=["kiln", "torchvision"], help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        import torch

        if args.threads:
            torch.set_num_threads(args.threads)
        figures = worker(args.worker, args.size, args.batch, args.steps, args.infer_iters, args.device)
        print(json.dumps(figures))
        return
    if args.device is None:
        import torch

        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    results: dict[str, list[dict]] = {"kiln": [], "torchvision": []}
    for _ in range(args.rounds):
        for which in ("torchvision", "kiln"):
            cmd = [sys.executable, __file__, "--worker", which, "--size", str(args.size), "--batch",
                   str(args.batch), "--steps", str(args.steps), "--infer-iters", str(args.infer_iters),
                   "--device", args.device]
            if args.threads:
                cmd += ["--threads", str(args.threads)]
            proc = subprocess.run(cmd, check=True, capture_output=True, text=True)
            results[which].append(json.loads(proc.stdout.strip().splitlines()[-1]))
            print(which, results[which][-1], flush=True)
    best = {k: dict(step_s=min(r["step_s"] for r in v), peak_mb=min(r["peak_mb"] for r in v),
                    images_per_s=max(r["images_per_s"] for r in v)) for k, v in results.items()}
    k, t = best["kiln"], best["torchvision"]
    print(f"\nFCOS device={args.device} size={args.size} batch={args.batch} steps={args.steps} "
          f"rounds={args.rounds}")
    print(f"{'':14}{'train step s':>14}{'peak MB':>10}{'infer img/s':>13}")
    for name, r in best.items():
        print(f"{name:14}{r['step_s']:>14.3f}{r['peak_mb']:>10.0f}{r['images_per_s']:>13.2f}")
    print(f"{'kiln/tv':14}{k['step_s'] / t['step_s']:>14.3f}{k['peak_mb'] / max(t['peak_mb'], 1e-9):>10.3f}"
          f"{k['images_per_s'] / t['images_per_s']:>13.3f}  (time, memory: lower is better; img/s: higher)")


if __name__ == "__main__":
    main()
