"""build_detector: seed-001 config unchanged, v1/v2 schemas, train/test_cfg placement, ensembles."""

from __future__ import annotations

import copy

import pytest
import torch
import torchvision
from retina_configs import SEED_MODEL, SEED_TEST_CFG, SEED_TRAIN_CFG, tiny

from kiln.models import build_detector
from kiln.models.detectors import DetectorEnsemble, RetinaNet


def test_seed_retinanet_r101_config_builds_unchanged_and_trains_one_step(tmp_path, monkeypatch):
    monkeypatch.setenv("KILN_HOME", str(tmp_path))  # no cached resnet101 there: random init with a warning
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    # The build reads no file; the pretrained lookup happens when training starts (first train step).
    model = build_detector(copy.deepcopy(SEED_MODEL), train_cfg=SEED_TRAIN_CFG, test_cfg=SEED_TEST_CFG)
    assert isinstance(model, RetinaNet)
    assert model.backbone.depth == 101 and len(model.backbone.layer3) == 23
    assert model.bbox_head.num_classes == 80 and model.bbox_head.cls_out_channels == 80  # v1: 81 incl. bg
    assert model.bbox_head.num_anchors == 9
    assert not any(p.requires_grad for p in model.backbone.layer1.parameters())  # frozen_stages=1
    model.train()
    batch = [
        dict(
            img=torch.randn(3, 64, 64),
            img_metas=dict(img_shape=(64, 64, 3), ori_shape=(64, 64, 3)),
            gt_bboxes=torch.tensor([[8.0, 8.0, 40.0, 48.0]]),
            gt_labels=torch.tensor([79]),
        )
    ]
    with pytest.warns(UserWarning, match="resnet101"):
        losses = model(batch)
    sum(losses.values()).backward()
    assert model.bbox_head.retina_cls.weight.grad is not None
    assert model.backbone.layer4[0].conv1.weight.grad is not None


def test_v1_and_v2_head_schemas_build_the_same_head():
    v1 = dict(
        type="RetinaHead",
        num_classes=4,
        in_channels=8,
        feat_channels=8,
        stacked_convs=1,
        octave_base_scale=4,
        scales_per_octave=3,
        anchor_ratios=[0.5, 1.0, 2.0],
        anchor_strides=[8, 16, 32, 64, 128],
        target_means=[0.0] * 4,
        target_stds=[0.1, 0.1, 0.2, 0.2],
    )
    v2 = dict(
        type="RetinaHead",
        num_classes=3,
        in_channels=8,
        feat_channels=8,
        stacked_convs=1,
        anchor_generator=dict(
            type="AnchorGenerator",
            octave_base_scale=4,
            scales_per_octave=3,
            ratios=[0.5, 1.0, 2.0],
            strides=[8, 16, 32, 64, 128],
        ),
        bbox_coder=dict(type="DeltaXYWHBBoxCoder", target_stds=[0.1, 0.1, 0.2, 0.2]),
    )
    from kiln.models import build_head

    h1, h2 = build_head(v1), build_head(v2)
    assert h1.num_classes == h2.num_classes == 3 and h1.cls_out_channels == h2.cls_out_channels == 3
    sizes = [(4, 4), (2, 2), (1, 1), (1, 1), (1, 1)]
    for a, b in zip(h1.prior_generator.grid_priors(sizes), h2.prior_generator.grid_priors(sizes)):
        assert torch.equal(a, b)
    assert h1.bbox_coder.stds == h2.bbox_coder.stds


def test_mixing_v1_and_v2_head_keys_is_rejected():
    cfg = tiny()
    cfg["bbox_head"]["anchor_ratios"] = [1.0]
    with pytest.raises(ValueError, match="mixes MMDetection v1 keys"):
        build_detector(cfg)


def test_train_and_test_cfg_may_be_nested_or_top_level():
    cfg = tiny()
    train_cfg, test_cfg = cfg.pop("train_cfg"), cfg.pop("test_cfg")
    top = build_detector(cfg, train_cfg=train_cfg, test_cfg=test_cfg)
    nested = build_detector(tiny())
    assert top.bbox_head.test_cfg == nested.bbox_head.test_cfg == test_cfg
    assert top.bbox_head.assigner.pos_iou_thr == nested.bbox_head.assigner.pos_iou_thr == 0.5


def test_conflicting_top_level_and_nested_test_cfg_is_an_error():
    with pytest.raises(ValueError, match="test_cfg is given both"):
        build_detector(tiny(), test_cfg=dict(score_thr=0.3))


def test_detector_level_pretrained_loads_into_the_backbone(tmp_path):
    tv = torchvision.models.resnet18(weights=None)
    torch.save(tv.state_dict(), tmp_path / "r18.pth")
    cfg = tiny(pretrained=str(tmp_path / "r18.pth"))
    cfg["backbone"]["base_channels"] = 64
    cfg["neck"]["in_channels"] = [128, 256, 512]
    model = build_detector(cfg)
    assert not torch.equal(model.backbone.layer2[0].conv1.weight, tv.layer2[0].conv1.weight)  # not at build
    model.init_weights()
    assert torch.equal(model.backbone.layer2[0].conv1.weight, tv.layer2[0].conv1.weight)


def test_a_list_of_models_builds_an_ensemble_that_merges_predictions():
    torch.manual_seed(0)
    ens = build_detector([tiny(), tiny()])
    assert isinstance(ens, DetectorEnsemble) and len(ens.models) == 2
    for m in ens.models:
        m.bbox_head.test_cfg = dict(tiny()["test_cfg"], score_thr=0.0, max_per_img=7)
    ens.max_per_img = 7
    ens.eval()
    img = torch.randn(3, 64, 64)
    batch = [dict(img=img, img_metas=dict(img_shape=(64, 64, 3)))]
    with torch.no_grad():
        out = ens(batch)
        singles = [m(batch)[0] for m in ens.models]
    assert len(out) == 1 and len(out[0]["boxes"]) == 7
    top = max(s["scores"].max().item() for s in singles)
    assert out[0]["scores"].max().item() == pytest.approx(top)


def test_unknown_component_error_names_the_config_key():
    cfg = tiny()
    cfg["neck"]["type"] = "FPNN"
    with pytest.raises(KeyError, match=r"model\.neck.*FPN"):
        build_detector(cfg)


def test_an_nms_kiln_does_not_run_is_refused_when_the_model_is_built():
    """MMDetection's faster_rcnn_r50_fpn_soft_nms config: soft-NMS is refused at build time, naming the key,
    not at the first evaluation after an epoch of training."""
    from twostage_configs import faster_rcnn_cfg

    cfg = faster_rcnn_cfg()
    build_detector(copy.deepcopy(cfg))
    cfg["test_cfg"]["rcnn"]["nms"] = dict(type="soft_nms", iou_threshold=0.5, min_score=0.05)
    with pytest.raises(ValueError, match=r"model\.test_cfg\.rcnn\.nms: type='soft_nms'"):
        build_detector(cfg)
