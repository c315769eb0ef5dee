"""MMDetection v1 anchor-head keys -> anchor_generator/bbox_coder (pure); heads take v2 arguments only."""

from __future__ import annotations

import pytest

from kiln.config.dialects.mmdet_v1_heads import translate_head, translate_model

SEED_HEAD = dict(type="RetinaHead", num_classes=81, in_channels=256, stacked_convs=4, feat_channels=256,
                 octave_base_scale=4, scales_per_octave=3, anchor_ratios=[0.5, 1.0, 2.0],
                 anchor_strides=[8, 16, 32, 64, 128], target_means=[0.0] * 4, target_stds=[1.0] * 4)


def test_seed_001_retina_head_becomes_the_v2_spelling_with_foreground_classes():
    out = translate_head(SEED_HEAD)
    assert out == dict(
        type="RetinaHead", num_classes=80, in_channels=256, stacked_convs=4, feat_channels=256,
        anchor_generator=dict(type="AnchorGenerator", strides=[8, 16, 32, 64, 128], ratios=[0.5, 1.0, 2.0],
                              octave_base_scale=4, scales_per_octave=3),
        bbox_coder=dict(type="DeltaXYWHBBoxCoder", target_means=[0.0] * 4, target_stds=[1.0] * 4))
    assert SEED_HEAD["num_classes"] == 81  # the input is not modified


def test_partial_v1_retina_head_gets_retinanet_defaults():
    out = translate_head(dict(type="RetinaHead", num_classes=3, in_channels=8, anchor_ratios=[1.0]))
    assert out["anchor_generator"] == dict(type="AnchorGenerator", strides=[8, 16, 32, 64, 128], ratios=[1.0],
                                           octave_base_scale=4, scales_per_octave=3)
    assert out["num_classes"] == 2


def test_v1_anchor_head_uses_explicit_scales_and_base_sizes():
    out = translate_head(dict(type="AnchorHead", num_classes=5, in_channels=8, anchor_scales=[2, 4],
                              anchor_base_sizes=[4, 8, 16, 32, 64]))
    assert out["anchor_generator"] == dict(type="AnchorGenerator", strides=[4, 8, 16, 32, 64],
                                           ratios=[0.5, 1.0, 2.0], scales=[2, 4],
                                           base_sizes=[4, 8, 16, 32, 64])


def test_v1_rpn_head_keeps_its_class_count_and_default_coder():
    out = translate_head(dict(type="RPNHead", in_channels=16, anchor_scales=[4], anchor_strides=[4, 8]))
    assert out == dict(type="RPNHead", in_channels=16,
                       anchor_generator=dict(type="AnchorGenerator", scales=[4], ratios=[0.5, 1.0, 2.0],
                                             strides=[4, 8]))


def test_v2_heads_and_other_modules_pass_unchanged():
    v2 = dict(type="RetinaHead", num_classes=3, anchor_generator=dict(type="AnchorGenerator"))
    assert translate_head(v2) == v2
    model = dict(type="FasterRCNN", backbone=dict(type="ResNet", depth=50), rpn_head=dict(type="RPNHead"),
                 train_cfg=dict(rpn=dict(anchor_scales=[1])))
    assert translate_model(model) == model  # train_cfg is not a head, even with a head-like key


def test_nested_and_ensemble_models_are_translated():
    model = dict(type="RetinaNet", bbox_head=dict(SEED_HEAD))
    assert translate_model(model)["bbox_head"]["num_classes"] == 80
    assert [m["bbox_head"]["num_classes"] for m in translate_model([model, model])] == [80, 80]


def test_mixing_schemas_and_a_v1_count_without_background_are_errors():
    with pytest.raises(ValueError, match=r"model.bbox_head \(RetinaHead\): config mixes MMDetection v1 keys"):
        translate_model(dict(bbox_head=dict(SEED_HEAD, anchor_generator=dict(type="AnchorGenerator"))))
    with pytest.raises(ValueError, match="v1 num_classes=1 includes background and must be >= 2"):
        translate_head(dict(SEED_HEAD, num_classes=1))
    with pytest.raises(ValueError, match=r"v1 keys \['octave_base_scale'\] are not RPN keys"):
        translate_head(dict(type="RPNHead", octave_base_scale=4))


def test_heads_no_longer_take_v1_arguments():
    from kiln.registry import MODELS

    with pytest.raises(TypeError, match="anchor_strides"):
        MODELS.build(dict(type="RetinaHead", num_classes=3, in_channels=8, anchor_strides=[8]))
