"""SingleRoIExtractor: RoIs pooled from the right FPN level, equal to torchvision's poolers."""

from __future__ import annotations

from collections import OrderedDict

import pytest
import torch
from torchvision.ops import MultiScaleRoIAlign, roi_align

import kiln.models  # noqa: F401  (registers the modules)
from kiln.models.roi_heads import SingleRoIExtractor, bbox2roi, map_roi_levels
from kiln.registry import MODELS

STRIDES = [4, 8, 16, 32]


def pyramid(size: int = 256, channels: int = 8, seed: int = 0) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(2, channels, size // s, size // s, generator=g) for s in STRIDES]


def box_of_scale(scale: float, x0: float = 4.0) -> list[float]:
    return [x0, x0, x0 + scale, x0 + scale]


@pytest.mark.parametrize("scale,level", [(50, 0), (111.9, 0), (112.1, 1), (223, 1), (225, 2), (447, 2),
                                         (449, 3), (2000, 3)])
def test_mm_mapping_uses_finest_scale_56(scale, level):
    rois = bbox2roi([torch.tensor([box_of_scale(scale)])])
    assert map_roi_levels(rois, num_levels=4).item() == level


def test_each_roi_equals_roi_align_on_its_level():
    feats = pyramid()
    boxes = [torch.tensor([box_of_scale(30), box_of_scale(150, 10), box_of_scale(240, 3)]),
             torch.tensor([box_of_scale(60, 100), box_of_scale(120, 20)])]
    rois = bbox2roi(boxes)
    ext = SingleRoIExtractor(dict(type="RoIAlign", output_size=7, sampling_ratio=2), 8, STRIDES)
    out = ext(feats, rois)
    levels = map_roi_levels(rois, 4)
    assert out.shape == (5, 8, 7, 7)
    for k in range(len(rois)):
        lvl = int(levels[k])
        ref = roi_align(feats[lvl], rois[k:k + 1], 7, 1.0 / STRIDES[lvl], 2, aligned=True)
        torch.testing.assert_close(out[k:k + 1], ref)
    assert len(set(levels.tolist())) >= 3  # the case really spans levels


def test_detectron2_mapping_matches_torchvision_multiscale_roi_align():
    feats = pyramid()
    names = ["p2", "p3", "p4", "p5"]
    g = torch.Generator().manual_seed(1)
    xy = torch.rand(12, 2, generator=g) * 120
    wh = torch.rand(12, 2, generator=g) * 130 + 4
    boxes = [torch.cat([xy[:6], xy[:6] + wh[:6]], 1), torch.cat([xy[6:], xy[6:] + wh[6:]], 1)]
    tv = MultiScaleRoIAlign(names, output_size=7, sampling_ratio=2)
    expected = tv(OrderedDict(zip(names, feats)), boxes, [(256, 256), (256, 256)])
    layer = dict(type="RoIAlign", output_size=7, sampling_ratio=2, aligned=False)
    ext = SingleRoIExtractor(layer, 8, STRIDES, canonical_box_size=224, canonical_level=4)
    torch.testing.assert_close(ext(feats, bbox2roi(boxes)), expected)


def test_gradients_reach_the_pooled_levels():
    feats = [f.requires_grad_() for f in pyramid()]
    ext = SingleRoIExtractor(dict(type="RoIAlign", output_size=7), 8, STRIDES)
    ext(feats, bbox2roi([torch.tensor([box_of_scale(40), box_of_scale(240, 8)])])).sum().backward()
    assert feats[0].grad.abs().sum() > 0 and feats[2].grad.abs().sum() > 0  # levels 0 and 2
    assert feats[1].grad is None and feats[3].grad is None  # no RoI mapped there


def test_no_rois_gives_an_empty_batch():
    ext = SingleRoIExtractor(dict(type="RoIAlign", output_size=7), 8, STRIDES)
    assert ext(pyramid(), torch.zeros(0, 5)).shape == (0, 8, 7, 7)


def test_builds_from_mm_config_and_rejects_unknown_roi_layers():
    cfg = dict(type="SingleRoIExtractor", roi_layer=dict(type="RoIAlign", output_size=7, sampling_ratio=0),
               out_channels=8, featmap_strides=STRIDES)
    assert isinstance(MODELS.build(cfg), SingleRoIExtractor)
    with pytest.raises(ValueError, match="RoIPool.*RoIAlign"):
        MODELS.build(dict(cfg, roi_layer=dict(type="RoIPool", output_size=7)))
    with pytest.raises(KeyError, match="unknown keys.*spatial"):
        MODELS.build(dict(cfg, roi_layer=dict(type="RoIAlign", output_size=7, spatial=1)))


def test_too_few_feature_maps_is_a_clear_error():
    ext = SingleRoIExtractor(dict(type="RoIAlign", output_size=7), 8, STRIDES)
    with pytest.raises(ValueError, match="4 featmap_strides.*only 2 feature maps"):
        ext(pyramid()[:2], bbox2roi([torch.tensor([box_of_scale(40)])]))
