"""BaseDetector/RetinaNet: both batch forms, padding, mapping back to original pixels, train/eval contract."""

from __future__ import annotations

import pytest
import torch
from retina_configs import tiny

from kiln.engine.events import EventStorage
from kiln.models import build_detector
from kiln.models.detectors import to_original_pixels
from kiln.structures import Boxes, Instances

MEAN = torch.tensor([123.675, 116.28, 103.53]).view(3, 1, 1)
STD = torch.tensor([58.395, 57.12, 57.375]).view(3, 1, 1)


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return build_detector(tiny())


def _image(h=64, w=96, seed=0):
    return torch.randint(0, 256, (3, h, w), generator=torch.Generator().manual_seed(seed), dtype=torch.uint8)


def _mm(image, boxes=None, labels=None, **meta):
    h, w = image.shape[-2:]
    metas = dict(img_shape=(h, w, 3), ori_shape=(h, w, 3), scale_factor=1.0, flip=False, image_id=1)
    metas.update(meta)
    s = dict(img=(image.float() - MEAN) / STD, img_metas=metas)
    if boxes is not None:
        s.update(gt_bboxes=boxes, gt_labels=labels)
    return s


def _d2(image, boxes=None, labels=None, **extra):
    s = dict(image=image, height=image.shape[-2], width=image.shape[-1], image_id=1)
    if boxes is not None:
        s["instances"] = Instances(tuple(image.shape[-2:]), gt_boxes=Boxes(boxes), gt_classes=labels)
    s.update(extra)
    return s


BOXES = torch.tensor([[10.0, 8.0, 40.0, 50.0]])
LABELS = torch.tensor([2])


def test_both_batch_forms_become_the_same_internal_inputs(model):
    img = _image()
    a = model.preprocess([_mm(img, BOXES, LABELS)])
    b = model.preprocess([_d2(img, BOXES, LABELS)])
    assert torch.allclose(a.images.tensor, b.images.tensor, atol=1e-5)
    assert torch.equal(a.gt_bboxes[0], b.gt_bboxes[0]) and torch.equal(a.gt_labels[0], b.gt_labels[0])
    assert a.metas[0]["img_shape"] == b.metas[0]["img_shape"] == (64, 96)


def test_images_of_different_sizes_are_padded_to_size_divisibility(model):
    inputs = model.preprocess([_d2(_image(50, 70)), _d2(_image(64, 40))])
    assert inputs.images.tensor.shape == (2, 3, 64, 96)
    assert [m["img_shape"] for m in inputs.metas] == [(50, 70), (64, 40)]


def test_to_original_pixels_undoes_flip_then_resize_and_clips():
    meta = dict(
        img_shape=(40, 60),
        ori_shape=(20, 30),
        scale_factor=torch.tensor([2.0, 2.0, 2.0, 2.0]),
        flip=True,
        flip_direction="horizontal",
    )
    out = to_original_pixels(torch.tensor([[0.0, 4.0, 20.0, 44.0]]), meta)
    assert out.tolist() == [[20.0, 2.0, 30.0, 20.0]]


def test_eval_boxes_are_in_original_pixels_for_resized_inputs(model):
    model.eval()
    model.bbox_head.test_cfg = dict(tiny()["test_cfg"], score_thr=0.0)
    img = _image()
    with torch.no_grad():
        same = model([_mm(img)])[0]
        half = model([_mm(img, ori_shape=(32, 48, 3), scale_factor=[2.0, 2.0, 2.0, 2.0])])[0]
    model.bbox_head.test_cfg = tiny()["test_cfg"]
    assert len(same["boxes"]) > 0
    assert torch.allclose(half["boxes"], same["boxes"] / 2, atol=1e-4)
    assert torch.equal(half["labels"], same["labels"]) and half["labels"].dtype == torch.int64


def test_flip_meta_mirrors_the_boxes_back(model):
    model.eval()
    model.bbox_head.test_cfg = dict(tiny()["test_cfg"], score_thr=0.0)
    img = _image()
    with torch.no_grad():
        plain = model([_mm(img)])[0]["boxes"]
        flipped = model([_mm(img, flip=True, flip_direction="horizontal")])[0]["boxes"]
    model.bbox_head.test_cfg = tiny()["test_cfg"]
    assert torch.allclose(flipped[:, [0, 2]], 96 - plain[:, [2, 0]], atol=1e-4)
    assert torch.allclose(flipped[:, [1, 3]], plain[:, [1, 3]])


def test_test_time_augmented_views_merge_into_one_result_per_image(model):
    model.eval()
    img = _image()
    one = _mm(img)
    tta = dict(
        img=[one["img"], one["img"].flip(-1)],
        img_metas=[one["img_metas"], dict(one["img_metas"], flip=True, flip_direction="horizontal")],
    )
    with torch.no_grad():
        out = model([tta, _mm(img)])
    assert len(out) == 2 and len(out[0]["boxes"]) <= 100


def test_train_mode_returns_named_losses_and_handles_images_without_objects(model):
    model.train()
    batch = [
        _d2(_image(), BOXES, LABELS),
        _d2(_image(48, 80, seed=1), torch.zeros(0, 4), torch.zeros(0).long()),
    ]
    losses = model(batch)
    assert set(losses) == {"loss_cls", "loss_bbox"}
    total = sum(losses.values())
    total.backward()
    assert torch.isfinite(total)
    empty = model([_d2(_image(), torch.zeros(0, 4), torch.zeros(0).long())])
    assert empty["loss_bbox"].item() == 0.0 and empty["loss_cls"].item() > 0


def test_training_stats_go_to_the_active_event_storage(model):
    model.train()
    with EventStorage(0) as storage:
        model([_mm(_image(), BOXES, LABELS)])
        assert storage.latest()["head_num_pos_anchors"][0] >= 1


def test_training_batch_without_ground_truth_explains_what_is_missing(model):
    model.train()
    with pytest.raises(KeyError, match="gt_bboxes"):
        model([_mm(_image())])


def test_unknown_batch_layout_names_the_expected_keys(model):
    with pytest.raises(KeyError, match="'img'.*'image'"):
        model([dict(picture=_image())])


def test_test_time_views_merge_with_tta_cfg_when_set():
    """``kiln test --tta`` sets ``model.tta_cfg`` (MMDetection's tta_model.tta_cfg): views of one image are
    merged by per-class NMS at its IoU threshold and cut to its max_per_img; without it, test_cfg rules."""
    import torch

    from kiln.models.detectors.base import BaseDetector, DetInputs

    det = BaseDetector(test_cfg=dict(nms=dict(type="nms", iou_threshold=0.9), max_per_img=100))
    meta = {"img_shape": (100, 100), "ori_shape": (100, 100), "scale_factor": torch.ones(4), "flip": False}

    def view(box, score, label):
        return dict(boxes=torch.tensor([box]), scores=torch.tensor([score]), labels=torch.tensor([label]))

    # two views of image 0, boxes overlapping at IoU 0.6; one view of image 1
    views = [view([0.0, 0, 50, 50], 0.9, 1), view([0.0, 0, 50, 30], 0.8, 1), view([5.0, 5, 9, 9], 0.7, 0)]
    inputs = DetInputs(images=None, metas=[meta, meta, meta], sample_index=[0, 0, 1])
    assert [len(r["boxes"]) for r in det.postprocess(views, inputs)] == [2, 1]  # IoU 0.6 < 0.9: both kept
    det.tta_cfg = dict(nms=dict(iou_threshold=0.5), max_per_img=100)
    merged = det.postprocess(views, inputs)
    assert [len(r["boxes"]) for r in merged] == [1, 1]
    assert merged[0]["scores"].tolist() == pytest.approx([0.9])
    det.tta_cfg = dict(nms=dict(iou_threshold=0.9), max_per_img=1)
    assert [len(r["boxes"]) for r in det.postprocess(views, inputs)] == [1, 1]


@pytest.mark.parametrize("part, cfg", [
    ("FPN", dict(type="FPN", in_channels=[8, 16], out_channels=8, num_outs=2)),
    ("RPNHead", dict(type="RPNHead", in_channels=8, feat_channels=8)),
    ("Shared2FCBBoxHead", dict(type="Shared2FCBBoxHead", in_channels=8, fc_out_channels=16, roi_feat_size=7,
                               num_classes=3)),
])
def test_head_and_neck_init_cfg_other_than_the_default_is_refused(part, cfg):
    """kiln initialises heads/necks as MMDetection's default init_cfg does; another init_cfg would be
    ignored, so it is refused by name."""
    from kiln.registry import MODELS

    MODELS.build(dict(cfg))  # the default (init_cfg=None) builds
    with pytest.raises(ValueError, match=rf"{part}\(init_cfg=.*Kaiming.*remove init_cfg"):
        MODELS.build(dict(cfg, init_cfg=dict(type="Kaiming", layer="Conv2d")))
