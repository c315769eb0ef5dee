"""The frameworks' own Mask R-CNN files train and evaluate boxes and masks on small generated data.

MMDetection 3.3.0 ``mask-rcnn_r50_fpn_1x_coco.py``, 2.28.2 ``mask_rcnn_r50_fpn_1x_coco.py`` and Detectron2's
``mask_rcnn_R_50_FPN_1x.yaml`` run unchanged through ``kiln train`` in a folder whose ``data/coco`` holds
generated shapes with their polygons; the only overrides are a 2-core user's (fewer, smaller images,
one epoch / two iterations, no worker processes, no ImageNet download). Each run must report box and mask
AP under the framework's own names.
"""

from __future__ import annotations

import json
import os
import os.path as osp

import pytest
from upstream_helpers import make_mini_coco, run_upstream, upstream_configs

LOADERS = ("train_dataloader", "val_dataloader", "test_dataloader")
SMALL3 = [f"{d}.num_workers=0" for d in LOADERS] + [f"{d}.persistent_workers=False" for d in LOADERS] + [
    "train_dataloader.batch_size=2", "train_cfg.max_epochs=1", "model.backbone.init_cfg=None",
    "val_dataloader.dataset.pipeline.1.scale=(96,96)", "test_dataloader.dataset.pipeline.1.scale=(96,96)",
    "train_dataloader.dataset.pipeline.2.scale=(96,96)",
]
SMALL2 = ["data.samples_per_gpu=2", "data.workers_per_gpu=0", "runner.max_epochs=1",
          "model.backbone.init_cfg=None", "data.train.pipeline.2.img_scale=(96,96)",
          "data.val.pipeline.1.img_scale=(96,96)", "data.test.pipeline.1.img_scale=(96,96)"]


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    """A folder with MMDetection's data layout: data/coco (80 COCO classes, shapes with polygons)."""
    root = tmp_path_factory.mktemp("maskrcnn")
    make_mini_coco(str(root / "data" / "coco"), num_train=4, num_val=2, size=96)
    return root


def _metrics(path) -> dict:
    return {k: v for line in path.read_text().splitlines() for k, v in json.loads(line).items()}


@pytest.mark.parametrize("version, name", [("3.3.0", "mask_rcnn/mask-rcnn_r50_fpn_1x_coco.py"),
                                           ("2.28.2", "mask_rcnn/mask_rcnn_r50_fpn_1x_coco.py")])
def test_mmdetection_mask_rcnn_trains_and_evaluates_boxes_and_masks(root, version, name):
    work = root / version
    cfg = os.path.join(upstream_configs(version), name)
    run_upstream(cfg, str(work), SMALL3 if version == "3.3.0" else SMALL2, cwd=str(root))
    assert (work / "epoch_1.pth").is_file()
    metrics = _metrics(work / "metrics.jsonl")
    # 3.x CocoMetric names; 2.x evaluation=dict(metric=['bbox', 'segm']) reports kiln's COCO names
    expected = ({"coco/bbox_mAP", "coco/segm_mAP", "coco/segm_mAP_50"} if version == "3.3.0"
                else {"bbox/AP", "segm/AP", "segm/AP50"})
    assert expected <= set(metrics), sorted(metrics)
    assert "loss_mask" in metrics


def test_detectron2_mask_rcnn_yaml_trains_and_evaluates_boxes_and_masks(root, tmp_path):
    from kiln.cli import main
    from kiln.data import DatasetCatalog
    from kiln.data.datasets import register_coco_instances

    coco = root / "data" / "coco"
    for split in ("train", "val"):
        if f"maskrcnn_{split}" not in DatasetCatalog.list():
            ann = str(coco / f"annotations/instances_{split}2017.json")
            register_coco_instances(f"maskrcnn_{split}", {}, ann, str(coco / f"{split}2017"))
    out = tmp_path / "out"
    opts = ["MODEL.WEIGHTS", "", "MODEL.RESNETS.DEPTH", "18", "MODEL.RESNETS.RES2_OUT_CHANNELS", "64",
            "DATASETS.TRAIN", "('maskrcnn_train',)", "DATASETS.TEST", "('maskrcnn_val',)",
            "SOLVER.IMS_PER_BATCH", "2", "SOLVER.MAX_ITER", "2", "SOLVER.STEPS", "(1,)",
            "SOLVER.WARMUP_ITERS", "0", "SOLVER.CHECKPOINT_PERIOD", "2", "INPUT.MIN_SIZE_TRAIN", "(64,)",
            "INPUT.MAX_SIZE_TRAIN", "64", "INPUT.MIN_SIZE_TEST", "64", "INPUT.MAX_SIZE_TEST", "64",
            "DATALOADER.NUM_WORKERS", "0", "OUTPUT_DIR", str(out), "SEED", "1",
            # From scratch (no MSRA weights): unit-scale inputs and a small step keep the losses finite, and
            # after two iterations every score is low: keep the detections, so that segm is evaluated
            # (Detectron2's COCOEvaluator evaluates segm when the predictions carry masks).
            "MODEL.PIXEL_STD", "[57.375, 57.12, 58.395]", "SOLVER.BASE_LR", "0.0001",
            "MODEL.ROI_HEADS.SCORE_THRESH_TEST", "0.0"]
    yaml = osp.join(osp.dirname(__file__), "..", "fixtures", "detectron2_configs",
                    "COCO-InstanceSegmentation", "mask_rcnn_R_50_FPN_1x.yaml")
    assert main(["train", "--config-file", yaml, "--opts", *opts]) == 0
    metrics = next(p for p in out.iterdir() if p.name.startswith("metrics.json"))
    records = [json.loads(line) for line in metrics.read_text().splitlines()]
    assert any("loss_mask" in r for r in records)
    keys = {k for r in records for k in r}
    assert "bbox/AP" in keys and "segm/AP" in keys, sorted(keys)
