"""DeFRCN's Detectron2 keys (``add_defrcn_config``): a DeFRCN-style yaml loads, each key maps onto the
DeFRCN detector / freezing / PCB / the bAP-nAP evaluator, and values kiln cannot honour are refused by
name."""

from __future__ import annotations

import pytest
from fewshot_fixtures import defrcn_yaml

from kiln.cli.d2_config import load_d2_config, load_d2_node
from kiln.config.dialects.d2_check import D2KeyError

# The keys of a DeFRCN fine-tuning config (C4 Res5ROIHeads, as its configs/voc/*.yaml set them).
C4_FINETUNE = """\
MODEL:
  META_ARCHITECTURE: "GeneralizedRCNN"
  DEVICE: "cpu"
  BACKBONE:
    FREEZE: False
    FREEZE_AT: 3
  RESNETS:
    DEPTH: 50
  RPN:
    ENABLE_DECOUPLE: True
    BACKWARD_SCALE: 0.0
    FREEZE: False
  ROI_HEADS:
    NAME: "Res5ROIHeads"
    ENABLE_DECOUPLE: True
    BACKWARD_SCALE: 0.001
    NUM_CLASSES: 3
    FREEZE_FEAT: True
    CLS_DROPOUT: True
DATASETS:
  TRAIN: ("fsunit_trainval_all_1shot_seed0", )
  TEST: ('fsunit_test_all',)
TEST:
  PCB_ENABLE: True
  PCB_MODELPATH: "/weights/resnet101.pth"
"""


def _load(tmp_path, text, *opts):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    return load_d2_config(str(path), list(opts))


def test_a_defrcn_finetune_config_translates(tmp_path, fsunit):
    cfg = _load(tmp_path, C4_FINETUNE)
    m = cfg.model
    assert m["type"] == "DeFRCN"
    assert m["gdl"] == dict(channels=1024, rpn_decouple=True, rpn_scale=0.0, rcnn_decouple=True,
                            rcnn_scale=0.001)
    assert m["cls_dropout"] == 0.8
    assert m["pcb"] == dict(model_path="/weights/resnet101.pth", model_type="resnet", alpha=0.5, upper=1.0,
                            lower=0.05, support=dict(dataset_name="fsunit_trainval_all_1shot_seed0"),
                            exclude_classes=[0, 1])  # base classes of the base+novel test set
    assert cfg.frozen_modules == ["roi_head.shared_head"]  # FREEZE_FEAT: Res5ROIHeads' res5
    assert cfg.val_evaluator == dict(type="FewShotCOCOEvaluator", base_classes=["circle", "square"],
                                     novel_classes=["triangle"])
    assert m["backbone"]["frozen_stages"] == 2  # FREEZE_AT 3


def test_rpn_freeze_and_pcb_settings(tmp_path, fsunit):
    cfg = _load(tmp_path, C4_FINETUNE, "MODEL.RPN.FREEZE", "True", "TEST.PCB_ALPHA", "0.3", "TEST.PCB_UPPER",
                "0.9", "TEST.PCB_LOWER", "0.1", "DATASETS.TEST", "('fsunit_test_novel',)")
    assert "rpn_head" in cfg.frozen_modules
    pcb = cfg.model["pcb"]
    assert (pcb["alpha"], pcb["upper"], pcb["lower"], pcb["exclude_classes"]) == (0.3, 0.9, 0.1, [])


def test_plain_configs_stay_faster_rcnn(tmp_path, fsunit):
    cfg = _load(tmp_path, C4_FINETUNE, "MODEL.RPN.ENABLE_DECOUPLE", "False",
                "MODEL.ROI_HEADS.ENABLE_DECOUPLE", "False", "MODEL.ROI_HEADS.CLS_DROPOUT", "False",
                "TEST.PCB_ENABLE", "False")
    assert cfg.model["type"] == "FasterRCNN" and "gdl" not in cfg.model


def test_fpn_gdl_channels_are_the_fpn_width(tmp_path, fsunit):
    cfg = _load(tmp_path, defrcn_yaml(2, finetune=False, iters=1), "DATASETS.TRAIN",
                "('fsunit_trainval_base',)", "DATASETS.TEST", "('fsunit_test_base',)")
    assert cfg.model["gdl"]["channels"] == 32
    assert cfg.val_evaluator["type"] == "FewShotCOCOEvaluator"


@pytest.mark.parametrize("opts, key, message", [
    (["TEST.PCB_MODELPATH", "''"], "TEST.PCB_ENABLE", "TEST.PCB_MODELPATH is empty"),
    (["TEST.PCB_MODELTYPE", "vgg"], "TEST.PCB_MODELTYPE", "implement 'resnet'"),
    (["TEST.PCB_ALPHA", "1.5"], "TEST.PCB_ALPHA", r"in \[0, 1\]"),
    (["MODEL.ROI_HEADS.OUTPUT_LAYER", "CosineSimOutputLayers"], "MODEL.ROI_HEADS.OUTPUT_LAYER",
     "FastRCNNOutputLayers"),
    (["MODEL.ROI_HEADS.NUM_CLASSES_NOVEL", "2"], "MODEL.ROI_HEADS.NUM_CLASSES_NOVEL", "has 1 novel classes"),
    (["MODEL.ROI_HEADS.DROPOUT_RATIO", "1.0"], "MODEL.ROI_HEADS.DROPOUT_RATIO", r"in \[0, 1\)"),
    (["MUTE_HEADER", "False"], "MUTE_HEADER", "no DeFRCN banner"),
])
def test_values_kiln_cannot_honour_are_refused_by_name(tmp_path, fsunit, opts, key, message):
    with pytest.raises(D2KeyError, match=message) as err:
        _load(tmp_path, C4_FINETUNE, *opts)
    assert err.value.key == key


def test_num_classes_novel_matching_the_test_set_is_accepted(tmp_path, fsunit):
    assert _load(tmp_path, C4_FINETUNE, "MODEL.ROI_HEADS.NUM_CLASSES_NOVEL", "1").model["type"] == "DeFRCN"


def test_defrcn_keys_exist_with_defrcns_defaults(tmp_path):
    path = tmp_path / "e.yaml"
    path.write_text("MODEL:\n  DEVICE: cpu\n")
    d2 = load_d2_node(str(path))
    rpn = d2.MODEL.RPN
    assert (rpn.ENABLE_DECOUPLE, rpn.BACKWARD_SCALE, rpn.FREEZE) == (False, 1.0, False)
    assert (d2.MODEL.ROI_HEADS.CLS_DROPOUT, d2.MODEL.ROI_HEADS.DROPOUT_RATIO) == (False, 0.8)
    t = d2.TEST
    pcb = (t.PCB_ENABLE, t.PCB_MODELTYPE, t.PCB_ALPHA, t.PCB_UPPER, t.PCB_LOWER)
    assert pcb == (False, "resnet", 0.5, 1.0, 0.05)
    # Detectron2's own defaults are untouched unless DeFRCN's project values are asked for
    assert d2.MODEL.BACKBONE.FREEZE_AT == 2 and d2.SOLVER.WEIGHT_DECAY == 0.0001
    from kiln.config.defaults import apply_defrcn_project_values

    d2.defrost()
    apply_defrcn_project_values(d2)
    assert (d2.MODEL.BACKBONE.FREEZE_AT, d2.SOLVER.WEIGHT_DECAY, d2.MODEL.ROI_HEADS.NAME) == (3, 5e-5,
                                                                                              "Res5ROIHeads")
