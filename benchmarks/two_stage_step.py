"""Faster R-CNN R50-FPN: kiln vs torchvision's ``fasterrcnn_resnet50_fpn``, same images, same settings.

Both models are randomly initialised (no downloads), BatchNorm everywhere trainable, and use the
same sizes: RPN pre/post-NMS top-n 2000/2000 in training and 1000/1000 at test time, 512 sampled
RoIs per image (25% positive), 7×7 RoIAlign, 1024-wide box head, score threshold 0.05, 100
detections. torchvision's transform is told not to resize (``min_size = max_size`` = image side).
Printed: median CPU time of a train step (forward + backward + SGD step) and of inference on the
same batch, each as kiln ÷ torchvision measured interleaved in the same run (goal ≤ 1.0). With
``--device cuda`` the times are wall-clock seconds with the GPU synchronised after each call, and the
peak CUDA memory of each side's calls is printed too.

Run: ``OMP_NUM_THREADS=1 .venv/bin/python benchmarks/two_stage_step.py [--size 320] [--batch 2] [--repeat 3]
[--device cpu|cuda]``
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch


def kiln_model(num_classes: int) -> torch.nn.Module:
    from kiln.models import build_detector

    cfg = dict(
        type="FasterRCNN",
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
        roi_head=dict(type="StandardRoIHead",
                      bbox_roi_extractor=dict(type="SingleRoIExtractor",
                                              roi_layer=dict(type="RoIAlign", output_size=7,
                                                             sampling_ratio=2),
                                              out_channels=256, featmap_strides=[4, 8, 16, 32]),
                      bbox_head=dict(type="Shared2FCBBoxHead", in_channels=256, fc_out_channels=1024,
                                     roi_feat_size=7, num_classes=num_classes)),
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
                                   add_gt_as_proposals=True), pos_weight=-1)),
        test_cfg=dict(rpn=dict(nms_pre=1000, max_per_img=1000, nms=dict(type="nms", iou_threshold=0.7),
                               min_bbox_size=0),
                      rcnn=dict(score_thr=0.05, nms=dict(type="nms", iou_threshold=0.5), max_per_img=100)))
    return build_detector(cfg)


def tv_model(num_classes: int, size: int) -> torch.nn.Module:
    from torchvision.models.detection import fasterrcnn_resnet50_fpn

    return fasterrcnn_resnet50_fpn(weights=None, weights_backbone=None, num_classes=num_classes + 1,
                                   trainable_backbone_layers=5, min_size=size, max_size=size,
                                   rpn_pre_nms_top_n_train=2000, rpn_post_nms_top_n_train=2000,
                                   rpn_pre_nms_top_n_test=1000, rpn_post_nms_top_n_test=1000,
                                   box_batch_size_per_image=512, box_score_thresh=0.05)


def make_batch(n: int, size: int, device: torch.device | str = "cpu") -> tuple[list, list, list]:
    g = torch.Generator().manual_seed(0)
    images = [torch.rand(3, size, size, generator=g) for _ in range(n)]
    boxes = [torch.tensor([[20.0, 30.0, 120.0, 150.0], [size / 2, size / 3, size - 10.0, size - 20.0]])
             for _ in range(n)]
    labels = [torch.tensor([1, 2]) for _ in range(n)]
    mean = torch.tensor([123.675, 116.28, 103.53]).view(3, 1, 1)
    std = torch.tensor([58.395, 57.12, 57.375]).view(3, 1, 1)
    kiln_batch = [dict(img=(im * 255 - mean) / std,
                       img_metas=dict(image_id=i, ori_shape=(size, size, 3), img_shape=(size, size, 3),
                                      scale_factor=[1.0] * 4, flip=False),
                       gt_bboxes=b, gt_labels=lab - 1)  # torchvision's label 0 is background
                  for i, (im, b, lab) in enumerate(zip(images, boxes, labels))]
    tv_targets = [dict(boxes=b, labels=lab) for b, lab in zip(boxes, labels)]
    if torch.device(device).type != "cpu":
        from kiln.engine.device import batch_to_device

        return tuple(batch_to_device(x, torch.device(device)) for x in (kiln_batch, images, tv_targets))
    return kiln_batch, images, tv_targets


def main() -> None:
    """Print kiln/torchvision CPU-time ratios for a train step and for inference."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=320)
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--device", default="cpu", help="cpu (CPU time, the default) or cuda[:N] (wall time)")
    args = ap.parse_args()
    from kiln.engine.device import resolve_device

    device = resolve_device(args.device, source="--device")
    cuda = device.type == "cuda"
    torch.manual_seed(0)
    kiln, tv = kiln_model(3).to(device), tv_model(3, args.size).to(device)
    kiln_batch, tv_images, tv_targets = make_batch(args.batch, args.size, device)
    opt_k = torch.optim.SGD(kiln.parameters(), lr=1e-4, momentum=0.9)
    opt_t = torch.optim.SGD(tv.parameters(), lr=1e-4, momentum=0.9)

    def train_kiln() -> None:
        kiln.train()
        losses = kiln(kiln_batch)
        opt_k.zero_grad()
        sum(v for k, v in losses.items() if "loss" in k).backward()
        opt_k.step()

    def train_tv() -> None:
        tv.train()
        losses = tv(tv_images, tv_targets)
        opt_t.zero_grad()
        sum(losses.values()).backward()
        opt_t.step()

    def infer_kiln() -> None:
        kiln.eval()
        with torch.no_grad():
            kiln(kiln_batch)

    def infer_tv() -> None:
        tv.eval()
        with torch.no_grad():
            tv(tv_images)

    pairs = {"train step": (train_kiln, train_tv), "inference": (infer_kiln, infer_tv)}
    for fk, ft in pairs.values():  # warm-up: allocator, first-call overheads, cuDNN autotuning
        fk()
        ft()
    clock = time.perf_counter if cuda else time.process_time
    peak_mb = {fk: 0.0 for fk in (train_kiln, infer_kiln, train_tv, infer_tv)}

    def timed(fn) -> float:
        if cuda:
            torch.cuda.synchronize(device)
            torch.cuda.reset_peak_memory_stats(device)
        t = clock()
        fn()
        if cuda:
            torch.cuda.synchronize(device)
            peak_mb[fn] = max(peak_mb[fn], torch.cuda.max_memory_allocated(device) / 2**20)
        return clock() - t

    where = f"{device} wall s" if cuda else f"{torch.get_num_threads()} thread(s), CPU s"
    print(f"Faster R-CNN R50-FPN, batch {args.batch} × {args.size}², {where} median of {args.repeat} "
          f"(interleaved)")
    for name, (fk, ft) in pairs.items():
        tk, tt = [], []
        for _ in range(args.repeat):
            for fn, acc in ((fk, tk), (ft, tt)):
                acc.append(timed(fn))
        mk, mt = statistics.median(tk), statistics.median(tt)
        extra = f"   kiln {args.batch / mk:.2f} img/s" if name == "inference" else ""
        if cuda:
            extra += f"   peak MB kiln {peak_mb[fk]:.0f} torchvision {peak_mb[ft]:.0f}"
        print(f"  {name:<11} kiln {mk:7.3f} s   torchvision {mt:7.3f} s   ratio {mk / mt:5.2f}{extra}")


if __name__ == "__main__":
    main()
