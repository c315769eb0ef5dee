"""RPNHead: anchors/outputs line up, targets come from the assigner+sampler, proposals are NMSed."""

from __future__ import annotations

import pytest
import torch
from torchvision.ops import box_iou
from twostage_configs import one_thread, rpn_head_cfg, rpn_train_cfg  # noqa: F401  (fixture)

import kiln.models  # noqa: F401
from kiln.registry import MODELS

PROPOSAL_CFG = dict(nms_pre=200, max_per_img=50, nms=dict(type="nms", iou_threshold=0.7), min_bbox_size=0)

pytestmark = pytest.mark.usefixtures("one_thread")


def feats(size: int = 64, channels: int = 16, batch: int = 2) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return [torch.randn(batch, channels, size // s, size // s, generator=g) for s in (4, 8, 16, 32, 64)]


def build(**kw) -> torch.nn.Module:
    torch.manual_seed(0)
    cfg = rpn_head_cfg()
    cfg.update(kw)
    return MODELS.build(cfg)


def test_outputs_have_one_logit_and_four_deltas_per_anchor():
    head = build()
    cls, reg = head(feats())
    assert [c.shape[1] for c in cls] == [3] * 5 and [r.shape[1] for r in reg] == [12] * 5
    assert cls[0].shape[-2:] == (16, 16)


def test_softmax_objectness_has_two_logits_per_anchor():
    head = build(loss_cls=dict(type="CrossEntropyLoss", use_sigmoid=False, loss_weight=1.0))
    cls, _ = head(feats())
    assert cls[0].shape[1] == 6
    props = head.get_proposals(*head(feats()), [(64, 64)] * 2, PROPOSAL_CFG)
    assert all(len(p) <= 50 for p, _ in props)


def test_v1_schema_builds_the_same_anchors_as_v2():
    from kiln.models import build_head

    v1 = build_head(dict(type="RPNHead", in_channels=16, feat_channels=16, anchor_scales=[4],
                           anchor_ratios=[0.5, 1.0, 2.0], anchor_strides=[4, 8, 16, 32, 64],
                           target_means=[0.0] * 4, target_stds=[1.0] * 4,
                           loss_cls=dict(type="CrossEntropyLoss", use_sigmoid=True, loss_weight=1.0),
                           loss_bbox=dict(type="SmoothL1Loss", beta=1.0 / 9.0, loss_weight=1.0)))
    v2 = build()
    sizes = [(16, 16), (8, 8), (4, 4), (2, 2), (1, 1)]
    for a, b in zip(v1.anchor_generator.grid_priors(sizes), v2.anchor_generator.grid_priors(sizes)):
        torch.testing.assert_close(a, b)


def test_loss_regresses_exactly_the_sampled_positive_anchors():
    head = build(train_cfg=rpn_train_cfg())
    f = feats(batch=1)
    cls, reg = head(f)
    gt = torch.tensor([[8.0, 8.0, 40.0, 36.0]])
    losses = head.loss(cls, reg, [gt], [(64, 64)])
    assert set(losses) == {"loss_rpn_cls", "loss_rpn_bbox"}
    # Independent check of the regression target: L1 between predicted and encoded deltas of the
    # anchors the assigner makes positive (all positives fit in the 128-positive budget here).
    anchors = torch.cat(head.anchor_generator.grid_priors([c.shape[-2:] for c in cls]))
    assign = head.assigner.assign(anchors, gt)
    pos = torch.nonzero(assign.gt_inds > 0).flatten()
    assert 0 < len(pos) <= 128
    pred = torch.cat([r.permute(0, 2, 3, 1).reshape(-1, 4) for r in reg])[pos]
    target = head.bbox_coder.encode(anchors[pos], gt.expand(len(pos), 4))
    num_samples = 256  # 256 anchors sampled, enough negatives exist
    expected = (pred - target).abs().sum() / num_samples
    torch.testing.assert_close(losses["loss_rpn_bbox"], expected)


def test_anchors_over_batch_padding_are_not_valid():
    head = build()
    sizes = [(16, 16), (8, 8), (4, 4), (2, 2), (1, 1)]
    flags = head.valid_flags(sizes, (30, 64))  # a 30×64 image padded to 64×64 in its batch
    per_level = flags.split([h * w * 3 for h, w in sizes])
    # stride 4: ceil(30 / 4) = 8 of 16 rows valid; stride 8: 4 of 8; stride 16: 2 of 4; 32: 1 of 2; 64: 1
    assert [int(f.sum()) // 3 for f in per_level] == [8 * 16, 4 * 8, 2 * 4, 1 * 2, 1]
    level0 = per_level[0].reshape(16, 16, 3)
    assert level0[:8].all() and not level0[8:].any()


def test_image_without_boxes_trains_on_negatives_only():
    head = build(train_cfg=rpn_train_cfg())
    cls, reg = head(feats(batch=1))
    losses = head.loss(cls, reg, [torch.zeros(0, 4)], [(64, 64)])
    assert losses["loss_rpn_bbox"].item() == 0.0
    assert losses["loss_rpn_cls"].item() > 0
    losses["loss_rpn_cls"].backward()


def test_loss_without_train_cfg_says_what_is_missing():
    head = build()
    cls, reg = head(feats(batch=1))
    with pytest.raises(RuntimeError, match="train_cfg.rpn"):
        head.loss(cls, reg, [torch.zeros(0, 4)], [(64, 64)])


def test_proposals_are_sorted_clipped_capped_and_nms_free():
    head = build()
    props = head.get_proposals(*head(feats()), [(64, 48), (64, 64)], PROPOSAL_CFG)
    assert len(props) == 2
    for (boxes, scores), (h, w) in zip(props, [(64, 48), (64, 64)]):
        assert 0 < len(boxes) <= 50
        assert torch.all(scores[:-1] >= scores[1:])
        assert boxes[:, 0].min() >= 0 and boxes[:, 2].max() <= w and boxes[:, 3].max() <= h
        assert not boxes.requires_grad


def test_proposals_apply_nms_within_a_level():
    head = build()
    with torch.no_grad():  # zero deltas and equal objectness: proposals are the anchors, NMS decides
        head.rpn_cls.weight.zero_()
        head.rpn_reg.weight.zero_()
    cfg = dict(PROPOSAL_CFG, max_per_img=1000, nms_pre=1000)
    boxes, _ = head.get_proposals(*head(feats(batch=1)), [(64, 64)], cfg)[0]
    # The square 16×16 anchors of level 0 overlap their neighbours by IoU 0.6 at stride 4 (kept)
    # and never by more than 0.7, so all unclipped ones survive; none of the survivors overlap > 0.7.
    sq = boxes[((boxes[:, 2] - boxes[:, 0]) == 16) & ((boxes[:, 3] - boxes[:, 1]) == 16)]
    iou = box_iou(sq, sq).fill_diagonal_(0)
    assert len(sq) > 1 and iou.max() <= 0.7 + 1e-6
    cfg_strict = dict(cfg, nms=dict(type="nms", iou_threshold=0.5))
    strict, _ = head.get_proposals(*head(feats(batch=1)), [(64, 64)], cfg_strict)[0]
    assert len(strict) < len(boxes)


def test_v1_proposal_keys_are_understood():
    head = build()
    v1 = dict(nms_across_levels=False, nms_pre=200, nms_post=200, max_num=20, nms_thr=0.7, min_bbox_size=0)
    boxes, _ = head.get_proposals(*head(feats(batch=1)), [(64, 64)], v1)[0]
    assert len(boxes) == 20


def test_missing_nms_setting_is_a_clear_error():
    head = build()
    with pytest.raises(KeyError, match="iou_threshold.*test_cfg.rpn"):
        head.get_proposals(*head(feats(batch=1)), [(64, 64)], dict(nms_pre=100))


def test_anchor_levels_must_match_the_feature_maps():
    head = build()
    with pytest.raises(ValueError, match="4 feature maps.*5 strides"):
        head(feats()[:4])
