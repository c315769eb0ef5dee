"""`kiln config print|dump|diff` and the exit-code-2 contract for bad input."""

from __future__ import annotations

from kiln.cli import main
from kiln.config import Config

RETINA = "kiln::retinanet/retinanet_r50_fpn_1x_coco.py"
FASTER = "kiln::faster_rcnn/faster_rcnn_r50_fpn_1x_coco.py"


def test_config_print_shows_bases_merged_and_overrides_applied(capsys):
    assert main(["config", "print", RETINA, "--cfg-options", "model.backbone.depth=101"]) == 0
    out = capsys.readouterr().out
    assert "depth=101" in out  # the override
    assert "type='RetinaHead'" in out  # from _base_/models
    assert "total_epochs = 12" in out  # from _base_/schedules
    assert "instances_train2017.json" in out  # from _base_/datasets


def test_config_print_override_of_top_level_variable_rewrites_derived_paths(capsys):
    assert main(["config", "print", RETINA, "--cfg-options", "data_root=/data/mycoco/"]) == 0
    out = capsys.readouterr().out
    assert "/data/mycoco/annotations/instances_train2017.json" in out
    assert "data/coco/annotations" not in out


def test_config_dump_writes_a_loadable_equivalent_file(tmp_path):
    out = tmp_path / "resolved.py"
    assert main(["config", "dump", RETINA, str(out)]) == 0
    original = Config.fromfile(str(__import__("kiln.model_zoo", fromlist=["x"]).resolve_config_path(RETINA)))
    assert Config.fromfile(str(out)).to_dict() == original.to_dict()


def test_config_diff_lists_only_differing_keys(capsys):
    assert main(["config", "diff", RETINA, FASTER]) == 0
    out = capsys.readouterr().out
    assert "- model.type: 'RetinaNet'" in out
    assert "+ model.type: 'FasterRCNN'" in out
    assert "data_root" not in out  # identical in both


def test_config_diff_of_identical_configs_says_so(capsys):
    assert main(["config", "diff", RETINA, RETINA]) == 0
    assert "identical" in capsys.readouterr().out


def test_new_override_key_is_created_as_in_mmengine(capsys):
    # MMEngine's --cfg-options rule: a key that does not exist yet is added (a typo such as
    # this one is refused later, by the registry build of the backbone).
    assert main(["config", "print", RETINA, "--cfg-options", "model.backbone.dept=18", "seed=0"]) == 0
    out = capsys.readouterr().out
    assert "dept=18" in out and "seed = 0" in out


def test_missing_config_file_exits_2_naming_the_file(tmp_path, kiln):
    proc = kiln("config", "print", str(tmp_path / "nope.py"))
    assert proc.returncode == 2
    assert "nope.py" in proc.stderr and "Traceback" not in proc.stderr


def test_config_with_syntax_error_exits_2_naming_file_and_line(tmp_path, kiln):
    bad = tmp_path / "bad.py"
    bad.write_text("model = dict(\n  type='RetinaNet',,\n)\n")
    proc = kiln("config", "print", str(bad))
    assert proc.returncode == 2
    assert "bad.py" in proc.stderr and "line 2" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_unknown_shipped_config_suggests_close_names(capsys):
    assert main(["config", "print", "kiln::retinanet/retinanet_r50_fpn_1x.py"]) == 2
    err = capsys.readouterr().err
    assert "kiln::retinanet/retinanet_r50_fpn_1x_coco.py" in err


def test_bad_subcommand_and_missing_argument_exit_2(capsys):
    assert main(["frobnicate"]) == 2
    assert main(["config", "print"]) == 2
    assert "usage" in capsys.readouterr().err


def test_user_config_inherits_shipped_base_by_package_path(tmp_path, capsys):
    cfg = tmp_path / "mine.py"
    cfg.write_text("_base_ = 'kiln::retinanet/retinanet_r50_fpn_1x_coco.py'\n"
                   "model = dict(bbox_head=dict(num_classes=3))\n")
    assert main(["config", "print", str(cfg)]) == 0
    out = capsys.readouterr().out
    assert "num_classes=3" in out and "type='RetinaNet'" in out


def test_python_dash_m_kiln_prints_version(kiln):
    proc = kiln("--version")
    assert proc.returncode == 0 and proc.stdout.startswith("kiln ")


def test_config_print_canonical_shows_the_translated_run_schema(capsys, tmp_path):
    assert main(["config", "print", "--canonical", RETINA, "--cfg-options", "total_epochs=3"]) == 0
    out = capsys.readouterr().out
    # the MMCV keys of the shipped config, as kiln train builds them (overrides apply before translation)
    assert "train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=3, val_interval=1)" in out
    assert "type='MultiStepLR'" in out and "lr_config" not in out and "total_epochs" not in out
    assert "train_dataloader = dict(" in out and "\ndata = " not in out
    # the printed canonical config is itself a config that translates to the same thing
    dumped = tmp_path / "canonical.py"
    assert main(["config", "dump", "--canonical", RETINA, str(dumped), "--cfg-options",
                 "total_epochs=3"]) == 0
    from kiln.config.dialects import to_canonical
    from kiln.model_zoo import resolve_config_path

    original = to_canonical(Config.fromfile(resolve_config_path(RETINA), {"total_epochs": 3}))
    assert to_canonical(Config.fromfile(str(dumped))) == Config(original).to_dict()


def test_config_diff_canonical_compares_across_dialects(capsys, tmp_path):
    mmcv = tmp_path / "mmcv.py"
    mmcv.write_text("model = dict(type='X')\ntotal_epochs = 3\n")
    mmengine = tmp_path / "mmengine.py"
    mmengine.write_text("model = dict(type='X')\n"
                        "train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=3)\n")
    assert main(["config", "diff", "--canonical", str(mmcv), str(mmengine)]) == 0
    assert "configs are identical" in capsys.readouterr().out


def test_config_print_canonical_names_a_misspelt_key(tmp_path, capsys):
    path = tmp_path / "bad.py"
    path.write_text("model = dict(type='X')\ntotal_epoch = 3\n")
    assert main(["config", "print", "--canonical", str(path)]) == 2
    err = capsys.readouterr().err
    assert "total_epoch" in err and "Did you mean 'total_epochs'" in err

