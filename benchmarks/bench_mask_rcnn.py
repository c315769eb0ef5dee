"""Mask R-CNN R50-FPN: kiln vs torchvision's ``maskrcnn_resnet50_fpn``: train step, inference, peak memory.

Both models are randomly initialised (torchvision: ``weights=None, weights_backbone=None``, so batch norm
is trainable in both) with the same sizes: RPN pre/post-NMS top-n 2000/2000 in training and 1000/1000 at
test time, 512 sampled RoIs per image (25% positive), 7×7 box and 14×14 mask RoIAlign (sampling ratio 2,
torchvision's level mapping), four 256-wide mask convs, a 2× transposed conv and 91 28×28 mask maps.
Both see the same images, boxes and instance masks (kiln as ``BitmapMasks``, torchvision as uint8
tensors), batch size and optimizer (SGD). torchvision's transform is set to the image size so it does not
resize. At test time both keep every detection (score threshold 0, 100 per image) and paste all 100 masks
into the image, so the two do the same amount of paste-back work (torchvision returns soft masks, kiln
binary ones, as their users get them).

Each side runs in its own fresh subprocess (so peak memory is that model's alone), the sides alternate
for ``--rounds`` rounds, and the best round of each is reported.

Peak memory: CUDA → ``torch.cuda.max_memory_allocated``; CPU → the process's peak RSS (``ru_maxrss``)
minus its resident size just before the first (warm-up) training step, i.e. the most memory that
training (activations, gradients, optimizer state, temporaries) added on top of the built model.

Usage::

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_mask_rcnn.py --size 256 --batch 2 --steps 3 \\
        --infer-iters 2 --rounds 2 --threads 1
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time

NUM_CLASSES = 91  # torchvision's COCO layout; kiln gets 90 foreground classes + its own background


def _extractor(size: int) -> dict:
    return dict(type="SingleRoIExtractor",
                roi_layer=dict(type="RoIAlign", output_size=size, sampling_ratio=2, aligned=False),
                out_channels=256, featmap_strides=[4, 8, 16, 32], canonical_box_size=224, canonical_level=4)


def _kiln_model():
    from kiln.models import build_detector

    classes = NUM_CLASSES - 1
    return build_detector(dict(
        type="MaskRCNN",
        backbone=dict(type="ResNet", depth=50, num_stages=4, out_indices=(0, 1, 2, 3), frozen_stages=-1,
                      norm_cfg=dict(type="BN", requires_grad=True), norm_eval=False, style="pytorch"),
        neck=dict(type="FPN", in_channels=[256, 512, 1024, 2048], out_channels=256, num_outs=5),
        rpn_head=dict(type="RPNHead", in_channels=256, feat_channels=256,
                      anchor_generator=dict(type="AnchorGenerator", scales=[8], ratios=[0.5, 1.0, 2.0],
                                            strides=[4, 8, 16, 32, 64]),
                      bbox_coder=dict(type="DeltaXYWHBBoxCoder", target_means=[0.0] * 4,
                                      target_stds=[1.0] * 4),
                      loss_cls=dict(type="CrossEntropyLoss", use_sigmoid=True, loss_weight=1.0),
                      loss_bbox=dict(type="L1Loss", loss_weight=1.0)),
        roi_head=dict(
            type="StandardRoIHead",
            bbox_roi_extractor=_extractor(7),
            bbox_head=dict(type="Shared2FCBBoxHead", in_channels=256, fc_out_channels=1024, roi_feat_size=7,
                           num_classes=classes),
            mask_roi_extractor=_extractor(14),
            mask_head=dict(type="FCNMaskHead", num_convs=4, in_channels=256, conv_out_channels=256,
                           num_classes=classes)),
        train_cfg=dict(
            rpn=dict(assigner=dict(type="MaxIoUAssigner", pos_iou_thr=0.7, neg_iou_thr=0.3, min_pos_iou=0.3,
                                   match_low_quality=True, ignore_iof_thr=-1),
                     sampler=dict(type="RandomSampler", num=256, pos_fraction=0.5, neg_pos_ub=-1,
                                  add_gt_as_proposals=False), allowed_border=-1, pos_weight=-1),
            rpn_proposal=dict(nms_pre=2000, max_per_img=2000, nms=dict(type="nms", iou_threshold=0.7),
                              min_bbox_size=0),
            rcnn=dict(assigner=dict(type="MaxIoUAssigner", pos_iou_thr=0.5, neg_iou_thr=0.5, min_pos_iou=0.5,
                                    match_low_quality=False, ignore_iof_thr=-1),
                      sampler=dict(type="RandomSampler", num=512, pos_fraction=0.25, neg_pos_ub=-1,
                                   add_gt_as_proposals=True), pos_weight=-1, mask_size=28)),
        test_cfg=dict(rpn=dict(nms_pre=1000, max_per_img=1000, nms=dict(type="nms", iou_threshold=0.7),
                               min_bbox_size=0),
                      rcnn=dict(score_thr=0.0, nms=dict(type="nms", iou_threshold=0.5), max_per_img=100,
                                mask_thr_binary=0.5))))


def _tv_model(size: int):
    from torchvision.models.detection import maskrcnn_resnet50_fpn

    return maskrcnn_resnet50_fpn(weights=None, weights_backbone=None, num_classes=NUM_CLASSES, min_size=size,
                                 max_size=size, box_score_thresh=0.0, box_detections_per_img=100)


def _data(batch: int, size: int, device):
    """Random images and, per image, 4 boxes each holding an elliptical instance mask."""
    import torch

    g = torch.Generator().manual_seed(0)
    images = [torch.rand(3, size, size, generator=g) for _ in range(batch)]
    yy, xx = torch.meshgrid(torch.arange(size) + 0.5, torch.arange(size) + 0.5, indexing="ij")
    boxes, masks = [], []
    for _ in range(batch):
        xy = torch.rand(4, 2, generator=g) * size * 0.6
        wh = torch.rand(4, 2, generator=g) * size * 0.3 + 16
        b = torch.cat([xy, (xy + wh).clamp(max=size)], 1)
        c, r = (b[:, :2] + b[:, 2:]) / 2, (b[:, 2:] - b[:, :2]) / 2
        m = (((xx[None] - c[:, 0, None, None]) / r[:, 0, None, None]) ** 2
             + ((yy[None] - c[:, 1, None, None]) / r[:, 1, None, None]) ** 2) <= 1
        boxes.append(b)
        masks.append(m.to(torch.uint8))
    labels = [torch.randint(1, NUM_CLASSES, (4,), generator=g) for _ in range(batch)]
    return ([i.to(device) for i in images], [b.to(device) for b in boxes], [lab.to(device) for lab in labels],
            masks)


def _current_rss_kb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 1024


def worker(which: str, size: int, batch: int, steps: int, infer_iters: int, device_name: str) -> dict:
    """Build one model, time ``steps`` train steps and ``infer_iters`` inference batches."""
    import torch

    torch.manual_seed(0)
    device = torch.device(device_name)
    images, boxes, labels, masks = _data(batch, size, device)
    if which == "kiln":
        from kiln.structures.masks import BitmapMasks

        model = _kiln_model().to(device)
        mean = torch.tensor([0.485, 0.456, 0.406], device=device).view(3, 1, 1)
        std = torch.tensor([0.229, 0.224, 0.225], device=device).view(3, 1, 1)
        train_batch = [dict(img=(im - mean) / std, img_metas=dict(img_shape=(size, size, 3)), gt_bboxes=b,
                            gt_labels=lab - 1, gt_masks=BitmapMasks(m.numpy(), size, size))
                       for im, b, lab, m in zip(images, boxes, labels, masks)]
        test_batch = [dict(img=s["img"], img_metas=s["img_metas"]) for s in train_batch]

        def train_forward():
            return model(train_batch)

        def infer():
            return model(test_batch)
    else:
        model = _tv_model(size).to(device)
        targets = [dict(boxes=b, labels=lab, masks=m.to(device)) for b, lab, m in zip(boxes, labels, masks)]

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
    sum(v for k, v in losses.items() if "loss" in k).backward()
    opt.step()
    opt.zero_grad()
    sync()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    times = []
    for _ in range(steps):
        t = time.perf_counter()
        losses = train_forward()
        sum(v for k, v in losses.items() if "loss" in k).backward()
        opt.step()
        opt.zero_grad()
        sync()
        times.append(time.perf_counter() - t)
    peak_mb = (torch.cuda.max_memory_allocated() / 2**20 if device.type == "cuda"
               else (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss0) / 1024)
    model.eval()
    with torch.no_grad():
        out = infer()
        sync()
        t = time.perf_counter()
        for _ in range(infer_iters):
            out = infer()
        sync()
        infer_s = time.perf_counter() - t
    return dict(step_s=statistics.median(times), peak_mb=peak_mb, images_per_s=batch * infer_iters / infer_s,
                masks_per_image=float(sum(len(o["masks"]) for o in out) / len(out)))


def main() -> None:
    """Run both sides in alternating subprocesses and print the figures and ratios."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--infer-iters", type=int, default=2)
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
