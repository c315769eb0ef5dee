"""End to end: Mask R-CNN (ResNet-18/8-wide, FPN) overfits generated shapes to a high COCO mask AP.

Real files (generated shapes JPEGs + COCO json with the shapes' exact polygons), the MM pipeline with
``LoadAnnotations(with_mask=True)``, the detector, the test loader, build_evaluator's COCOEvaluator with
``segm`` and pycocotools: nothing is mocked.
"""

from __future__ import annotations

import pytest
import torch
from mask_configs import mask_rcnn_cfg
from twostage_configs import one_thread  # noqa: F401  (fixture)

from kiln.data import build_test_loader
from kiln.data.datasets.shapes import ShapesDataset
from kiln.evaluation import build_evaluator, inference_on_dataset
from kiln.registry import MODELS

NORM = dict(mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375], to_rgb=True)
TRAIN_PIPELINE = [
    dict(type="LoadImageFromFile"), dict(type="LoadAnnotations", with_bbox=True, with_mask=True),
    dict(type="Normalize", **NORM), dict(type="Pad", size_divisor=32), dict(type="DefaultFormatBundle"),
    dict(type="Collect", keys=["img", "gt_bboxes", "gt_labels", "gt_masks"]),
]
TEST_PIPELINE = [
    dict(type="LoadImageFromFile"), dict(type="Normalize", **NORM), dict(type="Pad", size_divisor=32),
    dict(type="ImageToTensor", keys=["img"]), dict(type="Collect", keys=["img"]),
]
NUM_IMAGES, ITERS, BATCH, LR = 4, 150, 4, 1e-3
# Measured 78.7 mask AP / 100.0 mask AP50 (88.3 / 100.0 box) with this recipe; the floors leave room for
# floating-point differences between machines changing the training trajectory.
SEGM_AP_FLOOR, SEGM_AP50_FLOOR = 55.0, 90.0


@pytest.mark.usefixtures("one_thread")
def test_mask_rcnn_overfits_shapes_to_a_high_mask_ap(tmp_path):
    gen = dict(split="train", num_images=NUM_IMAGES, image_size=128, root=str(tmp_path))
    train_set = ShapesDataset(pipeline=TRAIN_PIPELINE, **gen)
    samples = [train_set[i] for i in range(len(train_set))]  # no random augmentation: decode once
    torch.manual_seed(0)
    cfg = mask_rcnn_cfg(num_classes=len(train_set.CLASSES))
    cfg["test_cfg"]["rcnn"]["score_thr"] = 0.05
    model = MODELS.build(cfg)
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
    assert torch.isfinite(loss) and losses["loss_mask"] < 0.3

    test_set = ShapesDataset(pipeline=TEST_PIPELINE, test_mode=True, **gen)
    evaluator = build_evaluator(dict(interval=1, metric=["bbox", "segm"]), test_set,
                                output_dir=str(tmp_path / "eval"))
    loader = build_test_loader(test_set, batch_size=4)
    results = inference_on_dataset(model, loader, evaluator, progress=False)
    print({k: round(v, 1) for k, v in results.items() if k.endswith(("AP", "AP50"))})  # shown with -s
    assert results["segm/AP50"] >= SEGM_AP50_FLOOR, results
    assert results["segm/AP"] >= SEGM_AP_FLOOR, results
