"""CascadeRCNN: three box heads in sequence, trained at rising IoU, scores averaged at test time."""

from __future__ import annotations

import copy

import pytest
import torch
from twostage_configs import faster_rcnn_cfg, one_thread  # noqa: F401  (fixture)

from kiln.models import build_detector
from kiln.models.roi_heads import CascadeRoIHead

pytestmark = pytest.mark.usefixtures("one_thread")


def cascade_cfg() -> dict:
    cfg = faster_rcnn_cfg(num_classes=3)
    cfg["type"] = "CascadeRCNN"
    head = cfg["roi_head"]["bbox_head"]
    heads = []
    for stds in ([0.1, 0.1, 0.2, 0.2], [0.05, 0.05, 0.1, 0.1], [0.033, 0.033, 0.067, 0.067]):
        h = copy.deepcopy(head)
        h["reg_class_agnostic"] = True
        h["bbox_coder"]["target_stds"] = stds
        heads.append(h)
    cfg["roi_head"] = dict(type="CascadeRoIHead", num_stages=3, stage_loss_weights=[1, 0.5, 0.25],
                           bbox_roi_extractor=cfg["roi_head"]["bbox_roi_extractor"], bbox_head=heads)
    rcnn = cfg["train_cfg"]["rcnn"]
    stages = []
    for iou in (0.5, 0.6, 0.7):
        s = copy.deepcopy(rcnn)
        s["assigner"].update(pos_iou_thr=iou, neg_iou_thr=iou, min_pos_iou=iou)
        stages.append(s)
    cfg["train_cfg"]["rcnn"] = stages
    return cfg


def sample(image_id: int) -> dict:
    g = torch.Generator().manual_seed(image_id)
    return dict(img=torch.randn(3, 64, 64, generator=g),
                img_metas=dict(image_id=image_id, ori_shape=(64, 64, 3), img_shape=(64, 64, 3),
                               scale_factor=[1.0] * 4, flip=False),
                gt_bboxes=torch.tensor([[8.0, 8.0, 40.0, 36.0]]), gt_labels=torch.tensor([2]))


def test_every_stage_trains_with_its_own_losses():
    torch.manual_seed(0)
    model = build_detector(cascade_cfg())
    assert isinstance(model.roi_head, CascadeRoIHead) and len(model.roi_head.bbox_head) == 3
    assert [a.pos_iou_thr for a in model.roi_head.assigners] == [0.5, 0.6, 0.7]
    losses = model([sample(1), sample(2)])
    for s in range(3):
        assert {f"s{s}.loss_cls", f"s{s}.loss_bbox", f"s{s}.acc"} <= set(losses)
    sum(v for k, v in losses.items() if "loss" in k).backward()
    for head in model.roi_head.bbox_head:
        assert head.fc_cls.weight.grad.abs().sum() > 0


def test_prediction_contract_holds():
    torch.manual_seed(0)
    model = build_detector(cascade_cfg()).eval()
    with torch.no_grad():
        out = model([sample(1), sample(2)])
    assert len(out) == 2
    for o in out:
        assert o["boxes"].shape[1] == 4 and len(o["boxes"]) == len(o["scores"]) == len(o["labels"])
        assert o["boxes"].numel() == 0 or o["boxes"].max() <= 64


def test_per_stage_lists_must_match_num_stages():
    cfg = cascade_cfg()
    cfg["train_cfg"]["rcnn"] = cfg["train_cfg"]["rcnn"][:2]
    with pytest.raises(ValueError, match="train_cfg: 2 entries for num_stages=3"):
        build_detector(cfg)
