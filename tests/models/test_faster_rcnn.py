"""FasterRCNN: the model contract in both batch forms, config layouts, and clear config errors."""

from __future__ import annotations

import copy

import pytest
import torch
from twostage_configs import faster_rcnn_cfg, one_thread, split_train_test_cfg  # noqa: F401  (fixture)

from kiln.engine.events import EventStorage
from kiln.models import FasterRCNN, build_detector
from kiln.registry import MODELS
from kiln.structures import Boxes, Instances

LOSS_KEYS = {"loss_rpn_cls", "loss_rpn_bbox", "loss_cls", "loss_bbox"}

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def model() -> FasterRCNN:
    torch.manual_seed(0)
    return MODELS.build(faster_rcnn_cfg())


def mm_sample(image_id: int, h: int = 64, w: int = 64, boxes=((8.0, 8.0, 40.0, 36.0),), labels=(1,),
              scale: float = 1.0) -> dict:
    g = torch.Generator().manual_seed(image_id)
    return dict(
        img=torch.randn(3, h, w, generator=g),
        img_metas=dict(image_id=image_id, ori_shape=(round(h / scale), round(w / scale), 3),
                       img_shape=(h, w, 3), pad_shape=(h, w, 3), scale_factor=[scale] * 4, flip=False),
        gt_bboxes=torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
        gt_labels=torch.tensor(labels, dtype=torch.long))


def test_train_mode_returns_the_four_losses_and_trains_every_stage(model):
    model.train()
    model.zero_grad()
    losses = model([mm_sample(1), mm_sample(2, h=48, boxes=((20.0, 4.0, 60.0, 44.0),), labels=(2,))])
    assert LOSS_KEYS <= set(losses) and "acc" in losses
    sum(v for k, v in losses.items() if "loss" in k).backward()
    for part in (model.backbone, model.neck, model.rpn_head, model.roi_head):
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in part.parameters()), type(part)


def test_images_without_boxes_train(model):
    model.train()
    losses = model([mm_sample(3, boxes=(), labels=()), mm_sample(4)])
    assert all(torch.isfinite(v) for v in losses.values())
    only_empty = model([mm_sample(5, boxes=(), labels=())])
    assert only_empty["loss_bbox"].item() == 0.0 and only_empty["loss_rpn_bbox"].item() == 0.0


def test_training_stats_go_to_the_event_storage(model):
    model.train()
    with EventStorage() as storage:
        model([mm_sample(1)])
        names = set(storage.latest())
    assert {"rpn_num_pos_anchors", "rcnn_num_pos_rois"} <= names


def test_eval_mode_returns_boxes_in_original_image_pixels(model):
    model.eval()
    with torch.no_grad():
        same = model([mm_sample(7)])[0]
        half = model([mm_sample(7, scale=0.5)])[0]  # the 64 px input is the original at half size
    assert set(same) >= {"boxes", "scores", "labels"} and same["labels"].dtype == torch.int64
    assert len(same["boxes"]) > 0
    torch.testing.assert_close(half["boxes"], same["boxes"] * 2)
    torch.testing.assert_close(half["scores"], same["scores"])
    assert same["boxes"].max() <= 64 and half["boxes"].max() <= 128


def test_test_time_augmented_views_merge_with_the_rcnn_test_settings(model):
    model.eval()
    base = mm_sample(8)
    flipped = dict(base["img_metas"], flip=True, flip_direction="horizontal")
    sample = dict(img=[base["img"], base["img"].flip(-1)], img_metas=[base["img_metas"], flipped])
    with torch.no_grad():
        single = model([mm_sample(8)])[0]
        model.test_cfg["rcnn"]["max_per_img"] = 5  # the merge cap; each view still keeps up to 100
        try:
            out = model([sample, mm_sample(9)])
        finally:
            model.test_cfg["rcnn"]["max_per_img"] = 100
    assert len(out) == 2 and len(single["boxes"]) > 5
    assert len(out[0]["boxes"]) == 5 and len(out[1]["boxes"]) == len(model([mm_sample(9)])[0]["boxes"])
    assert out[0]["boxes"].max() <= 64


def test_detectron2_batch_form_trains_and_predicts(model):
    inst = Instances((64, 64))
    inst.gt_boxes = Boxes(torch.tensor([[8.0, 8.0, 40.0, 36.0]]))
    inst.gt_classes = torch.tensor([0])
    sample = dict(image=torch.randint(0, 255, (3, 64, 64), dtype=torch.uint8), instances=inst,
                  height=128, width=128, image_id=9, file_name="x.png")
    model.train()
    assert LOSS_KEYS <= set(model([sample]))
    model.eval()
    with torch.no_grad():
        out = model([sample])
    assert len(out) == 1 and out[0]["boxes"].shape[1] == 4
    assert out[0]["boxes"].max() <= 128


def test_seed_layout_with_top_level_train_and_test_cfg_builds_the_same_model():
    model_cfg, train_cfg, test_cfg = split_train_test_cfg(faster_rcnn_cfg())
    torch.manual_seed(0)
    top = build_detector(model_cfg, train_cfg=train_cfg, test_cfg=test_cfg)
    torch.manual_seed(0)
    nested = build_detector(faster_rcnn_cfg())
    assert top.rpn_head.train_cfg == nested.rpn_head.train_cfg
    assert top.roi_head.test_cfg == nested.roi_head.test_cfg
    for (ka, a), (kb, b) in zip(top.state_dict().items(), nested.state_dict().items()):
        assert ka == kb and torch.equal(a, b)


def test_v1_layout_with_bbox_head_at_detector_level_builds():
    cfg = faster_rcnn_cfg(num_classes=4)
    roi = cfg.pop("roi_head")
    cfg.update(bbox_roi_extractor=roi["bbox_roi_extractor"], bbox_head=roi["bbox_head"])
    model = build_detector(cfg)
    assert model.num_classes == 4


def test_class_agnostic_regression_trains():
    torch.manual_seed(0)
    model = MODELS.build(faster_rcnn_cfg(reg_class_agnostic=True))
    losses = model([mm_sample(1)])
    assert model.roi_head.bbox_head.fc_reg.out_features == 4
    assert torch.isfinite(losses["loss_bbox"])


def test_test_only_model_needs_no_train_cfg():
    cfg = faster_rcnn_cfg()
    cfg.pop("train_cfg")
    model = build_detector(cfg).eval()
    with torch.no_grad():
        assert len(model([mm_sample(1)])) == 1
    model.train()
    with pytest.raises(RuntimeError, match="train_cfg"):
        model([mm_sample(1)])


def test_missing_config_sections_are_named():
    cfg = faster_rcnn_cfg()
    del cfg["train_cfg"]["rcnn"]
    with pytest.raises(KeyError, match="train_cfg.*'rcnn'"):
        build_detector(cfg)
    cfg = faster_rcnn_cfg()
    del cfg["roi_head"]
    with pytest.raises(ValueError, match="roi_head=dict\\(type='StandardRoIHead'"):
        build_detector(cfg)
    cfg = faster_rcnn_cfg()
    cfg["roi_head"]["bbox_head"]["loss_cls"]["type"] = "CrossEntropyLos"
    with pytest.raises(KeyError, match="roi_head.bbox_head.loss_cls.*CrossEntropyLoss"):
        build_detector(copy.deepcopy(cfg))
