"""MMDetection's own YOLOv3 and SSD configs (3.3.0 and 2.28.2) train, checkpoint and evaluate with kiln.

Each case runs the released config file through ``kiln train`` (one epoch: 4 images, batch 2) and
``kiln test`` on generated data in MMDetection's layout, with the overrides a user on a 2-core machine
passes: no worker processes, no ImageNet download (``init_cfg=None``), YOLOv3 at 96 px, SSD's dataset
repeat at 1. SSD keeps its 300 px input: its anchors and extra layers are built for it. The checkpoints
carry MMDetection's state-dict names and shapes (so its released weights load strictly).
"""

from __future__ import annotations

import os

import pytest
from upstream_helpers import make_mini_coco, run_upstream, upstream_configs

from kiln.models.backbones.pretrained import load_checkpoint_state_dict

LOADERS3 = ("train_dataloader", "val_dataloader", "test_dataloader")
COMMON3 = (
    [f"{d}.num_workers=0" for d in LOADERS3]
    + [f"{d}.persistent_workers=False" for d in LOADERS3]
    + ["train_dataloader.batch_size=2", "train_cfg.max_epochs=1", "train_cfg.val_interval=1",
       "model.backbone.init_cfg=None", "default_hooks.logger.interval=1"]
)
COMMON2 = ["data.workers_per_gpu=0", "data.samples_per_gpu=2", "runner.max_epochs=1", "log_config.interval=1",
           "evaluation.interval=1", "model.backbone.init_cfg=None"]
BBOX_AP = {"3.3.0": "coco/bbox_mAP:", "2.28.2": "bbox/AP:"}


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    root = tmp_path_factory.mktemp("yolossd")
    make_mini_coco(str(root / "data" / "coco"), num_train=4, num_val=2, size=96)
    return root


def _cfg(version, name):
    return os.path.join(upstream_configs(version), *name.split("/"))


YOLO_CASES = [
    ("3.3.0", "yolo/yolov3_d53_8xb8-320-273e_coco.py",
     COMMON3 + ["train_dataloader.dataset.pipeline.4.scale=(96,96)",
                "val_dataloader.dataset.pipeline.1.scale=(96,96)",
                "test_dataloader.dataset.pipeline.1.scale=(96,96)"]),
    ("3.3.0", "yolo/yolov3_d53_8xb8-ms-608-273e_coco.py",  # multi-scale RandomResize between two scales
     COMMON3 + ["train_dataloader.dataset.pipeline.4.scale=[(64,64),(128,128)]",
                "val_dataloader.dataset.pipeline.1.scale=(96,96)",
                "test_dataloader.dataset.pipeline.1.scale=(96,96)"]),
    ("2.28.2", "yolo/yolov3_d53_320_273e_coco.py",
     COMMON2 + ["data.train.pipeline.4.img_scale=(96,96)", "data.val.pipeline.1.img_scale=(96,96)",
                "data.test.pipeline.1.img_scale=(96,96)"]),
]


@pytest.mark.parametrize("version, name, opts", YOLO_CASES, ids=[c[1] for c in YOLO_CASES])
def test_yolov3_config_trains_and_tests(root, version, name, opts):
    work = root / f"yolo-{version}-{os.path.basename(name)}"
    _, tested = run_upstream(_cfg(version, name), str(work), opts, cwd=str(root), test=True)
    state = load_checkpoint_state_dict(work / "epoch_1.pth")
    # MMDetection's names: Darknet's conv_res_block stages, the neck's detect/conv blocks, the head's
    # bridge and prediction convs (3 anchors × (5 + 80 classes) = 255 outputs per cell).
    assert "backbone.conv_res_block5.res3.conv2.bn.running_var" in state
    assert "neck.detect3.conv5.conv.weight" in state and "neck.conv2.bn.weight" in state
    assert state["bbox_head.convs_pred.2.weight"].shape == (255, 256, 1, 1)
    assert state["bbox_head.convs_bridge.0.conv.weight"].shape == (1024, 512, 3, 3)
    assert BBOX_AP[version] in tested.stdout


SSD_CASES = [
    ("3.3.0", "ssd/ssd300_coco.py", COMMON3 + ["train_dataloader.dataset.times=1"]),
    ("2.28.2", "ssd/ssd300_coco.py", COMMON2 + ["data.train.times=1"]),
]


@pytest.mark.parametrize("version, name, opts", SSD_CASES, ids=[c[0] for c in SSD_CASES])
def test_ssd300_config_trains_and_tests(root, version, name, opts):
    work = root / f"ssd-{version}"
    _, tested = run_upstream(_cfg(version, name), str(work), opts, cwd=str(root), test=True)
    state = load_checkpoint_state_dict(work / "epoch_1.pth")
    # MMCV VGG's numbering (fc7 is features.33), SSDNeck's L2Norm and extra layers, SSDHead's per-level
    # convs with 81 classes (background last) × 4 or 6 anchors.
    assert state["backbone.features.33.weight"].shape == (1024, 1024, 1, 1)
    assert state["neck.l2_norm.weight"].shape == (512,)
    assert state["neck.extra_layers.3.1.conv.weight"].shape == (256, 128, 3, 3)
    assert state["bbox_head.cls_convs.1.0.weight"].shape == (6 * 81, 1024, 3, 3)
    assert state["bbox_head.reg_convs.5.0.weight"].shape == (4 * 4, 256, 3, 3)
    assert BBOX_AP[version] in tested.stdout
