"""The ``RPN`` detector (proposals as results) and ``FastRCNN`` (RoI head on precomputed proposals)."""

from __future__ import annotations

import copy

import pytest
import torch
from twostage_configs import faster_rcnn_cfg, one_thread  # noqa: F401  (fixture)

from kiln.models import build_detector
from kiln.structures import Boxes, DetDataSample, InstanceData, Instances

pytestmark = pytest.mark.usefixtures("one_thread")


def _rpn_cfg() -> dict:
    cfg = faster_rcnn_cfg()
    return dict(
        type="RPN",
        backbone=cfg["backbone"],
        neck=cfg["neck"],
        rpn_head=cfg["rpn_head"],
        train_cfg=dict(rpn=cfg["train_cfg"]["rpn"]),
        test_cfg=dict(rpn=cfg["test_cfg"]["rpn"]),
    )


def _fast_cfg() -> dict:
    cfg = faster_rcnn_cfg()
    cfg["test_cfg"]["rcnn"] = dict(score_thr=0.0, nms=dict(type="nms", iou_threshold=1.0), max_per_img=1000)
    return dict(
        type="FastRCNN",
        backbone=cfg["backbone"],
        neck=cfg["neck"],
        roi_head=cfg["roi_head"],
        train_cfg=dict(rcnn=cfg["train_cfg"]["rcnn"]),
        test_cfg=dict(rcnn=cfg["test_cfg"]["rcnn"]),
    )


def _packed(h=64, w=96, scale=1.0, proposals=None, seed=0):
    g = torch.Generator().manual_seed(seed)
    ds = DetDataSample(
        metainfo=dict(
            img_id=seed,
            img_shape=(h, w),
            ori_shape=(round(h / scale), round(w / scale)),
            scale_factor=(scale, scale),
        )
    )
    ds.gt_instances = InstanceData(bboxes=torch.tensor([[8.0, 10.0, 40.0, 50.0]]), labels=torch.tensor([1]))
    if proposals is not None:
        ds.proposals = InstanceData(bboxes=proposals, scores=torch.ones(len(proposals)))
    return dict(inputs=torch.randint(0, 255, (3, h, w), dtype=torch.uint8, generator=g), data_samples=ds)


def test_rpn_returns_the_proposals_of_the_two_stage_detectors_rpn_stage():
    torch.manual_seed(0)
    faster = build_detector(faster_rcnn_cfg())
    rpn = build_detector(_rpn_cfg())
    # The RPN's parameters are the two-stage detector's backbone, neck and rpn_head, under the same names.
    missing = rpn.load_state_dict(
        {k: v for k, v in faster.state_dict().items() if not k.startswith("roi_head")}, strict=True
    )
    assert not missing.missing_keys
    faster.eval()
    rpn.eval()
    batch = [_packed(seed=3)]
    with torch.no_grad():
        out = rpn(batch)[0]
        inputs = faster.preprocess(batch)
        cls, reg = faster.rpn_head(faster.extract_feat(inputs.images.tensor))
        ((boxes, scores),) = faster.rpn_head.get_proposals(cls, reg, [(64, 96)])
    assert len(boxes) > 10
    torch.testing.assert_close(out["boxes"], boxes)
    torch.testing.assert_close(out["scores"], scores)
    assert out["labels"].eq(0).all()


def test_rpn_proposals_come_back_in_original_image_pixels():
    torch.manual_seed(0)
    rpn = build_detector(_rpn_cfg()).eval()
    with torch.no_grad():
        same = rpn([_packed(scale=1.0, seed=1)])[0]["boxes"]
        half = rpn([_packed(scale=0.5, seed=1)])[0]["boxes"]  # same input, original image twice as large
    torch.testing.assert_close(half, (same * 2).clamp(max=torch.tensor([192.0, 128.0, 192.0, 128.0])))


def test_rpn_trains_on_boxes_without_labels():
    """MMDetection 2.x RPN pipelines end in Collect(keys=['img', 'gt_bboxes'])."""
    torch.manual_seed(0)
    rpn = build_detector(_rpn_cfg()).train()
    sample = dict(
        img=torch.randn(3, 64, 64),
        img_metas=dict(img_shape=(64, 64, 3), ori_shape=(64, 64, 3), scale_factor=[1.0] * 4),
        gt_bboxes=torch.tensor([[8.0, 8.0, 40.0, 36.0]]),
    )
    losses = rpn([sample])
    assert set(losses) == {"loss_rpn_cls", "loss_rpn_bbox"}
    sum(losses.values()).backward()
    # a class-aware detector still needs the labels
    faster = build_detector(faster_rcnn_cfg()).train()
    with pytest.raises(ValueError, match="gt_labels"):
        faster([sample])


def test_fast_rcnn_trains_on_the_batch_proposals_only():
    torch.manual_seed(0)
    model = build_detector(_fast_cfg()).train()
    proposals = torch.tensor([[6.0, 9.0, 42.0, 52.0], [50.0, 5.0, 90.0, 40.0], [0.0, 0.0, 30.0, 30.0]])
    losses = model([_packed(proposals=proposals), _packed(proposals=proposals[:1], seed=1)])
    assert {"loss_cls", "loss_bbox", "acc"} == set(losses)
    sum(v for k, v in losses.items() if "loss" in k).backward()
    assert model.backbone.conv1.weight.grad.abs().sum() > 0


def test_fast_rcnn_detections_are_the_given_proposals_in_original_pixels():
    """With the box regression zeroed, each detection is one of the proposals, mapped back to the original."""
    torch.manual_seed(0)
    model = build_detector(_fast_cfg()).eval()
    torch.nn.init.zeros_(model.roi_head.bbox_head.fc_reg.weight)
    proposals = torch.tensor([[6.0, 9.0, 42.0, 52.0], [50.0, 5.0, 90.0, 40.0]])
    with torch.no_grad():
        out = model([_packed(scale=0.5, proposals=proposals)])[0]
    found = {tuple(b.tolist()) for b in out["boxes"]}
    assert found == {tuple((p * 2).tolist()) for p in proposals}


def test_fast_rcnn_reads_mm2_and_detectron2_batch_proposals():
    torch.manual_seed(0)
    model = build_detector(_fast_cfg()).eval()
    proposals = torch.tensor([[6.0, 9.0, 42.0, 52.0, 0.9]])  # MMDetection's N×5 (score column)
    mm2 = dict(
        img=torch.randn(3, 64, 64),
        img_metas=dict(img_shape=(64, 64, 3), ori_shape=(64, 64, 3), scale_factor=[1.0] * 4),
        proposals=proposals,
    )
    inst = Instances((64, 64))
    inst.proposal_boxes = Boxes(proposals[:, :4])
    d2 = dict(image=torch.rand(3, 64, 64) * 255, height=64, width=64, proposals=inst)
    with torch.no_grad():
        for batch in ([mm2], [d2]):
            assert model(batch)[0]["boxes"].shape[1] == 4


def test_fast_rcnn_without_proposals_in_the_batch_says_how_to_add_them():
    model = build_detector(_fast_cfg()).train()
    with pytest.raises(KeyError, match="LoadProposals"):
        model([_packed()])


def test_fast_rcnn_refuses_an_rpn_head():
    cfg = _fast_cfg()
    cfg["rpn_head"] = copy.deepcopy(faster_rcnn_cfg()["rpn_head"])
    with pytest.raises(ValueError, match="no rpn_head"):
        build_detector(cfg)
