"""kiln SSD300 (MMDetection's ssd300) vs torchvision ``ssd300_vgg16``: train step, peak memory, inference.

Both models are randomly initialised (torchvision: ``weights=None, weights_backbone=None``), see the same
300×300 images and boxes, batch size and optimizer (SGD). The architectures are the same network (see
tests/models/test_ssd_torchvision_parity.py); both train with hard negative mining (3 negatives per
positive) and smooth L1, and post-process with score threshold 0.01, NMS 0.45, 200 detections (kiln's
test_cfg is set to torchvision's thresholds). kiln gets the images normalised as torchvision's transform
normalises them. Each side runs in its own fresh subprocess (so peak memory is that model's alone), the
sides alternate for ``--rounds`` rounds, and the best round of each is reported.

Peak memory: CUDA → ``torch.cuda.max_memory_allocated``; CPU → the process's peak RSS (``ru_maxrss``)
minus its resident size just before the first (warm-up) training step.

Usage::

    .venv/bin/python benchmarks/bench_ssd.py --batch 2 --steps 3 --rounds 2 [--device cpu|cuda]
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time

SIZE = 300
# torchvision's SSD300 normalisation (its transform's image_mean / image_std on 0-1 images)
TV_MEAN = (0.48235, 0.45882, 0.40784)
TV_STD = (1.0 / 255.0, 1.0 / 255.0, 1.0 / 255.0)


def _kiln_model(num_classes: int):
    from kiln.config import Config
    from kiln.model_zoo import resolve_config_path
    from kiln.models import build_detector

    cfg = Config.fromfile(resolve_config_path("kiln::_base_/models/ssd300.py")).to_dict()["model"]
    cfg["backbone"]["init_cfg"] = None
    cfg["bbox_head"]["num_classes"] = num_classes
    cfg["test_cfg"].update(score_thr=0.01, max_per_img=200)
    return build_detector(cfg)


def _tv_model(num_classes: int):
    from torchvision.models.detection import ssd300_vgg16

    return ssd300_vgg16(weights=None, weights_backbone=None, num_classes=num_classes + 1)


def _data(batch: int, device):
    import torch

    g = torch.Generator().manual_seed(0)
    images = [torch.rand(3, SIZE, SIZE, generator=g) for _ in range(batch)]
    boxes = []
    for _ in range(batch):
        xy = torch.rand(4, 2, generator=g) * SIZE * 0.6
        wh = torch.rand(4, 2, generator=g) * SIZE * 0.3 + 16
        boxes.append(torch.cat([xy, (xy + wh).clamp(max=SIZE)], 1))
    labels = [torch.randint(0, 20, (4,), generator=g) for _ in range(batch)]
    return [i.to(device) for i in images], [b.to(device) for b in boxes], [lab.to(device) for lab in labels]


def _current_rss_kb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 1024


def worker(which: str, batch: int, steps: int, infer_iters: int, device_name: str) -> dict:
    """Build one model, time ``steps`` train steps and ``infer_iters`` inference batches."""
    import torch

    torch.manual_seed(0)
    device = torch.device(device_name)
    images, boxes, labels = _data(batch, device)
    num_classes = 20
    if which == "kiln":
        model = _kiln_model(num_classes).to(device)
        mean = torch.tensor(TV_MEAN, device=device).view(3, 1, 1)
        std = torch.tensor(TV_STD, device=device).view(3, 1, 1)
        train_batch = [dict(img=(im - mean) / std, img_metas=dict(img_shape=(SIZE, SIZE, 3)), gt_bboxes=b,
                            gt_labels=lab) for im, b, lab in zip(images, boxes, labels)]
        test_batch = [dict(img=s["img"], img_metas=s["img_metas"]) for s in train_batch]

        def train_forward():
            return model(train_batch)

        def infer():
            return model(test_batch)
    else:
        model = _tv_model(num_classes).to(device)
        targets = [dict(boxes=b, labels=lab + 1) for b, lab in zip(boxes, labels)]  # 0 = background

        def train_forward():
            return model(images, targets)

        def infer():
            return model(images)
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize()

    def loss_of(out):
        return sum(v for k, v in out.items() if "loss" in k or which == "torchvision")

    rss0 = _current_rss_kb()
    model.train()
    loss_of(train_forward()).backward()  # warm-up step (allocator, autograd graph caches)
    opt.step()
    opt.zero_grad()
    sync()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    times = []
    for _ in range(steps):
        t = time.perf_counter()
        loss_of(train_forward()).backward()
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
    return dict(step_s=statistics.median(times), peak_mb=peak_mb, images_per_s=batch * infer_iters / infer_s)


def main() -> None:
    """Run both sides in alternating subprocesses and print the figures and ratios."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
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
        print(json.dumps(worker(args.worker, args.batch, args.steps, args.infer_iters, args.device)))
        return
    if args.device is None:
        import torch

        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    results: dict[str, list[dict]] = {"kiln": [], "torchvision": []}
    for _ in range(args.rounds):
        for which in ("torchvision", "kiln"):
            cmd = [sys.executable, __file__, "--worker", which, "--batch", str(args.batch), "--steps",
                   str(args.steps), "--infer-iters", str(args.infer_iters), "--device", args.device]
            if args.threads:
                cmd += ["--threads", str(args.threads)]
            proc = subprocess.run(cmd, check=True, capture_output=True, text=True)
            results[which].append(json.loads(proc.stdout.strip().splitlines()[-1]))
            print(which, results[which][-1], flush=True)
    best = {k: dict(step_s=min(r["step_s"] for r in v), peak_mb=min(r["peak_mb"] for r in v),
                    images_per_s=max(r["images_per_s"] for r in v)) for k, v in results.items()}
    k, t = best["kiln"], best["torchvision"]
    print(f"\ndevice={args.device} size={SIZE} batch={args.batch} steps={args.steps} rounds={args.rounds}")
    print(f"{'':14}{'train step s':>14}{'peak MB':>10}{'infer img/s':>13}")
    for name, r in best.items():
        print(f"{name:14}{r['step_s']:>14.3f}{r['peak_mb']:>10.0f}{r['images_per_s']:>13.2f}")
    print(f"{'kiln/tv':14}{k['step_s'] / t['step_s']:>14.3f}{k['peak_mb'] / max(t['peak_mb'], 1e-9):>10.3f}"
          f"{k['images_per_s'] / t['images_per_s']:>13.3f}  (time, memory: lower is better; img/s: higher)")


if __name__ == "__main__":
    main()
