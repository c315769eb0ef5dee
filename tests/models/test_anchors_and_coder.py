"""Anchor generators and the delta box coder against hand computations."""

from __future__ import annotations

import math

import pytest
import torch

from kiln.registry import TASK_UTILS


def test_mm_octave_anchors_match_hand_computation():
    g = TASK_UTILS.build(
        dict(type="AnchorGenerator", octave_base_scale=4, scales_per_octave=2, ratios=[0.5, 1.0], strides=[8])
    )
    a = g.grid_priors([(1, 1)])[0]
    s = [32.0, 32.0 * 2**0.5]  # 8 * 4 * 2**(i/2)
    expected = []
    for r in (0.5, 1.0):  # ratio-major, scale-minor
        for sc in s:
            w, h = sc / math.sqrt(r), sc * math.sqrt(r)
            expected.append([-w / 2, -h / 2, w / 2, h / 2])
    assert torch.allclose(a, torch.tensor(expected), atol=1e-4)


def test_anchor_grid_is_ordered_y_then_x_then_anchor_and_shifted_by_stride():
    g = TASK_UTILS.build(dict(type="AnchorGenerator", scales=[1, 2], ratios=[1.0], strides=[16]))
    a = g.grid_priors([(2, 3)])[0]
    assert a.shape == (2 * 3 * 2, 4)
    base = g.base_anchors[0]
    # entry (y=1, x=2, anchor=1)
    idx = (1 * 3 + 2) * 2 + 1
    assert torch.allclose(a[idx], base[1] + torch.tensor([32.0, 16.0, 32.0, 16.0]))


def test_center_offset_moves_anchor_centres_into_the_cell():
    g = TASK_UTILS.build(
        dict(type="AnchorGenerator", scales=[1], ratios=[1.0], strides=[8], center_offset=0.5)
    )
    a = g.grid_priors([(1, 1)])[0][0]
    assert torch.allclose((a[:2] + a[2:]) / 2, torch.tensor([4.0, 4.0]))


def test_detectron2_sizes_and_aspect_ratios():
    g = TASK_UTILS.build(
        dict(type="DefaultAnchorGenerator", sizes=[[32], [64]], aspect_ratios=[0.5, 2.0], strides=[8, 16])
    )
    assert g.num_base_anchors == [2, 2]
    b = g.base_anchors[1]
    w, h = math.sqrt(64**2 / 0.5), 0.5 * math.sqrt(64**2 / 0.5)
    assert torch.allclose(b[0], torch.tensor([-w / 2, -h / 2, w / 2, h / 2]))
    # area is preserved and h / w == ratio
    wh = b[:, 2:] - b[:, :2]
    assert torch.allclose(wh.prod(1), torch.tensor([64.0**2] * 2)) and torch.allclose(
        wh[:, 1] / wh[:, 0], torch.tensor([0.5, 2.0])
    )


def test_level_count_mismatch_is_explained():
    g = TASK_UTILS.build(dict(type="AnchorGenerator", scales=[8], ratios=[1.0], strides=[8, 16]))
    with pytest.raises(ValueError, match="num_outs"):
        g.grid_priors([(4, 4)])


def _rand_boxes(n, seed):
    g = torch.Generator().manual_seed(seed)
    xy = torch.rand(n, 2, generator=g) * 100
    wh = torch.rand(n, 2, generator=g) * 50 + 1
    return torch.cat([xy, xy + wh], 1)


@pytest.mark.parametrize("stds", [(1.0, 1.0, 1.0, 1.0), (0.1, 0.1, 0.2, 0.2)])
def test_coder_round_trip(stds):
    c = TASK_UTILS.build(dict(type="DeltaXYWHBBoxCoder", target_means=[0.1, 0, 0, -0.1], target_stds=stds))
    a, g = _rand_boxes(50, 0), _rand_boxes(50, 1)
    assert torch.allclose(c.decode(a, c.encode(a, g)), g, atol=1e-3)


def test_coder_encodes_with_the_documented_formula():
    c = TASK_UTILS.build(dict(type="DeltaXYWHBBoxCoder", target_stds=[0.1, 0.1, 0.2, 0.2]))
    d = c.encode(torch.tensor([[0.0, 0, 10, 20]]), torch.tensor([[2.0, 4, 22, 24]]))
    # centres (5,10)->(12,14), sizes (10,20)->(20,20)
    expected = torch.tensor([[(7 / 10) / 0.1, (4 / 20) / 0.1, math.log(2) / 0.2, 0.0]])
    assert torch.allclose(d, expected, atol=1e-5)


def test_decode_clamps_huge_scales_and_clips_to_image():
    c = TASK_UTILS.build(dict(type="DeltaXYWHBBoxCoder"))
    a = torch.tensor([[10.0, 10, 20, 20]])
    out = c.decode(a, torch.tensor([[0.0, 0, 100.0, 100.0]]))
    assert torch.isfinite(out).all() and (out[0, 2] - out[0, 0]) == pytest.approx(10 * 1000 / 16, rel=1e-4)
    clipped = c.decode(a, torch.tensor([[0.0, 0, 3.0, 3.0]]), max_shape=(30, 40))
    assert clipped.tolist() == [[0.0, 0.0, 40.0, 30.0]]
