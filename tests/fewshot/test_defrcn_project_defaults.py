"""A DeFRCN config (one that sets a key only DeFRCN's schema has) is read with the four Detectron2 defaults
DeFRCN's get_cfg changes, as DeFRCN's main.py reads it; a plain Detectron2 config keeps Detectron2's."""

from __future__ import annotations

import pytest

from kiln.cli.d2_config import load_d2_node

BASE = "MODEL:\n  META_ARCHITECTURE: GeneralizedRCNN\n  ROI_HEADS:\n    NAME: Res5ROIHeads\n"


def _write(tmp_path, child: str):
    (tmp_path / "Base.yaml").write_text(BASE)
    (tmp_path / "child.yaml").write_text("_BASE_: Base.yaml\n" + child)
    return str(tmp_path / "child.yaml")


def _four(node):
    m = node.MODEL
    return m.BACKBONE.FREEZE_AT, m.ROI_BOX_HEAD.POOLER_RESOLUTION, node.SOLVER.WEIGHT_DECAY


@pytest.mark.parametrize("child, opts", [
    ("MODEL:\n  RPN:\n    ENABLE_DECOUPLE: True\n    BACKWARD_SCALE: 0.0\n", None),
    ("TEST:\n  PCB_ENABLE: True\n", None),
    ("", ["MODEL.ROI_HEADS.BACKWARD_SCALE", "0.75"]),
])
def test_a_defrcn_config_gets_defrcns_defaults(tmp_path, child, opts):
    assert _four(load_d2_node(_write(tmp_path, child), opts)) == (3, 7, 5e-5)


def test_its_own_values_still_win(tmp_path):
    child = "MODEL:\n  RPN:\n    ENABLE_DECOUPLE: True\nSOLVER:\n  WEIGHT_DECAY: 0.001\n"
    node = load_d2_node(_write(tmp_path, child))
    assert _four(node) == (3, 7, 0.001)


def test_a_plain_detectron2_config_keeps_detectron2s_defaults(tmp_path):
    assert _four(load_d2_node(_write(tmp_path, "SOLVER:\n  BASE_LR: 0.01\n"))) == (2, 14, 1e-4)
