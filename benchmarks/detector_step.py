"""kiln RetinaNet-R50-FPN vs torchvision ``retinanet_resnet50_fpn``: train-step time, peak memory, inference.

Both models are randomly initialised (torchvision: ``weights=None, weights_backbone=None``, so batch norm
is trainable in both), see the same images and boxes, batch size and optimizer (SGD). torchvision's
transform is set to the image size so it does not resize; kiln gets the same images normalised the
same way. Each side runs in its own fresh subprocess (so peak memory is that model's alone), the sides
alternate for ``--rounds`` rounds, and the best round of each is reported.

Peak memory: CUDA → ``torch.cuda.max_memory_allocated``; CPU → the process's peak RSS (``ru_maxrss``)
minus its resident size just before the first (warm-up) training step, i.e. the most memory that
training (activations, gradients, optimizer state, temporaries) added on top of the built model.

Usage::

    .venv/bin/python benchmarks/detector_step.py --size 320 --batch 2 --steps 3 --rounds 2
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time


def _kiln_model(num_classes: int, size: int):
    from kiln.models import build_detector

    return build_detector(dict(
        type="RetinaNet",
        backbone=dict(type="ResNet", depth=50, out_indices=(1, 2, 3), frozen_stages=-1, norm_eval=False,
                      norm_cfg=dict(type="BN")),
        # torchvision: P6 from P5 (LastLevelP6P7 with in == out channels) and ReLU before P7
        neck=dict(type="FPN", in_channels=[512, 1024, 2048], out_channels=256, num_outs=5,
                  add_extra_convs="on_output", relu_before_extra_convs=True),
        bbox_head=dict(type="RetinaHead", num_classes=num_classes, in_channels=256, feat_channels=256,
                       anchor_generator=dict(type="AnchorGenerator", octave_base_scale=4, scales_per_octave=3,
                                             ratios=[0.5, 1.0, 2.0], strides=[8, 16, 32, 64, 128]),
                       bbox_coder=dict(type="DeltaXYWHBBoxCoder", target_stds=[1.0, 1.0, 1.0, 1.0]),
                       loss_bbox=dict(type="L1Loss")),
        train_cfg=dict(assigner=dict(type="MaxIoUAssigner", pos_iou_thr=0.5, neg_iou_thr=0.4, min_pos_iou=0,
                                     gt_max_assign_all=False)),
        test_cfg=dict(nms_pre=1000, score_thr=0.05, nms=dict(type="nms", iou_threshold=0.5),
                      max_per_img=300),
    ))


def _tv_model(num_classes: int, size: int):
    from torchvision.models.detection import retinanet_resnet50_fpn

    return retinanet_resnet50_fpn(weights=None, weights_backbone=None, num_classes=num_classes,
                                  min_size=size, max_size=size)


def _data(batch: int, size: int, device):
    import torch

    g = torch.Generator().manual_seed(0)
    images = [torch.rand(3, size, size, generator=g) for _ in range(batch)]
    boxes = []
    for _ in range(batch):
        xy = torch.rand(4, 2, generator=g) * size * 0.6
        wh = torch.rand(4, 2, generator=g) * size * 0.3 + 16
        boxes.append(torch.cat([xy, (xy + wh).clamp(max=size)], 1))
    labels = [torch.randint(1, 20, (4,), generator=g) for _ in range(batch)]
    return [i.to(device) for i in images], [b.to(device) for b in boxes], [lab.to(device) for lab in labels]


def _current_rss_kb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 1024


def worker(which: str, size: int, batch: int, steps: int, infer_iters: int, device_name: str) -> dict:
    """Build one model, time ``steps`` train steps and ``infer_iters`` inference batches."""
    import torch

    torch.manual_seed(0)
    device = torch.device(device_name)
    images, boxes, labels = _data(batch, size, device)
    num_classes = 91
    if which == "kiln":
        model = _kiln_model(num_classes, size).to(device)
        mean = torch.tensor([0.485, 0.456, 0.406], device=device).view(3, 1, 1)
        std = torch.tensor([0.229, 0.224, 0.225], device=device).view(3, 1, 1)
        train_batch = [dict(img=(im - mean) / std, img_metas=dict(img_shape=(size, size, 3)), gt_bboxes=b,
                            gt_labels=lab) for im, b, lab in zip(images, boxes, labels)]
        test_batch = [dict(img=s["img"], img_metas=s["img_metas"]) for s in train_batch]

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

    rss0 = _current_rss_kb()
    model.train()
    losses = train_forward()  # warm-up step (allocator, autograd graph caches)
    sum(losses.values()).backward()
    opt.step()
    opt.zero_grad()
    sync()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    times = []
    for _ in range(steps):
        t = time.perf_counter()
        losses = train_forward()
        sum(losses.values()).backward()
        opt.step()
        opt.zero_grad()
        sync()
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
    return dict(step_s=statistics.median(times), peak_mb=peak_mb,
                images_per_s=batch * infer_iters / infer_s)


def main() -> None:
    """Run both sides in alternating subprocesses and print the figures and ratios."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", type=int, default=320)
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
    print(f"\ndevice={args.device} size={args.size} batch={args.batch} steps={args.steps} "
          f"rounds={args.rounds}")
    print(f"{'':14}{'train step s':>14}{'peak MB':>10}{'infer img/s':>13}")
    for name, r in best.items():
        print(f"{name:14}{r['step_s']:>14.3f}{r['peak_mb']:>10.0f}{r['images_per_s']:>13.2f}")
    print(f"{'kiln/tv':14}{k['step_s'] / t['step_s']:>14.3f}{k['peak_mb'] / max(t['peak_mb'], 1e-9):>10.3f}"
          f"{k['images_per_s'] / t['images_per_s']:>13.3f}  (time, memory: lower is better; img/s: higher)")


if __name__ == "__main__":
    main()
