"""End to end: Faster R-CNN (ResNet-18/8-wide, FPN) overfits generated shapes to a high COCO AP.

Real files (generated shapes JPEGs + COCO json), the MM pipeline, the detector, the test loader,
build_evaluator's COCOEvaluator and pycocotools: nothing is mocked.
"""

from __future__ import annotations

import pytest
import torch
from twostage_configs import faster_rcnn_cfg, one_thread  # noqa: F401  (fixture)

from kiln.data import build_test_loader
from kiln.data.datasets.shapes import ShapesDataset
from kiln.evaluation import build_evaluator, inference_on_dataset
from kiln.registry import MODELS

NORM = dict(mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375], to_rgb=True)
TRAIN_PIPELINE = [
    dict(type="LoadImageFromFile"), dict(type="LoadAnnotations", with_bbox=True),
    dict(type="Normalize", **NORM), dict(type="Pad", size_divisor=32), dict(type="DefaultFormatBundle"),
    dict(type="Collect", keys=["img", "gt_bboxes", "gt_labels"]),
]
TEST_PIPELINE = [
    dict(type="LoadImageFromFile"), dict(type="Normalize", **NORM), dict(type="Pad", size_divisor=32),
    dict(type="ImageToTensor", keys=["img"]), dict(type="Collect", keys=["img"]),
]
NUM_IMAGES, ITERS, BATCH, LR = 4, 150, 4, 1e-3
# Measured 88.0 AP / 100.0 AP50 with this recipe (docs/evaluation.md); the floors leave room for
# floating-point differences between machines changing the training trajectory.
AP_FLOOR, AP50_FLOOR = 60.0, 90.0


@pytest.mark.usefixtures("one_thread")
def test_faster_rcnn_overfits_shapes_to_high_coco_ap(tmp_path):
    gen = dict(split="train", num_images=NUM_IMAGES, image_size=128, root=str(tmp_path))
    train_set = ShapesDataset(pipeline=TRAIN_PIPELINE, **gen)
    samples = [train_set[i] for i in range(len(train_set))]  # no random augmentation: decode once
    torch.manual_seed(0)
    model = MODELS.build(faster_rcnn_cfg(num_classes=len(train_set.CLASSES)))
    optimizer = torch.optim.AdamW(model.parameters(), lr=LR, weight_decay=1e-4)
    model.train()
    for it in range(ITERS):
        # linear warm-up over 10 iterations, ×0.1 for the last 20%
        lr = LR * min(1.0, (it + 1) / 10) * (0.1 if it >= int(ITERS * 0.8) else 1.0)
        for group in optimizer.param_groups:
            group["lr"] = lr
        batch = [samples[(it * BATCH + k) % len(samples)] for k in range(BATCH)]
        losses = model(batch)
        loss = sum(v for k, v in losses.items() if "loss" in k)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert torch.isfinite(loss)

    test_set = ShapesDataset(pipeline=TEST_PIPELINE, test_mode=True, **gen)
    evaluator = build_evaluator(dict(interval=1, metric="bbox"), test_set, output_dir=str(tmp_path / "eval"))
    loader = build_test_loader(test_set, batch_size=4)
    results = inference_on_dataset(model, loader, evaluator, progress=False)
    assert results["bbox/AP50"] >= AP50_FLOOR, results
    assert results["bbox/AP"] >= AP_FLOOR, results
    assert (tmp_path / "eval" / "coco_instances_results.json").is_file()
