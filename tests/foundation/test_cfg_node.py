"""Detectron2-style CfgNode: defaults < project defaults < file (_BASE_) < command line."""

from __future__ import annotations

import copy
import pickle

import pytest

from kiln.config import CfgNode, ConfigError, ConfigKeyError, FrozenConfigError, get_default_cfg


def _add_project_config(cfg: CfgNode) -> None:
    cfg.MODEL.MY_HEAD = CfgNode({"NUM_CONVS": 4})


def test_default_cfg_has_the_documented_keys():
    cfg = get_default_cfg()
    for key in [
        "MODEL.META_ARCHITECTURE", "MODEL.BACKBONE.NAME", "MODEL.RESNETS.DEPTH",
        "MODEL.RETINANET.NUM_CLASSES", "MODEL.ROI_HEADS.NUM_CLASSES", "MODEL.WEIGHTS",
        "MODEL.PIXEL_MEAN", "MODEL.PIXEL_STD", "INPUT.MIN_SIZE_TRAIN", "INPUT.MAX_SIZE_TRAIN",
        "INPUT.MIN_SIZE_TEST", "INPUT.MAX_SIZE_TEST", "INPUT.FORMAT", "DATASETS.TRAIN",
        "DATASETS.TEST", "DATALOADER.NUM_WORKERS", "DATALOADER.ASPECT_RATIO_GROUPING",
        "SOLVER.BASE_LR", "SOLVER.IMS_PER_BATCH", "SOLVER.STEPS", "SOLVER.MAX_ITER",
        "SOLVER.CHECKPOINT_PERIOD", "SOLVER.WARMUP_ITERS", "SOLVER.WARMUP_FACTOR",
        "SOLVER.MOMENTUM", "SOLVER.WEIGHT_DECAY", "SOLVER.GAMMA", "TEST.EVAL_PERIOD",
        "OUTPUT_DIR", "SEED",
    ]:
        node = cfg
        for part in key.split("."):
            assert part in node, key
            node = node[part]


def test_default_cfg_returns_independent_copies():
    a = get_default_cfg()
    a.SOLVER.BASE_LR = 1.0
    assert get_default_cfg().SOLVER.BASE_LR == 0.001


def test_layering_defaults_project_file_base_and_command_line(write):
    write("base.yaml", "SOLVER:\n  BASE_LR: 0.02\n  MAX_ITER: 100\nMODEL:\n  MY_HEAD:\n    NUM_CONVS: 2\n")
    path = write("exp.yaml", "_BASE_: base.yaml\nSOLVER:\n  MAX_ITER: 200\n  STEPS: [50, 80]\n")
    cfg = get_default_cfg()
    _add_project_config(cfg)
    cfg.merge_from_file(path)
    cfg.merge_from_list(["SOLVER.BASE_LR", "0.05", "OUTPUT_DIR", "/tmp/out"])
    assert cfg.SOLVER.BASE_LR == 0.05  # command line > base file
    assert cfg.SOLVER.MAX_ITER == 200  # file > base
    assert cfg.SOLVER.STEPS == (50, 80)  # list coerced to the default's tuple
    assert cfg.MODEL.MY_HEAD.NUM_CONVS == 2  # project default overridden by the file
    assert cfg.SOLVER.GAMMA == 0.1  # framework default kept
    assert cfg.OUTPUT_DIR == "/tmp/out"


def test_merge_from_file_rejects_unknown_keys_with_close_matches(write):
    path = write("exp.yaml", "SOLVER:\n  BASE_RL: 0.1\n")
    with pytest.raises(ConfigKeyError, match=r"'SOLVER\.BASE_RL'.*'BASE_LR'"):
        get_default_cfg().merge_from_file(path)


def test_merge_from_list_rejects_unknown_keys():
    with pytest.raises(ConfigKeyError, match=r"'MODEL\.WEIGTHS'.*'WEIGHTS'"):
        get_default_cfg().merge_from_list(["MODEL.WEIGTHS", "x"])


def test_type_checked_merges():
    cfg = get_default_cfg()
    cfg.merge_from_list(["SOLVER.BASE_LR", "1"])  # int into a float: allowed, converted
    assert cfg.SOLVER.BASE_LR == 1.0 and isinstance(cfg.SOLVER.BASE_LR, float)
    with pytest.raises(ConfigError, match=r"'SOLVER\.MAX_ITER'.*int.*str"):
        cfg.merge_from_list(["SOLVER.MAX_ITER", "many"])
    with pytest.raises(ConfigError, match=r"'DATALOADER\.ASPECT_RATIO_GROUPING'.*bool.*int"):
        cfg.merge_from_list(["DATALOADER.ASPECT_RATIO_GROUPING", "1"])
    with pytest.raises(ConfigError, match=r"'OUTPUT_DIR'.*Quote the value"):
        cfg.merge_from_list(["OUTPUT_DIR", "5"])


def test_none_default_accepts_any_valid_type_and_new_allowed_nodes():
    cfg = CfgNode({"A": None, "OPEN": CfgNode({}, new_allowed=True)})
    cfg.merge_from_other_cfg({"A": [1, 2], "OPEN": {"ANY": "x"}})
    assert cfg.A == [1, 2] and cfg.OPEN.ANY == "x"


def test_freeze_rejects_writes_and_defrost_allows_them():
    cfg = get_default_cfg()
    cfg.freeze()
    with pytest.raises(FrozenConfigError, match=r"'SOLVER\.BASE_LR'.*frozen.*defrost"):
        cfg.SOLVER.BASE_LR = 1.0
    with pytest.raises(FrozenConfigError):
        cfg.merge_from_list(["SOLVER.BASE_LR", "1.0"])
    cfg.defrost()
    cfg.SOLVER.BASE_LR = 1.0
    assert cfg.SOLVER.BASE_LR == 1.0


def test_clone_is_deep_and_keeps_frozen_state():
    cfg = get_default_cfg()
    cfg.freeze()
    clone = cfg.clone()
    assert clone.is_frozen() and clone == cfg
    clone.defrost()
    clone.MODEL.PIXEL_MEAN.append(0)
    assert len(cfg.MODEL.PIXEL_MEAN) == 3


def test_pickle_and_deepcopy_keep_values_and_flags():
    cfg = CfgNode({"A": {"B": 1}}, new_allowed=True)
    cfg.freeze()
    for other in (pickle.loads(pickle.dumps(cfg)), copy.deepcopy(cfg)):
        assert other.A.B == 1 and other.is_frozen() and other.A.is_frozen()
        assert other.is_new_allowed()


def test_dump_to_yaml_and_back(tmp_path):
    cfg = get_default_cfg()
    cfg.SOLVER.BASE_LR = 0.123
    path = tmp_path / "out.yaml"
    path.write_text(cfg.dump())
    again = get_default_cfg()
    again.merge_from_file(path)
    assert again == cfg
    assert again.SOLVER.STEPS == (30000,)


def test_missing_attribute_names_full_key():
    with pytest.raises(AttributeError, match=r"'SOLVER\.BASE_RL'.*'BASE_LR'"):
        _ = get_default_cfg().SOLVER.BASE_RL


def test_circular_base_is_reported(write):
    write("a.yaml", "_BASE_: b.yaml\n")
    write("b.yaml", "_BASE_: a.yaml\n")
    with pytest.raises(ConfigError, match="Circular _BASE_"):
        get_default_cfg().merge_from_file(write("c.yaml", "_BASE_: a.yaml\n"))
