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
