"""FCOSHead on hand-computed cases: prior points, target assignment (inside box, centre sampling, regress
ranges, smallest area), normalised targets, loss values, decoding, and the options kiln refuses."""

from __future__ import annotations

import math

import pytest
import torch
from upstream_helpers import upstream_configs

from kiln.config import Config
from kiln.models import build_detector
from kiln.registry import MODELS, TASK_UTILS

INF = 1e8


def head(**kw):
    cfg = dict(type="FCOSHead", num_classes=2, in_channels=8, feat_channels=8, stacked_convs=1, strides=[8],
               regress_ranges=[(-1, INF)], norm_cfg=None)
    cfg.update(kw)
    return MODELS.build(cfg)


def labels_of(h, boxes, labels, size=(4, 4)):
    pts = h.points([size], torch.zeros(1))
    lab, tgt = h.get_targets(pts, [boxes], [labels])
    return pts[0], lab[0], tgt[0]


def test_points_sit_at_cell_centres_row_major():
    gen = TASK_UTILS.build(dict(type="MlvlPointGenerator", strides=[8, 16]))
    p8, p16 = gen.grid_priors([(2, 3), (1, 1)])
    assert p8.tolist() == [[4, 4], [12, 4], [20, 4], [4, 12], [12, 12], [20, 12]]
    assert p16.tolist() == [[8, 8]]
    with_stride = gen.grid_priors([(1, 1), (1, 1)], with_stride=True)[1]
    assert with_stride.tolist() == [[8, 8, 16, 16]]
    with pytest.raises(ValueError, match="2 strides"):
        gen.grid_priors([(1, 1)])


def test_distance_coder_round_trip_and_clipping():
    coder = TASK_UTILS.build(dict(type="DistancePointBBoxCoder"))
    pts = torch.tensor([[5.0, 5.0]])
    box = torch.tensor([[1.0, 2.0, 9.0, 12.0]])
    assert coder.encode(pts, box).tolist() == [[4, 3, 4, 7]]
    assert coder.decode(pts, torch.tensor([[10.0, 10.0, 10.0, 10.0]]), max_shape=(12, 8)).tolist() == [
        [0, 0, 8, 12]]


def test_every_point_inside_a_box_is_positive_with_its_side_distances():
    h = head()
    pts, lab, tgt = labels_of(h, torch.tensor([[0.0, 0.0, 16.0, 16.0]]), torch.tensor([1]))
    # points at 4 and 12 lie inside [0, 16]; the rest are background (label 2 = num_classes)
    inside = (pts[:, 0] < 16) & (pts[:, 1] < 16)
    assert lab.tolist() == [1 if v else 2 for v in inside.tolist()]
    assert tgt[0].tolist() == [4, 4, 12, 12]  # the point (4, 4): left, top, right, bottom


def test_centre_sampling_keeps_points_within_radius_times_stride():
    box = torch.tensor([[0.0, 0.0, 32.0, 32.0]])
    _, plain, _ = labels_of(head(), box, torch.tensor([0]))
    assert (plain == 0).sum() == 16
    # radius 1.5 · stride 8 = 12 around the centre (16, 16): strictly between 4 and 28 -> x, y in {12, 20}
    pts, lab, _ = labels_of(head(center_sampling=True, center_sample_radius=1.5), box, torch.tensor([0]))
    pos = pts[lab == 0].tolist()
    assert sorted(pos) == [[12, 12], [12, 20], [20, 12], [20, 20]]


def test_regress_range_and_smallest_area_decide_between_boxes():
    big = [0.0, 0.0, 32.0, 32.0]
    small = [8.0, 8.0, 24.0, 24.0]
    h = head()
    pts, lab, tgt = labels_of(h, torch.tensor([big, small]), torch.tensor([0, 1]))
    i = pts.tolist().index([12.0, 12.0])
    assert lab[i] == 1 and tgt[i].tolist() == [4, 4, 12, 12]  # inside both: the smaller box wins
    # the point's largest distance to the small box is 12: a range (-1, 10] rules that box out
    h = head(regress_ranges=[(-1, 10)])
    pts, lab, _ = labels_of(h, torch.tensor([big, small]), torch.tensor([0, 1]))
    assert lab[i] == 2  # and 20 > 10 for the big one as well: background


def test_norm_on_bbox_divides_targets_by_the_stride():
    box, lab = torch.tensor([[0.0, 0.0, 16.0, 16.0]]), torch.tensor([1])
    _, _, tgt = labels_of(head(norm_on_bbox=True), box, lab)
    assert tgt[0].tolist() == [0.5, 0.5, 1.5, 1.5]


def test_losses_have_their_hand_computed_values():
    """16 points, 2 classes, 4 positives (centre sampling), each with centerness 0.6."""
    h = head(center_sampling=True, center_sample_radius=1.5)
    box, lab = torch.tensor([[0.0, 0.0, 32.0, 32.0]]), torch.tensor([1])
    pts, labels, tgt = labels_of(h, box, lab)
    cls = torch.zeros(1, 2, 4, 4)  # p = 0.5 everywhere
    # predicted distances = the targets at positives (IoU 1) -> IoU loss 0
    reg = tgt.t().reshape(1, 4, 4, 4).clone()
    logit = math.log(0.6 / 0.4)
    ctr = torch.full((1, 1, 4, 4), logit)
    losses = h.loss_by_feat([cls], [reg], [ctr], [box], [lab], [dict(img_shape=(32, 32))])
    # focal, alpha 0.25 gamma 2 at p = 0.5: positive 0.25·0.25·ln2, negative 0.75·0.25·ln2; 4 of 32 positive
    ln2 = math.log(2)
    assert losses["loss_cls"].item() == pytest.approx((4 * 0.0625 * ln2 + 28 * 0.1875 * ln2) / 4, rel=1e-5)
    assert losses["loss_bbox"].item() == pytest.approx(0.0, abs=1e-5)
    entropy = -(0.6 * math.log(0.6) + 0.4 * math.log(0.4))  # BCE(logit(0.6), 0.6)
    assert losses["loss_centerness"].item() == pytest.approx(entropy, rel=1e-5)
    # halve every predicted distance at the positives: IoU 1/4 -> -log(1/4) weighted by centerness (mean)
    losses = h.loss_by_feat([cls], [reg * 0.5], [ctr], [box], [lab], [dict(img_shape=(32, 32))])
    assert losses["loss_bbox"].item() == pytest.approx(math.log(4), rel=1e-5)


def test_images_without_objects_give_zero_box_losses_that_keep_the_graph():
    h = head()
    reg = torch.ones(1, 4, 4, 4, requires_grad=True)
    no_boxes, no_labels = torch.zeros(0, 4), torch.zeros(0, dtype=torch.long)
    losses = h.loss_by_feat([torch.zeros(1, 2, 4, 4)], [reg], [torch.zeros(1, 1, 4, 4)],
                            [no_boxes], [no_labels], [dict(img_shape=(32, 32))])
    assert losses["loss_bbox"].item() == 0 and losses["loss_centerness"].item() == 0
    losses["loss_bbox"].backward()
    assert reg.grad is not None


def test_predict_multiplies_scores_by_centerness_and_decodes_distances():
    test_cfg = dict(score_thr=0.3, nms_pre=10, min_bbox_size=0, nms=dict(type="nms", iou_threshold=0.5),
                    max_per_img=5)
    h = head(test_cfg=test_cfg).eval()
    cls = torch.full((1, 2, 4, 4), -10.0)
    cls[0, 1, 1, 1] = 0.0  # point (12, 12), class 1, p = 0.5
    reg = torch.full((1, 4, 4, 4), 2.0)
    ctr = torch.full((1, 1, 4, 4), math.log(0.8 / 0.2))
    (det,) = h.predict_by_feat([cls], [reg], [ctr], metas=[dict(img_shape=(32, 32))])
    assert det["labels"].tolist() == [1]
    assert det["scores"].tolist() == pytest.approx([0.4])
    assert det["boxes"].tolist() == [[10, 10, 14, 14]]


@pytest.mark.parametrize("key, value, says", [
    ("dcn_on_last_conv", True, "deformable convolution"),
    ("conv_cfg", dict(type="DCNv2"), "plain convolutions"),
    ("cls_predictor_cfg", dict(type="NormedConv2d", tempearture=20), "NormedConv2d"),
])
def test_options_kiln_cannot_build_are_refused_naming_the_key(key, value, says):
    with pytest.raises(NotImplementedError) as err:
        head(**{key: value})
    msg = str(err.value)
    assert f"{key}=" in msg and says in msg and "model.bbox_head (FCOSHead)" in msg


def test_the_published_dcn_variant_is_refused_with_how_to_build_it():
    name = "fcos_r50-dcn-caffe_fpn_gn-head-center-normbbox-centeronreg-giou_1x_coco.py"
    path = f"{upstream_configs('3.3.0')}/fcos/{name}"
    cfg = Config.fromfile(path).model
    cfg["backbone"].pop("dcn")
    cfg["backbone"].pop("stage_with_dcn")
    with pytest.raises(NotImplementedError, match="bbox_head.dcn_on_last_conv=False"):
        build_detector(cfg)
    cfg["bbox_head"]["dcn_on_last_conv"] = False
    assert type(build_detector(cfg)).__name__ == "FCOS"


def test_regress_ranges_must_match_the_levels():
    with pytest.raises(ValueError, match="1 regress_ranges for 2 strides"):
        head(strides=[8, 16])


def test_an_assigner_in_train_cfg_is_reported_as_unused(caplog):
    # MMDetection 2.x's FCOS configs carry train_cfg=dict(assigner=dict(type='MaxIoUAssigner', ...)).
    with caplog.at_level("WARNING", logger="kiln.models"):
        head(train_cfg=dict(assigner=dict(type="MaxIoUAssigner", pos_iou_thr=0.5, neg_iou_thr=0.4)))
    assert "train_cfg.assigner='MaxIoUAssigner' is not used" in caplog.text
