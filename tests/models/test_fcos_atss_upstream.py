"""MMDetection's own FCOS and ATSS configs (3.3.0 and 2.28.2) train and evaluate with kiln.

Each case runs the released config file through ``kiln train`` (2 iterations: 4 images, batch 2) and
``kiln test`` on generated data in MMDetection's layout, with the overrides a user on a 2-core machine
passes (small images, no workers, no ImageNet download). The checkpoint carries MMDetection's names.
"""

from __future__ import annotations

import os

import pytest
from upstream_helpers import make_mini_coco, run_upstream, upstream_configs

LOADERS3 = ("train_dataloader", "val_dataloader", "test_dataloader")
SMALL3 = (
    [f"{d}.num_workers=0" for d in LOADERS3]
    + [f"{d}.persistent_workers=False" for d in LOADERS3]
    + [
        "train_dataloader.batch_size=2",
        "train_cfg.max_epochs=1",
        "model.backbone.init_cfg=None",
        "default_hooks.logger.interval=1",
        "val_dataloader.dataset.pipeline.1.scale=(96,96)",
        "test_dataloader.dataset.pipeline.1.scale=(96,96)",
        "train_dataloader.dataset.pipeline.2.scale=(96,96)",
    ]
)
SMALL2 = [
    "data.workers_per_gpu=0",
    "data.samples_per_gpu=2",
    "runner.max_epochs=1",
    "log_config.interval=1",
    "model.backbone.init_cfg=None",
    "data.train.pipeline.2.img_scale=(96,96)",
    "data.val.pipeline.1.img_scale=(96,96)",
    "data.test.pipeline.1.img_scale=(96,96)",
]
BBOX_AP = {"3.3.0": "coco/bbox_mAP:", "2.28.2": "bbox/AP:"}
# A narrower head: the towers' 4×256-channel 3×3 convs on five levels dominate a CPU step.
NARROW = ["model.bbox_head.feat_channels=64"]

CASES = [
    ("3.3.0", "fcos/fcos_r50-caffe_fpn_gn-head_1x_coco.py", "conv_centerness"),
    ("3.3.0", "fcos/fcos_r50-caffe_fpn_gn-head-center-normbbox-centeronreg-giou_1x_coco.py",
     "conv_centerness"),
    ("3.3.0", "atss/atss_r50_fpn_1x_coco.py", "atss_centerness"),
    ("2.28.2", "fcos/fcos_r50_caffe_fpn_gn-head_1x_coco.py", "conv_centerness"),
    ("2.28.2", "atss/atss_r50_fpn_1x_coco.py", "atss_centerness"),
]


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    root = tmp_path_factory.mktemp("fcos_atss")
    make_mini_coco(str(root / "data" / "coco"), num_train=4, num_val=2, size=96)
    return root


@pytest.mark.parametrize("version, name, centerness", CASES, ids=[f"{v}:{n}" for v, n, _ in CASES])
def test_published_config_trains_and_tests(root, version, name, centerness):
    work = root / f"{version}-{os.path.basename(name)[:-3]}"
    opts = (SMALL3 if version == "3.3.0" else SMALL2) + NARROW
    config = os.path.join(upstream_configs(version), *name.split("/"))
    _, tested = run_upstream(config, str(work), opts, cwd=str(root), test=True)
    from kiln.models.backbones.pretrained import load_checkpoint_state_dict

    state = load_checkpoint_state_dict(work / "epoch_1.pth")
    # MMDetection's names: GN towers, the centerness conv and one Scale per level
    assert f"bbox_head.{centerness}.weight" in state
    assert "bbox_head.cls_convs.3.gn.weight" in state
    assert state["bbox_head.scales.4.scale"].shape == ()
    assert BBOX_AP[version] in tested.stdout
