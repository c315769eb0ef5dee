"""End to end: a small RetinaNet overfits a handful of generated shapes images to a high COCO AP.

Uses the real pieces of the other packages: the shapes generator (JPEG files + COCO json), the COCO
loader, the Detectron2-style DatasetMapper, and COCOEvaluator (pycocotools).
"""

from __future__ import annotations

import torch
from retina_configs import tiny

from kiln.data.datasets.coco import load_coco_json
from kiln.data.datasets.shapes import generate_shapes_dataset
from kiln.data.mapper import DatasetMapper
from kiln.evaluation import COCOEvaluator
from kiln.models import build_detector


def test_retinanet_overfits_shapes_to_high_ap(tmp_path):
    paths = generate_shapes_dataset(str(tmp_path), num_images=8, image_size=128, seed=0)
    dicts = load_coco_json(paths["ann_file"], paths["img_prefix"])
    train_batch = [DatasetMapper([], image_format="RGB", is_train=True)(d) for d in dicts]
    test_batch = [DatasetMapper([], image_format="RGB", is_train=False)(d) for d in dicts]

    torch.manual_seed(0)
    model = build_detector(tiny())
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
    assert metrics["bbox/AP"] > 70.0, metrics
