"""Editing and writing configs: merge_from_dict, both override grammars, dump, diff."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from kiln.config import (
    MISSING,
    Config,
    ConfigError,
    ConfigKeyError,
    parse_cfg_options,
    parse_opts,
    parse_value,
)

FIXTURE = Path(__file__).parents[1] / "fixtures" / "retinanet_r101_fpn_1x.py"


def _cfg() -> Config:
    return Config(dict(
        model=dict(backbone=dict(depth=50), heads=[dict(type="A", x=1), dict(type="B", x=2)]),
        optimizer=dict(type="SGD", lr=0.1),
    ))


def test_merge_from_dict_dotted_keys_and_list_indices():
    cfg = _cfg()
    cfg.merge_from_dict({"model.backbone.depth": 101, "model.heads.1.x": 5, "optimizer.lr": 0.2})
    assert cfg.model.backbone.depth == 101
    assert cfg.model.heads[1].x == 5 and cfg.model.heads[0].x == 1
    assert cfg.optimizer.lr == 0.2


def test_merge_from_dict_dict_value_merges_and_delete_replaces():
    cfg = _cfg()
    cfg.merge_from_dict({"optimizer": {"momentum": 0.9}})
    assert cfg.optimizer.to_dict() == {"type": "SGD", "lr": 0.1, "momentum": 0.9}
    cfg.merge_from_dict({"optimizer": {"_delete_": True, "type": "Adam"}})
    assert cfg.optimizer.to_dict() == {"type": "Adam"}


def test_merge_from_dict_out_of_range_index_is_an_error():
    with pytest.raises(ConfigKeyError, match=r"'model\.heads\.5\.x'.*index 5 is out of range.*length 2"):
        _cfg().merge_from_dict({"model.heads.5.x": 1})


def test_merge_from_dict_list_keys_can_be_disabled():
    with pytest.raises(ConfigError, match="allow_list_keys=False"):
        _cfg().merge_from_dict({"model.heads.0.x": 1}, allow_list_keys=False)


def test_unknown_key_is_created_as_mmengine_does():
    # MMEngine's merge_from_dict creates a dotted key that does not exist yet (with its
    # parents); a typo is caught where the value is used (dialect key check, registry build).
    cfg = _cfg()
    cfg.merge_from_dict({"model.backbone.dept": 1, "seed": 0, "model.neck.init_cfg": None})
    assert cfg.model.backbone.to_dict() == {"depth": 50, "dept": 1}
    assert cfg.seed == 0 and cfg.model.neck.to_dict() == {"init_cfg": None}


def test_override_through_a_scalar_is_an_error_naming_the_key():
    with pytest.raises(ConfigKeyError, match=r"'model\.backbone\.depth\.x'.*'model\.backbone\.depth' is a int"):  # noqa: E501
        _cfg().merge_from_dict({"model.backbone.depth.x": 1})


def test_plus_prefix_still_creates_new_keys_and_intermediate_dicts():
    cfg = _cfg()
    cfg.merge_from_dict({"+model.neck.channels": 256, "+seed": 3})
    assert cfg.model.neck.channels == 256 and cfg.seed == 3


def test_parse_value_grammar_is_literal():
    assert parse_value("1") == 1 and parse_value("-2.5e-3") == -0.0025
    assert parse_value("True") is True and parse_value("false") is False
    assert parse_value("None") is None and parse_value("null") is None
    assert parse_value("a,b") == ["a", "b"] and parse_value("1,2") == [1, 2]
    assert parse_value("[1,2]") == [1, 2] and parse_value("(1,)") == (1,)
    assert parse_value("[(1,2),(3,4)]") == [(1, 2), (3, 4)]
    assert parse_value("[a,[b,c]]") == ["a", ["b", "c"]]
    assert parse_value("'quoted, with comma'") == "quoted, with comma"
    assert parse_value("{'a': 1}") == {"a": 1}
    assert parse_value("/data/coco/") == "/data/coco/"


def test_parse_value_never_evaluates_code(tmp_path):
    marker = tmp_path / "pwned"
    text = f"__import__('os').system('touch {marker}')"
    assert parse_value(text) == text
    assert not marker.exists()


def test_parse_value_unbalanced_brackets_fail():
    with pytest.raises(ConfigError, match="Unbalanced"):
        parse_value("[1,2")


def test_parse_cfg_options_and_errors():
    opts = parse_cfg_options(["a.b=1", "c=[1,2]", "+d=x"])
    assert opts == {"a.b": 1, "c": [1, 2], "+d": "x"}
    with pytest.raises(ConfigError, match="not of the form key=value"):
        parse_cfg_options(["a.b"])


def test_parse_opts_pairs_and_odd_length_error():
    assert parse_opts(["SOLVER.BASE_LR", "0.02", "MODEL.WEIGHTS", "w.pth"]) == {
        "SOLVER.BASE_LR": 0.02, "MODEL.WEIGHTS": "w.pth"}
    with pytest.raises(ConfigError, match=r"odd number.*'SOLVER\.STEPS'"):
        parse_opts(["SOLVER.STEPS"])


def test_cfg_options_top_level_variable_changes_dependent_values():
    cfg = Config.fromfile(FIXTURE, cfg_options=parse_cfg_options(["data_root=/x/"]))
    assert cfg.data_root == "/x/"
    assert cfg.data.train.ann_file == "/x/annotations/instances_train2017.json"
    assert cfg.data.test.img_prefix == "/x/val2017/"


def test_variable_override_applies_in_base_files_too(write):
    write("base.py", "root = 'a/'\ntrain = dict(ann=root + 'train.json')\n")
    path = write("c.py", "_base_ = 'base.py'\nval = dict(ann=_base_.root + 'val.json')\n")
    cfg = Config.fromfile(path, overrides=["root=b/"])
    assert cfg.train.ann == "b/train.json" and cfg.val.ann == "b/val.json" and cfg.root == "b/"


def test_other_overrides_apply_after_loading_and_new_keys_are_created(write):
    path = write("c.py", "root = 'a/'\nann = root + 'x'\nmodel = dict(depth=50)\n")
    cfg = Config.fromfile(path, cfg_options={"model.depth": 101})
    assert cfg.model.depth == 101 and cfg.ann == "a/x"
    assert Config.fromfile(path, cfg_options={"mdl": 1}).mdl == 1  # MMEngine's rule: created
    assert Config.fromfile(path, cfg_options={"+extra": 1}).extra == 1


def test_custom_imports_are_imported_and_failures_reported(write, tmp_path, monkeypatch):
    pkg = write("myplug_cfg_test/__init__.py", "LOADED = True\n")
    monkeypatch.syspath_prepend(str(pkg.parent.parent))
    path = write("c.py", "custom_imports = dict(imports=['myplug_cfg_test'], allow_failed_imports=False)\n")
    Config.fromfile(path)
    assert sys.modules["myplug_cfg_test"].LOADED is True
    bad = write("d.py", "custom_imports = dict(imports=['no_such_mod_kiln'])\n")
    with pytest.raises(ImportError, match="no_such_mod_kiln.*allow_failed_imports"):
        Config.fromfile(bad)
    ok = write("e.py", "custom_imports = dict(imports=['no_such_mod_kiln'], allow_failed_imports=True)\n")
    assert Config.fromfile(ok).custom_imports.allow_failed_imports is True


@pytest.mark.parametrize("suffix", [".py", ".yaml", ".json"])
def test_dump_round_trips_through_fromfile(tmp_path, suffix):
    cfg = Config.fromfile(FIXTURE)
    out = tmp_path / f"dumped{suffix}"
    cfg.dump(out)
    again = Config.fromfile(out)
    if suffix == ".json":  # json has no tuples
        assert again.to_dict() == Config.fromstring(cfg.dump(file_format="json"), "json").to_dict()
        assert again.model.backbone.out_indices == [0, 1, 2, 3]
    else:
        assert again.to_dict() == cfg.to_dict()
        assert again.model.backbone.out_indices == (0, 1, 2, 3)


def test_py_dump_round_trips_awkward_values(tmp_path):
    cfg = Config({
        "t1": (1,), "inf": float("inf"), "nested": {"not an ident": [None, True, 1e-8]},
        "int_keys": {1: "a"}, "cls": Path, "long": list(range(60)), "s": "it's \"q\"",
    })
    out = tmp_path / "c.py"
    cfg.dump(out)
    again = Config.fromfile(out)
    assert again.to_dict() == cfg.to_dict()
    assert again.cls is Path


def test_dump_without_file_returns_text_and_pretty_text_is_python():
    cfg = Config(dict(a=dict(b=1)))
    assert cfg.dump() == cfg.pretty_text == "a = dict(b=1)\n"
    assert cfg.dump(file_format="yaml") == "a:\n  b: 1\n"


def test_dump_is_atomic_and_creates_parent_dirs(tmp_path):
    target = tmp_path / "deep" / "dir" / "c.py"
    Config(dict(a=1)).dump(target)
    assert target.read_text() == "a = 1\n"
    assert [p.name for p in target.parent.iterdir()] == ["c.py"]


def test_diff_lists_changed_added_and_removed_keys():
    a = Config(dict(model=dict(depth=50, w=[1, 2]), lr=0.1, gone=1))
    b = Config(dict(model=dict(depth=101, w=[1, 3]), lr=0.1, new=2))
    assert Config.diff(a, b) == {
        "model.depth": (50, 101), "model.w.1": (2, 3), "gone": (1, MISSING), "new": (MISSING, 2)}
    assert Config.diff(a, a) == {}


def test_py_dump_survives_keys_that_shadow_builtins(tmp_path):
    cfg = Config({"dict": {"a": 1}, "float": float("-inf"), "globals": [1], "not ident": {"b": 2},
                  "model": {"x": {"y": 1}}})
    out = tmp_path / "c.py"
    cfg.dump(out)
    assert Config.fromfile(out).to_dict() == cfg.to_dict()
