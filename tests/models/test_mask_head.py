"""Mask R-CNN's mask head (FCNMaskHead), its targets and the paste-back into the image."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from kiln.models.roi_heads import FCNMaskHead, mask_target, paste_masks_in_image
from kiln.registry import MODELS
from kiln.structures.masks import BitmapMasks, PolygonMasks


def _head(**kw) -> FCNMaskHead:
    return MODELS.build(dict(type="FCNMaskHead", **kw))


# ---------------------------------------------------------------------- head
def test_head_upsamples_14_to_28_with_one_map_per_class_under_mmdetection_names():
    head = _head(num_convs=4, in_channels=16, conv_out_channels=8, num_classes=3)
    out = head(torch.randn(5, 16, 14, 14))
    assert out.shape == (5, 3, 28, 28) and head.mask_size == 28
    keys = set(head.state_dict())
    assert {"convs.0.conv.weight", "convs.3.conv.bias", "upsample.weight", "upsample.bias",
            "conv_logits.weight", "conv_logits.bias"} <= keys
    assert tuple(head.state_dict()["upsample.weight"].shape) == (8, 8, 2, 2)  # stride-2 transposed conv


def test_class_agnostic_head_predicts_one_map_and_gn_convs_use_mmcv_names():
    head = _head(num_convs=2, in_channels=8, conv_out_channels=8, num_classes=5, class_agnostic=True,
                 norm_cfg=dict(type="GN", num_groups=4))
    assert head(torch.randn(2, 8, 14, 14)).shape == (2, 1, 28, 28)
    keys = set(head.state_dict())
    assert "convs.1.gn.weight" in keys and "convs.1.conv.bias" not in keys  # no conv bias before a norm


def test_c4_head_has_no_convs_and_upsamples_res5_features():
    head = _head(num_convs=0, roi_feat_size=7, in_channels=64, conv_out_channels=16, num_classes=2)
    assert head(torch.randn(3, 64, 7, 7)).shape == (3, 2, 14, 14) and head.mask_size == 14
    assert tuple(head.upsample.weight.shape) == (64, 16, 2, 2)


@pytest.mark.parametrize("kind", ["nearest", "bilinear"])
def test_interpolating_upsample_has_no_parameters(kind):
    head = _head(num_convs=1, in_channels=8, conv_out_channels=8, num_classes=2,
                 upsample_cfg=dict(type=kind, scale_factor=2))
    assert head(torch.randn(1, 8, 14, 14)).shape == (1, 2, 28, 28)
    assert not any(k.startswith("upsample.") for k in head.state_dict())


@pytest.mark.parametrize("kw, says", [
    (dict(upsample_cfg=dict(type="carafe", scale_factor=2)), "upsample_cfg.type='carafe'"),
    (dict(conv_cfg=dict(type="ConvWS")), "conv_cfg"),
    (dict(predictor_cfg=dict(type="NormedConv2d")), "predictor_cfg"),
    (dict(loss_mask=dict(type="CrossEntropyLoss", use_sigmoid=True)), "use_mask=True"),
    (dict(init_cfg=dict(type="Kaiming")), "init_cfg"),
])
def test_options_kiln_cannot_honour_are_refused_by_name(kw, says):
    with pytest.raises((ValueError, NotImplementedError), match=says):
        _head(num_convs=1, in_channels=8, conv_out_channels=8, num_classes=2, **kw)


# ---------------------------------------------------------------------- loss
def test_loss_is_bce_of_each_rois_own_class_map():
    head = _head(num_convs=0, in_channels=4, conv_out_channels=4, num_classes=3,
                 loss_mask=dict(type="CrossEntropyLoss", use_mask=True, loss_weight=2.0))
    logits = torch.randn(4, 3, 28, 28)
    targets = (torch.rand(4, 28, 28) > 0.5).float()
    labels = torch.tensor([2, 0, 1, 2])
    loss = head.loss(logits, targets, labels)["loss_mask"]
    own = logits[torch.arange(4), labels]
    assert torch.allclose(loss, 2.0 * F.binary_cross_entropy_with_logits(own, targets))
    other = logits[torch.arange(4), (labels + 1) % 3]
    assert not torch.allclose(loss, 2.0 * F.binary_cross_entropy_with_logits(other, targets))


def test_class_agnostic_loss_reads_the_single_map():
    head = _head(num_convs=0, in_channels=4, conv_out_channels=4, num_classes=3, class_agnostic=True)
    logits = torch.randn(2, 1, 28, 28)
    targets = (torch.rand(2, 28, 28) > 0.5).float()
    loss = head.loss(logits, targets, torch.tensor([2, 1]))["loss_mask"]
    assert torch.allclose(loss, F.binary_cross_entropy_with_logits(logits[:, 0], targets))


def test_no_positive_roi_gives_a_zero_loss_that_still_reaches_the_head():
    head = _head(num_convs=1, in_channels=4, conv_out_channels=4, num_classes=2)
    logits = head(torch.randn(0, 4, 14, 14))
    loss = head.loss(logits, torch.zeros(0, 28, 28), torch.zeros(0, dtype=torch.long))["loss_mask"]
    loss.backward()
    assert loss.item() == 0.0 and head.conv_logits.weight.grad is not None


def test_targets_of_another_size_than_the_predictions_are_an_error():
    head = _head(num_convs=0, in_channels=4, conv_out_channels=4, num_classes=2)
    with pytest.raises(ValueError, match="mask_size=28"):
        head.loss(torch.randn(1, 2, 28, 28), torch.zeros(1, 14, 14), torch.zeros(1, dtype=torch.long))


def test_predicted_probabilities_are_the_sigmoid_of_each_detections_class_map():
    head = _head(num_convs=0, in_channels=4, conv_out_channels=4, num_classes=3)
    logits = torch.randn(2, 3, 28, 28)
    probs = head.predict_probs(logits, torch.tensor([1, 2]))
    assert torch.allclose(probs, torch.stack([logits[0, 1], logits[1, 2]]).sigmoid())


# ---------------------------------------------------------------------- targets
def _square_poly(x0, y0, x1, y1):
    return [np.array([x0, y0, x1, y0, x1, y1, x0, y1], dtype=np.float64)]


@pytest.mark.parametrize("kind", ["polygon", "bitmap"])
def test_target_of_a_roi_is_its_gt_mask_cropped_to_the_roi(kind):
    # Two objects; RoI 0 is exactly object 1's box, RoI 1 is object 0's box widened to the right by its
    # own width, so object 0 fills the left half of it.
    polys = PolygonMasks([_square_poly(8, 8, 24, 24), _square_poly(32, 4, 60, 32)], 40, 64)
    masks = polys if kind == "polygon" else BitmapMasks(polys.to_ndarray(), 40, 64)
    rois = torch.tensor([[32.0, 4.0, 60.0, 32.0], [8.0, 8.0, 40.0, 24.0]])
    t = mask_target([rois], [torch.tensor([1, 0])], [masks], 28)
    assert t.shape == (2, 28, 28) and t.dtype == torch.float32
    assert t[0].mean() > 0.97  # the whole RoI is object 1
    assert t[1, :, :13].mean() > 0.97 and t[1, :, 15:].sum() == 0  # left half object 0, right half empty


def test_targets_of_several_images_are_concatenated_in_image_order():
    a = PolygonMasks([_square_poly(0, 0, 10, 10)], 20, 20)
    b = PolygonMasks([_square_poly(0, 0, 10, 10)], 20, 20)
    rois = [torch.tensor([[0.0, 0.0, 10.0, 10.0]]), torch.tensor([[10.0, 10.0, 20.0, 20.0]] * 2)]
    t = mask_target(rois, [torch.tensor([0]), torch.tensor([0, 0])], [a, b], (14, 14))
    assert t.shape == (3, 14, 14)
    assert t[0].min() == 1 and t[1:].max() == 0  # image 1's RoIs lie outside its object


def test_gt_masks_of_the_wrong_type_are_an_error_naming_the_fix():
    with pytest.raises(TypeError, match="with_mask=True"):
        mask_target([torch.zeros(1, 4)], [torch.zeros(1, dtype=torch.long)], [np.zeros((1, 8, 8))], 28)


# ---------------------------------------------------------------------- paste-back
def _expected(boxes: torch.Tensor, h: int, w: int, ones_cols: int = 28, size: int = 28) -> torch.Tensor:
    """Where a 28×28 mask whose first ``ones_cols`` columns are 1 pastes, worked out by hand.

    Pixel centre ``c`` sits at mask coordinate ``m = (c - x0) / (x1 - x0) · 28 − 0.5``; bilinear sampling
    with zeros outside reads ``clamp(min(m + 1, ones − m), 0, 1)`` along each axis, and the two axes
    multiply. Pasted pixels are those reading at least 0.5.
    """
    def axis(lo, hi, n, ones):
        m = (torch.arange(n, dtype=torch.float64) + 0.5 - lo) / (hi - lo) * size - 0.5
        return torch.clamp(torch.minimum(m + 1, ones - m), 0, 1)

    out = []
    for x0, y0, x1, y1 in boxes.double().tolist():
        out.append(axis(y0, y1, h, size)[:, None] * axis(x0, x1, w, ones_cols)[None, :] >= 0.5)
    return torch.stack(out)


def test_a_full_mask_pastes_onto_its_box():
    g = torch.Generator().manual_seed(0)
    xy0 = torch.rand(20, 2, generator=g) * 50
    wh = torch.rand(20, 2, generator=g) * 40 + 1.3
    boxes = torch.cat([xy0, xy0 + wh], 1)
    pasted = paste_masks_in_image(torch.ones(20, 28, 28), boxes, (70, 90))
    assert pasted.dtype == torch.bool and pasted.shape == (20, 70, 90)
    assert torch.equal(pasted, _expected(boxes, 70, 90))


def test_a_half_mask_pastes_onto_the_left_half_of_its_box():
    boxes = torch.tensor([[3.3, 4.1, 40.7, 30.2], [10.2, 0.6, 17.9, 9.3]])
    half = torch.zeros(2, 28, 28)
    half[:, :, :14] = 1
    pasted = paste_masks_in_image(half, boxes, (32, 48))
    assert torch.equal(pasted, _expected(boxes, 32, 48, ones_cols=14))
    mid = (boxes[:, 0] + boxes[:, 2]) / 2
    cols = torch.nonzero(pasted.any(1))
    assert bool((cols[:, 1] + 0.5 <= mid[cols[:, 0]]).all())  # nothing right of the box's middle


def test_boxes_reaching_past_the_image_are_cut_at_its_border():
    boxes = torch.tensor([[-5.2, -3.1, 12.6, 8.3], [20.4, 10.3, 40.9, 30.1]])
    pasted = paste_masks_in_image(torch.ones(2, 28, 28), boxes, (16, 24))
    assert torch.equal(pasted, _expected(boxes, 16, 24))


def test_a_negative_threshold_keeps_soft_masks_as_uint8():
    pasted = paste_masks_in_image(torch.full((1, 28, 28), 0.5), torch.tensor([[2.2, 2.2, 12.8, 12.8]]),
                                  (16, 16), threshold=-1)
    assert pasted.dtype == torch.uint8 and int(pasted[0, 7, 7]) == 127 and int(pasted[0, 0, 0]) == 0


def test_no_detection_pastes_an_empty_stack():
    assert paste_masks_in_image(torch.zeros(0, 28, 28), torch.zeros(0, 4), (5, 7)).shape == (0, 5, 7)


def test_boxes_and_masks_of_different_counts_are_an_error():
    with pytest.raises(ValueError, match="one per mask"):
        paste_masks_in_image(torch.ones(2, 28, 28), torch.zeros(3, 4), (8, 8))
