"""Backbone and neck widths depend on each other: a mismatch is refused at build time naming both keys and
the value that fits, instead of a raw convolution shape error at the first forward pass."""

from __future__ import annotations

import pytest

from kiln.config import Config
from kiln.models import build_detector

CFG = "kiln::shapes/retinanet_r18_fpn_shapes.py"


@pytest.mark.parametrize("over, produced", [
    ({"model.backbone.depth": 50}, [128, 256, 512, 1024]),        # bottlenecks: 4x wider
    ({"model.backbone.base_channels": 16}, [16, 32, 64, 128]),
    ({"model.backbone.out_indices": (1, 2, 3)}, [64, 128, 256]),
])
def test_a_backbone_change_without_the_neck_names_both_keys_and_the_fix(over, produced):
    cfg = Config.fromfile(CFG, cfg_options=over)
    with pytest.raises(ValueError) as info:
        build_detector(cfg.model)
    msg = str(info.value)
    assert "model.neck.in_channels=[32, 64, 128, 256] does not match" in msg
    assert f"outputs: {produced} channels" in msg
    assert f"model.neck.in_channels=[{','.join(map(str, produced))}]" in msg


def test_the_suggested_fix_builds():
    cfg = Config.fromfile(CFG, cfg_options={"model.backbone.depth": 50,
                                            "model.neck.in_channels": [128, 256, 512, 1024]})
    assert build_detector(cfg.model).neck.in_channels == [128, 256, 512, 1024]
    assert build_detector(Config.fromfile(CFG, cfg_options={"model.backbone.depth": 34}).model)  # same widths


def test_a_neck_listing_levels_coarsest_first_is_checked_in_its_own_order():
    """YOLOV3Neck takes in_channels coarsest first ([1024, 512, 256]) from a Darknet that outputs finest
    first: the published config builds, and a wrong width is still named."""
    from kiln.models.utils import build_neck

    backbone = build_detector(dict(
        type="YOLOV3", backbone=dict(type="Darknet", depth=53, out_indices=(3, 4, 5)),
        neck=dict(type="YOLOV3Neck", num_scales=3, in_channels=[1024, 512, 256],
                  out_channels=[512, 256, 128]),
        bbox_head=dict(type="YOLOV3Head", num_classes=3, in_channels=[512, 256, 128],
                       out_channels=[1024, 512, 256]))).backbone
    with pytest.raises(ValueError, match=r"model.neck.in_channels=\[1024, 512, 128\] does not match"):
        build_neck(dict(type="YOLOV3Neck", num_scales=3, in_channels=[1024, 512, 128],
                        out_channels=[512, 256, 128]), backbone)
