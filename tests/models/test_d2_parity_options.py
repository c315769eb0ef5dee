"""The Detectron2 training-semantics options of kiln's heads, losses, assigners, samplers and box coder:
each option's math on small hand-made cases, and the MMDetection default left unchanged."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

import kiln.models  # noqa: F401  (registers the components)
from kiln.models.losses import CIoULoss, DIoULoss
from kiln.models.task_modules import DeltaXYWHBBoxCoder, MaxIoUAssigner, RandomSampler
from kiln.models.task_modules.assigners import AssignResult
from kiln.registry import MODELS


# ------------------------------------------------------------------------------------------- assigner
def _two_objects() -> torch.Tensor:
    # Candidate 0 is object A's best (IoU 0.3) but overlaps object B more (0.35); B's best is candidate 1.
    return torch.tensor([[0.30, 0.10], [0.35, 0.90]])


def test_low_quality_match_learns_from_the_object_it_was_promoted_for_by_default():
    a = MaxIoUAssigner(pos_iou_thr=0.5, neg_iou_thr=0.4)
    r = a.assign_wrt_overlaps(_two_objects(), torch.tensor([7, 8]))
    assert r.gt_inds.tolist() == [1, 2]
    assert r.labels.tolist() == [7, 8]


def test_low_quality_keeps_argmax_learns_from_the_object_it_overlaps_most():
    a = MaxIoUAssigner(pos_iou_thr=0.5, neg_iou_thr=0.4, low_quality_keeps_argmax=True)
    r = a.assign_wrt_overlaps(_two_objects(), torch.tensor([7, 8]))
    assert r.gt_inds.tolist() == [2, 2]  # still positive (promoted), but matched to B as Detectron2 does
    assert r.labels.tolist() == [8, 8]


def test_low_quality_keeps_argmax_promotes_every_tied_best_candidate():
    overlaps = torch.tensor([[0.2, 0.2, 0.1]])
    r = MaxIoUAssigner(0.5, 0.4, low_quality_keeps_argmax=True).assign_wrt_overlaps(overlaps)
    assert r.gt_inds.tolist() == [1, 1, 0]


def test_low_quality_keeps_argmax_honours_min_pos_iou():
    overlaps = torch.tensor([[0.2, 0.1]])
    r = MaxIoUAssigner(0.5, 0.1, min_pos_iou=0.3, low_quality_keeps_argmax=True).assign_wrt_overlaps(overlaps)
    assert r.gt_inds.tolist() == [-1, -1]


# -------------------------------------------------------------------------------------------- sampler
def _assigned(num_props: int = 6) -> tuple[AssignResult, torch.Tensor, torch.Tensor, torch.Tensor]:
    gts = torch.tensor([[0.0, 0.0, 10.0, 10.0], [20.0, 20.0, 30.0, 30.0]])
    props = torch.tensor([[0.0, 0.0, 10.0, 9.0], [40.0, 40.0, 50.0, 50.0], [20.0, 21.0, 30.0, 30.0],
                          [60.0, 0.0, 70.0, 10.0], [0.0, 60.0, 10.0, 70.0], [80.0, 80.0, 90.0, 90.0]])
    labels = torch.tensor([1, 2])
    a = MaxIoUAssigner(0.5, 0.5, min_pos_iou=0.5, match_low_quality=False)
    return a.assign(props[:num_props], gts, None, labels), props[:num_props], gts, labels


def test_append_gt_puts_ground_truths_after_the_proposals():
    assign, props, gts, labels = _assigned()
    res = RandomSampler(num=16, pos_fraction=0.5, append_gt=True).sample(assign, props, gts, labels)
    assert torch.equal(res.bboxes[: len(props)], props) and torch.equal(res.bboxes[len(props):], gts)
    assert res.gt_flags.tolist() == [0] * len(props) + [1, 1]
    pos = sorted(res.pos_inds.tolist())
    assert pos == [0, 2, 6, 7]  # the two matched proposals and the two appended ground truths
    by_index = dict(zip(res.pos_inds.tolist(), res.pos_assigned_gt_inds.tolist()))
    assert by_index[6] == 0 and by_index[7] == 1


def test_default_puts_ground_truths_first():
    assign, props, gts, labels = _assigned()
    res = RandomSampler(num=16, pos_fraction=0.5).sample(assign, props, gts, labels)
    assert torch.equal(res.bboxes[:2], gts) and res.gt_flags.tolist()[:2] == [1, 1]


def test_permute_all_draws_like_detectron2_subsample_labels():
    assign, props, gts, labels = _assigned()
    torch.manual_seed(3)
    res = RandomSampler(num=4, pos_fraction=0.25, add_gt_as_proposals=False, permute_all=True).sample(
        assign, props, gts, labels)
    # Detectron2: positives = nonzero(fg), negatives = nonzero(bg); randperm of each pool, then truncate.
    torch.manual_seed(3)
    pos, neg = torch.tensor([0, 2]), torch.tensor([1, 3, 4, 5])
    want_pos = pos[torch.randperm(2)[:1]]
    want_neg = neg[torch.randperm(4)[:3]]
    assert res.pos_inds.tolist() == want_pos.tolist() and res.neg_inds.tolist() == want_neg.tolist()


def test_permute_all_advances_the_rng_even_when_a_pool_fits_its_budget():
    def next_random(permute_all: bool) -> float:
        assign, props, gts, labels = _assigned()
        torch.manual_seed(0)
        RandomSampler(num=64, pos_fraction=0.5, permute_all=permute_all).sample(assign, props, gts, labels)
        return float(torch.rand(1))

    torch.manual_seed(0)
    untouched = float(torch.rand(1))
    assert next_random(False) == untouched  # every pool fits: MMDetection takes it whole, no draw
    assert next_random(True) != untouched


# ---------------------------------------------------------------------------------------------- coder
def test_one_sided_clamp_lets_a_box_shrink_below_the_ratio_limit():
    anchors = torch.tensor([[0.0, 0.0, 100.0, 100.0]])
    deltas = torch.tensor([[0.0, 0.0, -10.0, 10.0]])
    both = DeltaXYWHBBoxCoder().decode(anchors, deltas)
    upper = DeltaXYWHBBoxCoder(symmetric_wh_clamp=False).decode(anchors, deltas)
    clamp = math.log(1000 / 16)
    assert torch.allclose(both[0, 2] - both[0, 0], torch.tensor(100 * math.exp(-clamp)))
    # float32 centre ± half a tiny width: compare loosely
    assert (upper[0, 2] - upper[0, 0]).item() == pytest.approx(100 * math.exp(-10.0), rel=1e-2)
    for box in (both, upper):  # the height grows to the same cap either way
        assert torch.allclose(box[0, 3] - box[0, 1], torch.tensor(100 * math.exp(clamp)))


# --------------------------------------------------------------------------------------------- losses
def test_diou_loss_is_one_minus_iou_plus_normalised_centre_distance():
    pred, target = torch.tensor([[0.0, 0.0, 2.0, 2.0]]), torch.tensor([[1.0, 1.0, 3.0, 3.0]])
    want = 1 - 1 / 7 + 2 / 18  # IoU 1/7; centres (1,1),(2,2); enclosing box 3x3
    assert DIoULoss()(pred, target).item() == pytest.approx(want, rel=1e-5)


def test_ciou_adds_the_aspect_ratio_term():
    pred, target = torch.tensor([[0.0, 0.0, 2.0, 1.0]]), torch.tensor([[0.0, 0.0, 1.0, 2.0]])
    iou, diou = 1 / 3, 1 - 1 / 3 + 0.5 / 8
    v = 4 / math.pi**2 * (math.atan(1 / 2) - math.atan(2)) ** 2
    alpha = v / (1 - iou + v)
    assert DIoULoss()(pred, target).item() == pytest.approx(diou, rel=1e-5)
    assert CIoULoss()(pred, target).item() == pytest.approx(diou + alpha * v, rel=1e-5)


def test_iou_losses_take_per_coordinate_weights_and_avg_factor():
    pred = torch.tensor([[0.0, 0.0, 2.0, 2.0], [0.0, 0.0, 2.0, 1.0]])
    target = torch.tensor([[1.0, 1.0, 3.0, 3.0], [0.0, 0.0, 1.0, 2.0]])
    per_box = CIoULoss(reduction="none")(pred, target)
    weight = torch.tensor([[1.0] * 4, [0.0] * 4])
    got = CIoULoss(loss_weight=2.0)(pred, target, weight, avg_factor=4.0)
    assert got.item() == pytest.approx(2.0 * per_box[0].item() / 4.0, rel=1e-5)
    assert MODELS.build(dict(type="DIoULoss")).eps == 1e-7


# ------------------------------------------------------------------------------- RetinaNet normalizer
def _retina(**kw) -> torch.nn.Module:
    torch.manual_seed(0)
    return MODELS.build(dict(
        type="RetinaHead", num_classes=2, in_channels=8, feat_channels=8, stacked_convs=1,
        anchor_generator=dict(type="AnchorGenerator", octave_base_scale=4, scales_per_octave=1,
                              ratios=[1.0], strides=[8]),
        loss_bbox=dict(type="L1Loss"),
        train_cfg=dict(assigner=dict(type="MaxIoUAssigner", pos_iou_thr=0.5, neg_iou_thr=0.4)), **kw))


def _retina_losses(head: torch.nn.Module, gts: torch.Tensor) -> dict[str, torch.Tensor]:
    feats = [torch.randn(1, 8, 8, 8, generator=torch.Generator().manual_seed(1))]
    cls, reg = head(feats)
    return head.loss_by_feat(cls, reg, [gts], [torch.zeros(len(gts), dtype=torch.long)],
                             [dict(img_shape=(64, 64))])


GTS = torch.tensor([[0.0, 0.0, 32.0, 32.0], [16.0, 16.0, 48.0, 48.0], [30.0, 2.0, 62.0, 34.0]])


def test_ema_normalizer_matches_detectron2_recurrence():
    plain_head = _retina()
    plain = _retina_losses(plain_head, GTS)  # MMDetection: sums divided by this batch's positives

    head = _retina(loss_normalizer_momentum=0.9, loss_normalizer_init=100.0)
    cls_scores, bbox_preds = head([torch.randn(1, 8, 8, 8, generator=torch.Generator().manual_seed(1))])
    anchors = torch.cat(head.prior_generator.grid_priors([(8, 8)]))
    _, _, _, _, num_pos, _ = head.get_targets(anchors, [GTS], [torch.zeros(3, dtype=torch.long)],
                                                  [dict(img_shape=(64, 64))])
    assert num_pos > 0
    normalizer = 100.0
    for _ in range(3):
        ema = _retina_losses(head, GTS)
        normalizer = 0.9 * normalizer + 0.1 * num_pos
        for k in ("loss_cls", "loss_bbox"):
            assert (ema[k] * normalizer).item() == pytest.approx((plain[k] * num_pos).item(), rel=1e-5)
    assert head.loss_normalizer.item() == pytest.approx(normalizer)


def test_ema_normalizer_is_not_updated_in_eval_mode_and_is_checkpointed():
    head = _retina(loss_normalizer_momentum=0.9)
    _retina_losses(head, GTS)
    trained = head.loss_normalizer.item()
    head.eval()
    _retina_losses(head, GTS)
    assert head.loss_normalizer.item() == trained
    assert head.state_dict()["loss_normalizer"].item() == trained
    fresh = _retina(loss_normalizer_momentum=0.9)
    fresh.load_state_dict(head.state_dict())
    assert fresh.loss_normalizer.item() == trained


def test_weights_without_the_normalizer_load_into_a_head_with_it_and_back():
    plain, ema = _retina(), _retina(loss_normalizer_momentum=0.9)
    ema.load_state_dict(plain.state_dict())  # an MMDetection/Detectron2 checkpoint has no normalizer
    assert ema.loss_normalizer.item() == 100.0
    plain.load_state_dict(ema.state_dict())
    assert "loss_normalizer" not in plain.state_dict()


@pytest.mark.parametrize("momentum, init", [(1.0, 100.0), (-0.1, 100.0), (0.9, 0.0)])
def test_bad_normalizer_settings_are_refused(momentum, init):
    with pytest.raises(ValueError, match="loss_normalizer_momentum"):
        _retina(loss_normalizer_momentum=momentum, loss_normalizer_init=init)


# ------------------------------------------------------------------------------------------------ RPN
def _rpn(**kw) -> torch.nn.Module:
    torch.manual_seed(0)
    return MODELS.build(dict(
        type="RPNHead", in_channels=4, feat_channels=4,
        anchor_generator=dict(type="AnchorGenerator", scales=[2], ratios=[1.0], strides=[8]),
        train_cfg=dict(assigner=dict(type="MaxIoUAssigner", pos_iou_thr=0.7, neg_iou_thr=0.3),
                       sampler=dict(type="RandomSampler", num=256, pos_fraction=0.5,
                                    add_gt_as_proposals=False)), **kw))


def _rpn_loss(head: torch.nn.Module, shapes: list[tuple[int, int]]) -> tuple[dict, torch.Tensor]:
    feats = [torch.randn(len(shapes), 4, 4, 4, generator=torch.Generator().manual_seed(2))]
    cls, reg = head(feats)
    empty = [torch.zeros((0, 4)) for _ in shapes]
    return head.loss(cls, reg, empty, shapes), cls[0]


def test_budget_normalizer_divides_by_batch_size_per_image_times_images():
    # 16 anchors per image, no objects: every anchor is a sampled negative, far below the 256 budget.
    default, logits = _rpn_loss(_rpn(), [(32, 32), (32, 32)])
    budget, _ = _rpn_loss(_rpn(normalize_by_budget=True), [(32, 32), (32, 32)])
    bce_sum = F.binary_cross_entropy_with_logits(logits, torch.zeros_like(logits), reduction="sum")
    assert default["loss_rpn_cls"].item() == pytest.approx(bce_sum.item() / 32, rel=1e-5)
    assert budget["loss_rpn_cls"].item() == pytest.approx(bce_sum.item() / (256 * 2), rel=1e-5)


def test_budget_normalizer_needs_a_sampler_with_a_budget():
    with pytest.raises(ValueError, match="normalize_by_budget"):
        MODELS.build(dict(type="RPNHead", in_channels=4, normalize_by_budget=True,
                          train_cfg=dict(assigner=dict(type="MaxIoUAssigner", pos_iou_thr=0.7,
                                                       neg_iou_thr=0.3))))


def test_anchors_over_padding_become_negatives_when_not_ignored():
    # The second image covers only the top-left 2x2 cells of the 4x4 map (stride 8).
    shapes = [(32, 32), (16, 16)]
    default, logits = _rpn_loss(_rpn(), shapes)
    d2, _ = _rpn_loss(_rpn(ignore_padding_anchors=False), shapes)
    bce = F.binary_cross_entropy_with_logits(logits, torch.zeros_like(logits), reduction="none")
    assert d2["loss_rpn_cls"].item() == pytest.approx(bce.mean().item(), rel=1e-5)
    inside = torch.cat([bce[0].flatten(), bce[1, :, :2, :2].flatten()])
    assert default["loss_rpn_cls"].item() == pytest.approx(inside.mean().item(), rel=1e-5)


# ------------------------------------------------------------------------------------------- box head
def _box_head(**kw) -> torch.nn.Module:
    torch.manual_seed(0)
    return MODELS.build(dict(type="ConvFCBBoxHead", num_shared_convs=1, num_shared_fcs=2, in_channels=8,
                             conv_out_channels=8, roi_feat_size=7, fc_out_channels=64, num_classes=3, **kw))


def test_detectron2_box_head_init_is_caffe2_xavier_and_msra():
    head = _box_head(init_style="detectron2")
    fc = head.shared_fcs[0].weight  # fan_in 392, fan_out 64
    bound = math.sqrt(3 / 392)
    assert fc.abs().max() <= bound and fc.abs().max() > 0.95 * bound
    assert fc.std().item() == pytest.approx(math.sqrt(1 / 392), rel=0.05)
    conv = head.shared_convs[0].conv.weight  # fan_out 8 * 9
    assert conv.std().item() == pytest.approx(math.sqrt(2 / 72), rel=0.15)
    mm = _box_head().shared_fcs[0].weight
    assert mm.std().item() == pytest.approx(math.sqrt(2 / (392 + 64)), rel=0.05)  # Xavier by default


def test_unknown_box_head_init_style_is_refused():
    with pytest.raises(ValueError, match="init_style"):
        _box_head(init_style="caffe")


def test_rank_by_logits_orders_proposals_whose_sigmoids_tie():
    head = _rpn(rank_by_logits=True)
    # Two anchors (one per cell of a 1x2 map); both logits round to sigmoid 0.5 in float32.
    logits = torch.tensor([[[[1e-9, 3e-9]]]])
    assert torch.sigmoid(logits).unique().numel() == 1
    cfg = dict(nms_pre=1, max_per_img=5, nms=dict(type="nms", iou_threshold=0.7), min_bbox_size=0)
    (boxes, scores), = head.get_proposals([logits], [torch.zeros(1, 4, 1, 2)], [(16, 32)], cfg)
    assert boxes.tolist() == [[0.0, 0.0, 16.0, 8.0]]  # the second anchor: the larger logit wins
    assert scores.tolist() == [0.5]  # returned as sigmoid scores


def test_rank_by_logits_needs_a_sigmoid_objectness():
    with pytest.raises(ValueError, match="rank_by_logits"):
        _rpn(rank_by_logits=True, loss_cls=dict(type="CrossEntropyLoss", use_sigmoid=False))
