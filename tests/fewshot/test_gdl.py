"""The Gradient Decoupled Layer: identity forward, gradient scaled by λ backward; the DeFRCN detector puts
one in front of the RPN and one in front of the RoI head, with DeFRCN's config keys."""

from __future__ import annotations

import pytest
import torch
from fewshot_fixtures import defrcn_yaml

from kiln.models.fewshot import AffineLayer, decouple_layer


@pytest.mark.parametrize("scale", [0.0, 0.001, 0.75, 1.0, 2.5])
def test_backward_through_gdl_is_scale_times_identity(scale):
    x = torch.randn(2, 3, 4, 5, dtype=torch.float64, requires_grad=True)
    y = decouple_layer(x, scale)
    assert torch.equal(y, x)
    # the Jacobian of a vector-Jacobian product: grad_in = scale * grad_out for any grad_out
    g = torch.randn_like(x)
    (grad,) = torch.autograd.grad(y, x, g)
    assert torch.allclose(grad, scale * g)
    jac = torch.autograd.functional.jacobian(lambda t: decouple_layer(t, scale), x[0, 0, 0])
    assert torch.allclose(jac, scale * torch.eye(5, dtype=torch.float64))


def test_affine_layer_starts_as_identity_and_learns_per_channel_scale_and_shift():
    layer = AffineLayer(3)
    x = torch.randn(2, 3, 4, 4)
    assert torch.equal(layer(x), x)
    layer(x).sum().backward()
    assert layer.weight.grad.shape == (1, 3, 1, 1) and layer.bias.grad.shape == (1, 3, 1, 1)
    assert torch.allclose(layer.bias.grad.flatten(), torch.full((3,), 32.0))
    with pytest.raises(ValueError, match=r"AffineLayer\(3\) got a map of shape \(2, 4, 4, 4\)"):
        layer(torch.randn(2, 4, 4, 4))


def _model(tmp_path, fsunit, *opts):
    from kiln.cli.d2_config import load_d2_config
    from kiln.registry import MODELS

    path = tmp_path / "m.yaml"
    path.write_text(defrcn_yaml(2, finetune=False, iters=1))
    cfg = load_d2_config(str(path), ["DATASETS.TRAIN", "('fsunit_trainval_base',)", "DATASETS.TEST", "()",
                                     *opts])
    torch.manual_seed(0)
    return cfg, MODELS.build(dict(cfg.model))


def _sample(i):
    g = torch.Generator().manual_seed(i)
    return dict(img=torch.randn(3, 64, 64, generator=g),
                img_metas=dict(image_id=i, ori_shape=(64, 64, 3), img_shape=(64, 64, 3),
                               scale_factor=[1.0] * 4),
                gt_bboxes=torch.tensor([[8.0, 8.0, 40.0, 36.0]]), gt_labels=torch.tensor([1]))


def test_defrcn_keys_build_a_detector_with_both_gdls(tmp_path, fsunit):
    cfg, model = _model(tmp_path, fsunit)
    assert cfg.model["type"] == "DeFRCN"
    assert cfg.model["gdl"] == dict(channels=32, rpn_decouple=True, rpn_scale=0.0, rcnn_decouple=True,
                                    rcnn_scale=0.75)
    assert {"affine_rpn.weight", "affine_rpn.bias", "affine_rcnn.weight", "affine_rcnn.bias"} <= set(
        model.state_dict())


def test_rpn_scale_zero_stops_the_rpn_gradient_at_the_backbone(tmp_path, fsunit):
    _, model = _model(tmp_path, fsunit)
    model.train()
    losses = model([_sample(1), _sample(2)])
    rpn_loss = losses["loss_rpn_cls"] + losses["loss_rpn_bbox"]
    rpn_loss.backward(retain_graph=True)
    # the RPN's own branch learns, the shared backbone and neck get nothing from it (scale 0)
    assert model.affine_rpn.weight.grad.abs().sum() > 0
    for p in [*model.backbone.parameters(), *model.neck.parameters()]:
        assert p.grad is None or p.grad.abs().sum() == 0
    model.zero_grad()
    (losses["loss_cls"] + losses["loss_bbox"]).backward()
    neck_grad = sum(p.grad.abs().sum() for p in model.neck.parameters() if p.grad is not None)
    assert neck_grad > 0  # the R-CNN head's scale is 0.75: its gradient reaches the neck


def test_rcnn_gradient_at_the_features_is_scaled_by_backward_scale(tmp_path, fsunit):
    """Same weights and batch, ROI_HEADS.BACKWARD_SCALE 0.75 vs 1.5: the neck's gradient from the R-CNN loss
    doubles exactly (the affine layer starts as an identity)."""
    grads = []
    for scale in ("0.75", "1.5"):
        _, model = _model(tmp_path, fsunit, "MODEL.ROI_HEADS.BACKWARD_SCALE", scale)
        model.train()
        torch.manual_seed(1)
        losses = model([_sample(1), _sample(2)])
        (losses["loss_cls"] + losses["loss_bbox"]).backward()
        grads.append([p.grad for p in model.neck.parameters()])
    pairs = [(a, b) for a, b in zip(*grads) if a is not None]
    assert pairs and all(b is not None for _, b in pairs)
    a, b = (torch.cat([t.flatten() for t in ts]) for ts in zip(*pairs))
    assert a.abs().sum() > 0
    assert torch.allclose(b, 2 * a, rtol=1e-4, atol=1e-7)


def test_cls_dropout_drops_the_classifier_input_in_training_only(tmp_path, fsunit):
    _, model = _model(tmp_path, fsunit, "MODEL.ROI_HEADS.CLS_DROPOUT", "True",
                      "MODEL.ROI_HEADS.DROPOUT_RATIO", "0.5")
    head = model.roi_head.bbox_head
    x = torch.ones(4, head.fc_cls.in_features)
    head.train()
    torch.manual_seed(0)
    a, b = head.fc_cls(x), head.fc_cls(x)
    assert not torch.allclose(a, b)  # a fresh dropout mask each call
    assert torch.equal(head.fc_reg(x), head.fc_reg(x))  # the regressor reads the features undropped
    head.eval()
    assert torch.allclose(head.fc_cls(x), torch.nn.functional.linear(x, head.fc_cls.weight, head.fc_cls.bias))
    assert "roi_head.bbox_head.fc_cls.weight" in model.state_dict()  # the layer keeps its name


def test_mm_style_defrcn_config_errors_name_the_key(tmp_path, fsunit):
    from kiln.registry import MODELS

    cfg, _ = _model(tmp_path, fsunit)
    base = dict(cfg.model)
    with pytest.raises(KeyError, match=r"model.gdl=dict\(channels=C, ...\) is required"):
        MODELS.build({**base, "gdl": None})
    with pytest.raises(KeyError, match=r"model.gdl has unknown keys \['rpn_sclae'\]"):
        MODELS.build({**base, "gdl": {**base["gdl"], "rpn_sclae": 0.5}})
    with pytest.raises(KeyError, match="model.pcb needs support="):
        MODELS.build({**base, "pcb": dict(model_path="x.pth")})
    with pytest.raises(ValueError, match=r"model.cls_dropout must be in \[0, 1\)"):
        MODELS.build({**base, "cls_dropout": 1.0})
