"""MMDetection's own C4, DC5, RPN and Fast R-CNN configs (3.3.0 and 2.28.2) train and evaluate with kiln.

Each case runs the released config file through ``kiln train`` (2 iterations: 4 images, batch 2) and
``kiln test`` on generated data in MMDetection's layout. The overrides are the ones a user on a 2-core
machine passes: small images, no workers, no ImageNet download (``init_cfg=None``), and fewer RoIs/proposals
(the C4 head runs res5 on every RoI). Fast R-CNN's proposal files are generated here in the layout each
version writes (2.x: a list per image; 3.x: a dict keyed by '<folder>/<file name>'; a Detectron2 dump
with the 3.x config too).
"""

from __future__ import annotations

import json
import os

import pytest
from upstream_helpers import make_mini_coco, make_mini_proposals, run_upstream, upstream_configs

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
    "data.train.pipeline.2.img_scale=(96,96)",
    "data.val.pipeline.1.img_scale=(96,96)",
    "data.test.pipeline.1.img_scale=(96,96)",
]
# The box AP as each version's evaluation names it (2.x metric='bbox' reports kiln's COCO names).
BBOX_AP = {"3.3.0": "coco/bbox_mAP:", "2.28.2": "bbox/AP:"}
# Fewer RoIs and proposals: the C4 head runs res5 on each one.
FEWER_ROIS = [
    "model.train_cfg.rpn_proposal.max_per_img=64",
    "model.train_cfg.rcnn.sampler.num=32",
    "model.test_cfg.rpn.max_per_img=64",
]


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    root = tmp_path_factory.mktemp("c4rpn")
    make_mini_coco(str(root / "data" / "coco"), num_train=4, num_val=2, size=96)
    return root


def _metrics(work_dir):
    out = {}
    for line in (work_dir / "metrics.jsonl").read_text().splitlines():
        out.update(json.loads(line))
    return out


def _cfg(version, *parts):
    return os.path.join(upstream_configs(version), *parts)


@pytest.mark.parametrize(
    "version, name",
    [
        ("3.3.0", "faster_rcnn/faster-rcnn_r50-caffe_c4-1x_coco.py"),
        ("2.28.2", "faster_rcnn/faster_rcnn_r50_caffe_c4_1x_coco.py"),
    ],
)
def test_c4_config_trains_and_tests(root, version, name):
    work = root / f"c4-{version}"
    if version == "3.3.0":
        opts = SMALL3 + FEWER_ROIS + ["model.roi_head.shared_head.init_cfg=None"]
    else:
        opts = (
            SMALL2 + FEWER_ROIS + ["model.backbone.init_cfg=None", "model.roi_head.shared_head.init_cfg=None"]
        )
    _, tested = run_upstream(_cfg(version, *name.split("/")), str(work), opts, cwd=str(root), test=True)
    assert (work / "epoch_1.pth").is_file()
    from kiln.models.backbones.pretrained import load_checkpoint_state_dict

    state = load_checkpoint_state_dict(work / "epoch_1.pth")
    # MMDetection's names: the res5 head under roi_head.shared_head.layer4, the plain box head's fc_cls/fc_reg
    assert "roi_head.shared_head.layer4.2.conv3.weight" in state
    assert state["roi_head.bbox_head.fc_cls.weight"].shape == (81, 2048)
    assert not any(k.startswith("backbone.layer4") for k in state)
    assert BBOX_AP[version] in tested.stdout


@pytest.mark.parametrize(
    "version, name",
    [
        ("3.3.0", "faster_rcnn/faster-rcnn_r50-caffe-dc5_1x_coco.py"),
        ("2.28.2", "faster_rcnn/faster_rcnn_r50_caffe_dc5_1x_coco.py"),
    ],
)
def test_dc5_config_trains(root, version, name):
    work = root / f"dc5-{version}"
    opts = (SMALL3 if version == "3.3.0" else SMALL2 + ["model.backbone.init_cfg=None"]) + FEWER_ROIS
    run_upstream(_cfg(version, *name.split("/")), str(work), opts, cwd=str(root))
    assert (work / "epoch_1.pth").is_file()


@pytest.mark.parametrize(
    "version, name",
    [
        ("3.3.0", "rpn/rpn_r50_fpn_1x_coco.py"),
        ("2.28.2", "rpn/rpn_r50_fpn_1x_coco.py"),
    ],
)
def test_rpn_config_reports_proposal_recall(root, version, name):
    work = root / f"rpn-{version}"
    opts = SMALL3 if version == "3.3.0" else SMALL2 + ["model.backbone.init_cfg=None"]
    _, tested = run_upstream(_cfg(version, *name.split("/")), str(work), opts, cwd=str(root), test=True)
    metrics = _metrics(work)
    key = "coco/AR@1000" if version == "3.3.0" else "AR@1000"
    assert key in metrics and 0.0 <= metrics[key] <= 1.0
    assert "AR@100" in tested.stdout


@pytest.mark.parametrize(
    "version, layout", [("3.3.0", "mmdet3"), ("3.3.0", "detectron2"), ("2.28.2", "mmdet2")]
)
def test_fast_rcnn_config_trains_on_proposal_files(root, version, layout):
    make_mini_proposals(str(root / "data" / "coco"), layout)
    work = root / f"fast-{version}-{layout}"
    if version == "3.3.0":
        name = ("fast_rcnn", "fast-rcnn_r50_fpn_1x_coco.py")
        opts = [o for o in SMALL3 if ".pipeline." not in o] + [
            "train_dataloader.dataset.pipeline.3.transforms.0.scale=(96,96)",
            "val_dataloader.dataset.pipeline.2.transforms.0.scale=(96,96)",
            "test_dataloader.dataset.pipeline.2.transforms.0.scale=(96,96)",
        ]
    else:
        name = ("fast_rcnn", "fast_rcnn_r50_fpn_1x_coco.py")
        opts = [o for o in SMALL2 if ".pipeline." not in o] + [
            "model.backbone.init_cfg=None",
            "data.train.pipeline.3.img_scale=(96,96)",
            "data.val.pipeline.2.img_scale=(96,96)",
            "data.test.pipeline.2.img_scale=(96,96)",
        ]
    _, tested = run_upstream(_cfg(version, *name), str(work), opts, cwd=str(root), test=True)
    assert (work / "epoch_1.pth").is_file()
    assert BBOX_AP[version] in tested.stdout
