"""Detectron2 yaml loading: ``!!python/object/apply:eval``, other python tags, ``VERSION``, global_cfg."""

from __future__ import annotations

import logging
import os.path as osp

import pytest

from kiln.config import CfgNode, ConfigError, get_cfg, global_cfg, set_global_cfg
from kiln.fileio.safe_eval import UnsafeExpressionError, safe_eval


def _write(tmp_path, text, name="c.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_eval_tag_computes_retinanet_anchor_sizes(tmp_path):
    # Base-RetinaNet.yaml's spelling: three sizes per octave for each FPN level.
    path = _write(
        tmp_path,
        "MODEL:\n  ANCHOR_GENERATOR:\n    SIZES: !!python/object/apply:eval "
        '["[[x, x * 2**(1.0/3), x * 2**(2.0/3) ] for x in [32, 64, 128, 256, 512 ]]"]\n',
    )
    cfg = get_cfg()
    cfg.merge_from_file(path)
    sizes = cfg.MODEL.ANCHOR_GENERATOR.SIZES
    assert len(sizes) == 5 and [s[0] for s in sizes] == [32, 64, 128, 256, 512]
    assert sizes[2][1] == pytest.approx(128 * 2 ** (1 / 3)) and sizes[4][2] == pytest.approx(
        512 * 2 ** (2 / 3)
    )


@pytest.mark.parametrize(
    "expr, value",
    [
        ("[x * y for x in [1, 2] for y in (3, 4) if x != y]", [3, 4, 6, 8]),
        ("{k: v for k, v in [('a', 1), ('b', 2)]}", {"a": 1, "b": 2}),
        ("(1 + 2) * 3 - 4 / 2 // 1 % 5", 7.0),
        ("[-1, +2, not 0, 1 if 2 > 1 else 0, 3 in [3]]", [-1, 2, True, 1, True]),
        ("[{1, 2}, (), {}]", [{1, 2}, (), {}]),
    ],
)
def test_safe_eval_allows_literals_arithmetic_and_comprehensions(expr, value):
    assert safe_eval(expr) == value


@pytest.mark.parametrize(
    "expr, what",
    [
        ("__import__('os').system('true')", "function call"),
        ("open('/etc/passwd')", "function call"),
        ("(1).__class__", "attribute"),
        ("x + 1", "name 'x'"),
        ("[1, 2][0]", "subscript"),
        ("(lambda: 1)", "lambda"),
        ("(x for x in [1])", "generator"),
        ("[x for x in y]", "name 'y'"),
        ("2 ** 100000", "exponent"),
        ("[0] * 10 ** 7", "repeated"),
        ("1 +", "not a Python expression"),
    ],
)
def test_safe_eval_refuses_everything_else(expr, what):
    with pytest.raises(UnsafeExpressionError, match=what):
        safe_eval(expr)


def test_unsafe_eval_expression_is_refused_with_file_and_line(tmp_path):
    path = _write(
        tmp_path,
        "MODEL:\n  ANCHOR_GENERATOR:\n    SIZES: !!python/object/apply:eval "
        "[\"__import__('os').getcwd()\"]\n",
    )
    with pytest.raises(ConfigError, match=r"c\.yaml, line 3: .*apply:eval.*function call is not allowed"):
        get_cfg().merge_from_file(path)


@pytest.mark.parametrize(
    "tag",
    [
        "!!python/object/apply:os.system ['true']",
        "!!python/name:os.system ''",
        "!!python/object:collections.OrderedDict {}",
    ],
)
def test_other_python_tags_stay_refused(tmp_path, tag):
    path = _write(tmp_path, f"OUTPUT_DIR: out\n\nSEED: {tag}\n")
    with pytest.raises(ConfigError, match=r"c\.yaml, line 3: .*would construct a Python object"):
        get_cfg().merge_from_file(path)


def test_version_1_files_are_upgraded_as_detectron2_renames_them(tmp_path, caplog):
    path = _write(
        tmp_path,
        "VERSION: 1\nMODEL:\n  WEIGHT: w.pkl\n  META_ARCHITECTURE: RetinaNet\n"
        "  RETINANET:\n    ANCHOR_SIZES: [[16, 32]]\n    INFERENCE_SCORE_THRESHOLD: 0.3\n"
        "    ANCHOR_STRIDES: [8]\n  RPN:\n    ANCHOR_SIZES: [[64]]\n"
        "TEST:\n  DETECTIONS_PER_IMG: 50\n  AUG_ON: True\n",
    )
    cfg = get_cfg()
    with caplog.at_level(logging.WARNING, logger="kiln.config"):
        cfg.merge_from_file(path)
    assert cfg.MODEL.WEIGHTS == "w.pkl" and cfg.MODEL.RETINANET.SCORE_THRESH_TEST == 0.3
    assert cfg.MODEL.ANCHOR_GENERATOR.SIZES == [[16, 32]]  # RetinaNet: its own anchor sizes move
    assert cfg.TEST.DETECTIONS_PER_IMAGE == 50 and cfg.TEST.AUG.ENABLED is True and cfg.VERSION == 2
    # the RPN's version-1 anchors are not read by a RetinaNet: dropped as Detectron2 does, and said so
    assert "MODEL.RPN.ANCHOR_SIZES" in caplog.text


def test_unversioned_file_with_old_names_is_upgraded_and_new_names_need_no_version(tmp_path):
    cfg = get_cfg()
    cfg.merge_from_file(_write(tmp_path, "MODEL:\n  RPN:\n    ANCHOR_SIZES: [[8, 16]]\n"))
    assert cfg.MODEL.ANCHOR_GENERATOR.SIZES == [[8, 16]]  # GeneralizedRCNN: the RPN's sizes move
    cfg = get_cfg()
    cfg.merge_from_file(_write(tmp_path, "MODEL:\n  ROI_HEADS:\n    NMS_THRESH_TEST: 0.4\n", "d.yaml"))
    assert cfg.MODEL.ROI_HEADS.NMS_THRESH_TEST == 0.4


@pytest.mark.parametrize("version", [0, 3, "two"])
def test_unknown_version_is_refused_naming_the_file(tmp_path, version):
    path = _write(tmp_path, f"VERSION: {version}\n")
    with pytest.raises(
        ConfigError, match=rf"c\.yaml: VERSION={version!r}: kiln reads Detectron2 config versions"
    ):
        get_cfg().merge_from_file(path)


def test_plain_cfgnode_without_version_is_not_upgraded(tmp_path):
    # the VERSION machinery is Detectron2's schema's; a project's own CfgNode merges files as they are
    node = CfgNode({"MODEL": {"WEIGHT": "a"}})
    node.merge_from_file(_write(tmp_path, "MODEL:\n  WEIGHT: b\n"))
    assert node.MODEL.WEIGHT == "b"


def test_set_global_cfg_makes_keys_readable_everywhere():
    cfg = get_cfg()
    cfg.SOLVER.BASE_LR = 0.123
    cfg.freeze()
    import kiln.config as kc

    set_global_cfg(cfg)
    assert kc.global_cfg is global_cfg and global_cfg.SOLVER.BASE_LR == 0.123
    other = get_cfg()
    other.SEED = 5
    set_global_cfg(other)
    assert global_cfg.SEED == 5 and global_cfg.SOLVER.BASE_LR == 0.001  # replaced, not merged


def test_schema_has_the_keys_detectron2_configs_set():
    # keys the issue found missing (DC5, Detectron1 comparisons, RPN/ROI box losses, solver)
    cfg = get_cfg()
    for key in (
        "MODEL.RESNETS.RES5_DILATION",
        "MODEL.RPN.BBOX_REG_LOSS_TYPE",
        "MODEL.RPN.BOUNDARY_THRESH",
        "MODEL.ROI_HEADS.PROPOSAL_APPEND_GT",
        "MODEL.ROI_BOX_HEAD.NORM",
        "MODEL.ROI_MASK_HEAD.NAME",
        "MODEL.ROI_BOX_CASCADE_HEAD.IOUS",
        "SOLVER.REFERENCE_WORLD_SIZE",
        "SOLVER.BIAS_LR_FACTOR",
        "TEST.PRECISE_BN.ENABLED",
        "DATASETS.PRECOMPUTED_PROPOSAL_TOPK_TRAIN",
        "GLOBAL.HACK",
    ):
        node = cfg
        for part in key.split("."):
            node = node[part]
    assert cfg.TEST.AUG.MIN_SIZES == (400, 500, 600, 700, 800, 900, 1000, 1100, 1200)


def test_kiln_reads_a_top_level_file_with_an_eval_tag(tmp_path, capsys):
    # the command line's Detectron2-dialect detection parses the file with kiln's loader too
    from kiln.cli import main

    path = _write(
        tmp_path,
        'MODEL:\n  META_ARCHITECTURE: "RetinaNet"\n  BACKBONE:\n'
        '    NAME: "build_retinanet_resnet_fpn_backbone"\n  RESNETS:\n'
        '    OUT_FEATURES: ["res3", "res4", "res5"]\n  FPN:\n'
        '    IN_FEATURES: ["res3", "res4", "res5"]\n  ANCHOR_GENERATOR:\n'
        '    SIZES: !!python/object/apply:eval ["[[x, x * 2] for x in [16, 32, 64, 128, 256]]"]\n'
        'DATASETS:\n  TRAIN: ("d2yaml_train",)\n',
    )
    from kiln.data import DatasetCatalog
    from kiln.data.datasets import generate_shapes_dataset, register_coco_instances

    if "d2yaml_train" not in DatasetCatalog.list():
        p = generate_shapes_dataset(str(tmp_path / "data"), num_images=2, image_size=32, split="train")
        register_coco_instances("d2yaml_train", {}, p["ann_file"], p["img_prefix"])
    assert main(["config", "print", path]) == 0
    out = "".join(capsys.readouterr().out.split())  # without whitespace
    assert "sizes=[[16.0,32.0],[32.0,64.0]," in out


def test_load_d2_node_is_the_merged_frozen_config_and_its_dump_reloads(tmp_path):
    # what OUTPUT_DIR/config.yaml records: reloading the dump gives the same node
    from kiln.cli.d2_config import add_fewshot_defaults, load_d2_node
    from kiln.config import FrozenConfigError

    root = osp.join(osp.dirname(osp.dirname(__file__)), "fixtures", "detectron2_configs")
    node = load_d2_node(
        osp.join(root, "COCO-Detection", "retinanet_R_50_FPN_1x.yaml"),
        ["SOLVER.BASE_LR", "0.005", "MODEL.BACKBONE.FREEZE", "True"],
    )
    assert node.is_frozen() and node.SOLVER.BASE_LR == 0.005 and node.MODEL.BACKBONE.FREEZE is True
    assert node.MODEL.META_ARCHITECTURE == "RetinaNet" and len(node.MODEL.ANCHOR_GENERATOR.SIZES) == 5
    with pytest.raises(FrozenConfigError):
        node.SEED = 1
    (tmp_path / "config.yaml").write_text(node.dump())
    again = add_fewshot_defaults(get_cfg())
    again.merge_from_file(str(tmp_path / "config.yaml"))
    assert again.to_dict() == node.to_dict()
