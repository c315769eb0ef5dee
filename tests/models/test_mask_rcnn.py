"""Mask R-CNN as a detector: gt masks from every batch form, loss_mask, masks at the original size,
pad_mask, Cascade Mask R-CNN."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from mask_configs import mask_rcnn_cfg
from twostage_configs import faster_rcnn_cfg

from kiln.models import build_detector
from kiln.structures import Boxes, DetDataSample, Instances
from kiln.structures.det_data_sample import InstanceData
from kiln.structures.masks import BitmapMasks, BitMasks, PolygonMasks

H, W = 64, 96
BOXES = [[8.0, 8.0, 40.0, 40.0], [50.0, 12.0, 90.0, 56.0]]


def _polys() -> PolygonMasks:
    # A triangle in box 0 and a rectangle in box 1.
    return PolygonMasks([[np.array([8, 8, 40, 8, 8, 40], float)],
                         [np.array([50, 12, 90, 12, 90, 56, 50, 56], float)]], H, W)


def _image() -> torch.Tensor:
    return torch.rand(3, H, W, generator=torch.Generator().manual_seed(0)) * 255


def _packed(masks=None, img_shape=(H, W), ori_shape=(H, W), scale=(1.0, 1.0), flip=False) -> dict:
    meta = dict(img_id=1, img_shape=img_shape, ori_shape=ori_shape, scale_factor=scale, flip=flip,
                flip_direction="horizontal" if flip else None)
    ds = DetDataSample(metainfo=meta)
    fields = dict(bboxes=torch.tensor(BOXES), labels=torch.tensor([0, 2]))
    if masks is not None:
        fields["masks"] = masks
    ds.gt_instances = InstanceData(**fields)
    return {"inputs": _image(), "data_samples": ds}


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return build_detector(mask_rcnn_cfg())


def test_training_adds_loss_mask_and_its_gradient_reaches_the_mask_head(model):
    model.train()
    losses = model([_packed(_polys())])
    assert {"loss_rpn_cls", "loss_cls", "loss_bbox", "loss_mask"} <= set(losses)
    assert torch.isfinite(losses["loss_mask"]) and losses["loss_mask"] > 0
    model.zero_grad()
    losses["loss_mask"].backward()
    assert model.roi_head.mask_head.conv_logits.weight.grad.abs().sum() > 0
    assert model.roi_head.bbox_head.fc_cls.weight.grad is None  # the mask loss trains the mask branch


@pytest.mark.parametrize("form", ["mm2", "d2_polygon", "d2_bitmask", "mm3_bitmap"])
def test_every_batch_form_carries_its_masks_to_the_same_loss(model, form):
    polys = _polys()
    torch.manual_seed(1)
    model.train()
    reference = model([_packed(polys)])["loss_mask"]
    img = _image()
    if form == "mm2":
        sample = dict(img=img, img_metas=dict(img_shape=(H, W, 3), ori_shape=(H, W, 3), scale_factor=1.0),
                      gt_bboxes=torch.tensor(BOXES), gt_labels=torch.tensor([0, 2]), gt_masks=polys)
    elif form.startswith("d2"):
        # Detectron2-form images are normalised by the model: give it the pipeline's normalised image.
        inst = Instances((H, W), gt_boxes=Boxes(torch.tensor(BOXES)), gt_classes=torch.tensor([0, 2]))
        inst.gt_masks = (PolygonMasks(polys.polygons) if form == "d2_polygon"
                         else BitMasks(torch.from_numpy(polys.to_ndarray().astype(bool))))
        sample = dict(image=img * model.pixel_std + model.pixel_mean, instances=inst, height=H, width=W)
    else:
        sample = _packed(BitmapMasks(polys.to_ndarray(), H, W))
    torch.manual_seed(1)
    loss = model([sample])["loss_mask"]
    # Bitmap targets (RoIAlign of the rasterized mask) differ slightly from rasterized polygons.
    tol = 1e-5 if form in ("mm2", "d2_polygon") else 0.05
    assert abs(loss.item() - reference.item()) <= tol * max(1.0, reference.item())


def test_training_without_masks_says_how_to_load_them(model):
    model.train()
    with pytest.raises(KeyError, match="with_mask=True"):
        model([_packed(None)])


def test_a_mask_per_box_is_required(model):
    model.train()
    sample = dict(img=_image(), img_metas=dict(img_shape=(H, W, 3)), gt_bboxes=torch.tensor(BOXES),
                  gt_labels=torch.tensor([0, 2]), gt_masks=_polys()[[0]])
    with pytest.raises(ValueError, match=r"gt_masks'\]: 1 masks for 2 gt boxes"):
        model([sample])


def test_eval_pastes_masks_at_the_original_image_size(model):
    model.eval()
    with torch.no_grad():
        out = model([_packed(img_shape=(H, W), ori_shape=(H // 2, W // 2), scale=(2.0, 2.0))])[0]
    n = len(out["boxes"])
    assert n > 0 and out["masks"].dtype == torch.bool and out["masks"].shape == (n, H // 2, W // 2)
    # every pasted mask lies inside its (original-pixel) box, up to a pixel of sampling margin
    for box, mask in zip(out["boxes"], out["masks"]):
        ys, xs = torch.nonzero(mask, as_tuple=True)
        if len(xs):
            assert xs.min() >= box[0].floor() - 1 and xs.max() <= box[2].ceil() + 1
            assert ys.min() >= box[1].floor() - 1 and ys.max() <= box[3].ceil() + 1


def test_masks_of_a_flipped_view_are_flipped_back_with_their_boxes(model):
    # A detection whose mask covers the left half of its box, predicted on a horizontally flipped input:
    # in the original image the box is mirrored and the mask covers its right half.
    from kiln.models.detectors import DetInputs

    box = torch.tensor([[10.0, 8.0, 42.0, 40.0]])
    probs = torch.zeros(1, 28, 28)
    probs[:, :, :14] = 1
    res = dict(boxes=box, scores=torch.ones(1), labels=torch.zeros(1, dtype=torch.long), mask_probs=probs)
    model.eval()
    for flip in (False, True):
        meta = dict(img_shape=(H, W), ori_shape=(H, W), scale_factor=torch.ones(4), flip=flip,
                    flip_direction="horizontal")
        out = model.postprocess([dict(res)], DetInputs(images=None, metas=[meta], sample_index=[0]))[0]
        x0, _, x1, _ = out["boxes"][0].tolist()
        cols = torch.nonzero(out["masks"][0].any(0))[:, 0].float() + 0.5
        mid = (x0 + x1) / 2
        assert (x0, x1) == ((W - 42.0, W - 10.0) if flip else (10.0, 42.0))
        if flip:
            assert cols.min() >= mid and cols.max() <= x1
        else:
            assert cols.min() >= x0 and cols.max() <= mid


def test_data_preprocessor_pad_mask_pads_training_masks_to_the_batch():
    cfg = mask_rcnn_cfg()
    cfg["data_preprocessor"] = dict(type="DetDataPreprocessor", mean=[0.0] * 3, std=[1.0] * 3,
                                    pad_size_divisor=32, pad_mask=True)
    model = build_detector(cfg).train()
    inputs = model.preprocess([_packed(_polys())])
    assert tuple(inputs.images.tensor.shape[-2:]) == (64, 96)
    small = _packed(BitmapMasks(_polys().to_ndarray()[:, :50, :70], 50, 70), img_shape=(50, 70))
    small["inputs"] = small["inputs"][:, :50, :70]
    inputs = model.preprocess([small])
    assert (inputs.gt_masks[0].height, inputs.gt_masks[0].width) == (64, 96)
    assert inputs.gt_masks[0].to_ndarray()[:, 50:].sum() == 0
    cfg["data_preprocessor"]["pad_mask"] = False
    plain = build_detector(cfg).train().preprocess([small])
    assert (plain.gt_masks[0].height, plain.gt_masks[0].width) == (50, 70)


def test_pad_seg_is_still_refused():
    cfg = mask_rcnn_cfg()
    cfg["data_preprocessor"] = dict(type="DetDataPreprocessor", pad_seg=True)
    with pytest.raises(ValueError, match="pad_seg=True"):
        build_detector(cfg)


def test_a_mask_rcnn_without_mask_head_is_an_error():
    cfg = faster_rcnn_cfg()
    cfg["type"] = "MaskRCNN"
    with pytest.raises(ValueError, match="needs roi_head.mask_head"):
        build_detector(cfg)


def test_class_agnostic_mask_rcnn_trains_and_predicts():
    model = build_detector(mask_rcnn_cfg(class_agnostic=True)).train()
    assert model.roi_head.mask_head.conv_logits.out_channels == 1
    assert torch.isfinite(model([_packed(_polys())])["loss_mask"])
    model.eval()
    with torch.no_grad():
        out = model([_packed()])[0]
    assert out["masks"].shape[1:] == (H, W)


def _cascade_cfg(**roi_head) -> dict:
    cfg = mask_rcnn_cfg()
    rh = cfg["roi_head"]
    stage_train = cfg["train_cfg"]["rcnn"]
    cascade = dict(
        type="CascadeRCNN",
        backbone=cfg["backbone"], neck=cfg["neck"], rpn_head=cfg["rpn_head"],
        roi_head=dict(type="CascadeRoIHead", num_stages=3, stage_loss_weights=[1, 0.5, 0.25],
                      bbox_roi_extractor=rh["bbox_roi_extractor"],
                      bbox_head=[dict(rh["bbox_head"], reg_class_agnostic=True) for _ in range(3)],
                      mask_roi_extractor=rh["mask_roi_extractor"], mask_head=rh["mask_head"]),
        train_cfg=dict(cfg["train_cfg"], rcnn=[copy.deepcopy(stage_train) for _ in range(3)]),
        test_cfg=cfg["test_cfg"])
    cascade["roi_head"].update(roi_head)
    return cascade


def test_cascade_mask_rcnn_trains_a_mask_head_per_stage_and_predicts_masks():
    model = build_detector(_cascade_cfg()).train()
    losses = model([_packed(_polys())])
    assert {"s0.loss_mask", "s1.loss_mask", "s2.loss_mask"} <= set(losses)
    assert len(model.roi_head.mask_head) == 3
    model.eval()
    with torch.no_grad():
        out = model([_packed()])[0]
    assert out["masks"].shape == (len(out["boxes"]), H, W)


def test_detectron2_cascade_mask_has_one_mask_head_trained_on_the_first_stage():
    model = build_detector(_cascade_cfg(mask_head_per_stage=False)).train()
    assert any(k.startswith("roi_head.mask_head.convs.0.") for k in model.state_dict())  # Detectron2's layout
    losses = model([_packed(_polys())])
    assert "loss_mask" in losses and not any(k.startswith("s") and "mask" in k for k in losses)
    model.eval()
    with torch.no_grad():
        out = model([_packed()])[0]
    assert out["masks"].shape == (len(out["boxes"]), H, W)
    with pytest.raises(ValueError, match="give one dict"):
        three = [mask_rcnn_cfg()["roi_head"]["mask_head"]] * 3
        build_detector(_cascade_cfg(mask_head_per_stage=False, mask_head=three))


@pytest.mark.parametrize("name", ["kiln::shapes/mask_rcnn_r18_fpn_shapes.py",
                                  "kiln::mask_rcnn/mask_rcnn_r50_fpn_1x_coco.py",
                                  "kiln::mask_rcnn/mask_rcnn_r50_fpn_2x_coco.py"])
def test_shipped_mask_rcnn_configs_build_and_load_masks(name):
    from kiln.config import Config

    cfg = Config.fromfile(name)
    with torch.device("meta"):  # the build logic only
        model = build_detector(dict(cfg.model, pretrained=None))
    assert type(model).__name__ == "MaskRCNN"
    assert model.roi_head.mask_head.num_classes == model.roi_head.bbox_head.num_classes
    steps = {s["type"]: s for s in cfg.data.train.pipeline}
    assert steps["LoadAnnotations"]["with_mask"] and "gt_masks" in steps["Collect"]["keys"]
    assert list(cfg.evaluation.metric) == ["bbox", "segm"]
