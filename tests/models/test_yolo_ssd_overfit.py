"""End to end: the shipped shapes YOLOv3 and SSD300 models overfit a handful of generated images to a
high COCO AP.

The models are built from the shipped configs (``kiln::shapes/yolov3_d53_shapes.py``,
``kiln::shapes/ssd300_shapes.py``), so these floors hold for what users get; the data goes through the
real shapes generator, COCO loader, Detectron2-style DatasetMapper and COCOEvaluator (pycocotools).
"""

from __future__ import annotations

import torch

from kiln.config import Config
from kiln.data.datasets.coco import load_coco_json
from kiln.data.datasets.shapes import generate_shapes_dataset
from kiln.data.mapper import DatasetMapper
from kiln.evaluation import COCOEvaluator
from kiln.model_zoo import resolve_config_path
from kiln.models import build_detector


def _overfit(tmp_path, config, image_size, iters, lr, pixel_mean, pixel_std):
    """Train the shipped config's model on 8 images for ``iters`` full-batch steps; COCO metrics on them."""
    paths = generate_shapes_dataset(str(tmp_path), num_images=8, image_size=image_size, seed=0)
    dicts = load_coco_json(paths["ann_file"], paths["img_prefix"])
    train_batch = [DatasetMapper([], image_format="RGB", is_train=True)(d) for d in dicts]
    test_batch = [DatasetMapper([], image_format="RGB", is_train=False)(d) for d in dicts]
    cfg = Config.fromfile(resolve_config_path(config)).to_dict()["model"]
    cfg.update(pixel_mean=pixel_mean, pixel_std=pixel_std)  # the pipeline's Normalize, for D2-form images
    torch.manual_seed(0)
    model = build_detector(cfg)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    model.train()
    for _ in range(iters):
        losses = model(train_batch)
        opt.zero_grad()
        sum(v for k, v in losses.items() if "loss" in k).backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        outputs = model(test_batch)
    evaluator = COCOEvaluator(paths["ann_file"], distributed=False, output_dir=str(tmp_path / "eval"))
    evaluator.reset()
    evaluator.process(test_batch, outputs)
    metrics = evaluator.evaluate()
    print(config, {k: round(v, 1) for k, v in metrics.items() if k in ("bbox/AP", "bbox/AP50")})  # -s
    return metrics


def test_yolov3_shapes_model_overfits_to_high_ap(tmp_path):
    metrics = _overfit(tmp_path, "kiln::shapes/yolov3_d53_shapes.py", 128, iters=80, lr=3e-3,
                       pixel_mean=[0.0, 0.0, 0.0], pixel_std=[255.0, 255.0, 255.0])
    assert metrics["bbox/AP50"] > 90.0, metrics
    assert metrics["bbox/AP"] > 60.0, metrics


def test_ssd300_shapes_model_overfits_to_high_ap(tmp_path):
    metrics = _overfit(tmp_path, "kiln::shapes/ssd300_shapes.py", 300, iters=120, lr=3e-3,
                       pixel_mean=[123.675, 116.28, 103.53], pixel_std=[58.395, 57.12, 57.375])
    assert metrics["bbox/AP50"] > 90.0, metrics
    assert metrics["bbox/AP"] > 60.0, metrics
