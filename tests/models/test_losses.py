"""Losses against independent computations (torchvision, torch.nn.functional) and their options."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torchvision.ops import generalized_box_iou_loss, sigmoid_focal_loss

from kiln.models import build_loss


def _logits():
    g = torch.Generator().manual_seed(0)
    return torch.randn(12, 4, generator=g), torch.randint(0, 5, (12,), generator=g)  # 4 == background


def test_focal_loss_equals_torchvision_with_class_index_targets():
    pred, labels = _logits()
    loss = build_loss(dict(type="FocalLoss", gamma=2.0, alpha=0.25))(pred, labels)
    onehot = F.one_hot(labels, 5)[:, :4].float()
    assert torch.allclose(loss, sigmoid_focal_loss(pred, onehot, alpha=0.25, gamma=2.0, reduction="mean"))


def test_focal_loss_avg_factor_weight_and_loss_weight():
    pred, labels = _logits()
    w = torch.rand(12)
    loss = build_loss(dict(type="FocalLoss", loss_weight=2.0))(pred, labels, weight=w, avg_factor=3.0)
    per = sigmoid_focal_loss(pred, F.one_hot(labels, 5)[:, :4].float(), reduction="none")
    assert torch.allclose(loss, 2.0 * (per * w[:, None]).sum() / 3.0, rtol=1e-5)


def test_reduction_override_none_returns_elementwise():
    pred, labels = _logits()
    loss = build_loss(dict(type="FocalLoss"))(pred, labels, reduction_override="none")
    assert loss.shape == (12, 4)


def test_softmax_focal_loss_is_rejected_with_advice():
    with pytest.raises(ValueError, match="CrossEntropyLoss"):
        build_loss(dict(type="FocalLoss", use_sigmoid=False))


@pytest.mark.parametrize("beta", [0.11, 1.0])
def test_smooth_l1_equals_torch(beta):
    a, b = torch.randn(20, 4), torch.randn(20, 4)
    loss = build_loss(dict(type="SmoothL1Loss", beta=beta))(a, b)
    assert torch.allclose(loss, F.smooth_l1_loss(a, b, beta=beta))


def test_l1_sum_and_weight():
    a, b, w = torch.randn(6, 4), torch.randn(6, 4), torch.rand(6, 4)
    loss = build_loss(dict(type="L1Loss", reduction="sum", loss_weight=0.5))(a, b, weight=w)
    assert torch.allclose(loss, 0.5 * ((a - b).abs() * w).sum())


def test_avg_factor_with_sum_reduction_is_an_error():
    with pytest.raises(ValueError, match="avg_factor"):
        build_loss(dict(type="L1Loss", reduction="sum"))(torch.ones(2), torch.zeros(2), avg_factor=2)


def test_unknown_reduction_is_reported():
    with pytest.raises(ValueError, match="reduction='avg'"):
        build_loss(dict(type="L1Loss", reduction="avg"))


def test_giou_loss_equals_torchvision():
    a = torch.tensor([[0.0, 0, 10, 10], [5, 5, 15, 20]])
    b = torch.tensor([[1.0, 1, 12, 9], [0, 0, 4, 4]])
    loss = build_loss(dict(type="GIoULoss", loss_weight=2.0))(a, b)
    assert torch.allclose(loss, 2.0 * generalized_box_iou_loss(a, b, reduction="mean"))


def test_cross_entropy_softmax_with_class_weight_and_ignore_index():
    pred, labels = torch.randn(10, 5), torch.randint(0, 5, (10,))
    labels[0] = -100
    cw = [1.0, 2.0, 1.0, 0.5, 1.0]
    loss = build_loss(dict(type="CrossEntropyLoss", class_weight=cw))(pred, labels)
    per = F.cross_entropy(pred, labels, weight=torch.tensor(cw), reduction="none", ignore_index=-100)
    assert torch.allclose(loss, per.mean())
    avg = build_loss(dict(type="CrossEntropyLoss", avg_non_ignore=True))(pred, labels)
    assert torch.allclose(avg, F.cross_entropy(pred, labels, reduction="sum") / 9)


def test_cross_entropy_sigmoid_treats_index_num_classes_as_background():
    pred, labels = _logits()
    loss = build_loss(dict(type="CrossEntropyLoss", use_sigmoid=True))(pred, labels)
    target = F.one_hot(labels, 5)[:, :4].float()
    assert torch.allclose(loss, F.binary_cross_entropy_with_logits(pred, target))
