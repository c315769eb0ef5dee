"""End to end: the shipped shapes FCOS and ATSS models overfit a handful of generated shapes images to a
high COCO AP (shapes generator, COCO loader, DatasetMapper, COCOEvaluator with pycocotools)."""

from __future__ import annotations

import pytest
import torch

from kiln.config import Config
from kiln.data.datasets.coco import load_coco_json
from kiln.data.datasets.shapes import generate_shapes_dataset
from kiln.data.mapper import DatasetMapper
from kiln.evaluation import COCOEvaluator
from kiln.models import build_detector


@pytest.mark.parametrize(
    "config", ["kiln::shapes/fcos_r18_fpn_shapes.py", "kiln::shapes/atss_r18_fpn_shapes.py"]
)
def test_shapes_model_overfits_to_high_ap(tmp_path, config):
    paths = generate_shapes_dataset(str(tmp_path), num_images=8, image_size=128, seed=0)
    dicts = load_coco_json(paths["ann_file"], paths["img_prefix"])
    train_batch = [DatasetMapper([], image_format="RGB", is_train=True)(d) for d in dicts]
    test_batch = [DatasetMapper([], image_format="RGB", is_train=False)(d) for d in dicts]

    torch.manual_seed(0)
    model_cfg = dict(Config.fromfile(config).model)
    model_cfg["pixel_mean"], model_cfg["pixel_std"] = [123.675, 116.28, 103.53], [58.395, 57.12, 57.375]
    model = build_detector(model_cfg)
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=1e-4)
    model.train()
    for _ in range(60):
        losses = model(train_batch)
        opt.zero_grad()
        sum(losses.values()).backward()
        opt.step()

    model.eval()
    with torch.no_grad():
        outputs = model(test_batch)
    evaluator = COCOEvaluator(paths["ann_file"], distributed=False, output_dir=str(tmp_path / "eval"))
    evaluator.reset()
    evaluator.process(test_batch, outputs)
    metrics = evaluator.evaluate()
    assert metrics["bbox/AP50"] > 90.0, metrics
    assert metrics["bbox/AP"] > 60.0, metrics
