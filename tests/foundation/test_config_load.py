"""Config.fromfile / fromstring: formats, _base_ inheritance, variables, error messages."""

from __future__ import annotations

import copy
import pickle
from pathlib import Path

import pytest

from kiln.config import Config, ConfigDict, ConfigError

FIXTURE = Path(__file__).parents[1] / "fixtures" / "retinanet_r101_fpn_1x.py"


@pytest.mark.parametrize(
    "name, text",
    [
        ("c.py", "a = 1\nb = dict(c=[1, 2], d='x')\n"),
        ("c.json", '{"a": 1, "b": {"c": [1, 2], "d": "x"}}'),
        ("c.yaml", "a: 1\nb:\n  c: [1, 2]\n  d: x\n"),
        ("c.yml", "a: 1\nb: {c: [1, 2], d: x}\n"),
    ],
)
def test_fromfile_reads_each_format(write, name, text):
    cfg = Config.fromfile(write(name, text))
    assert cfg.to_dict() == {"a": 1, "b": {"c": [1, 2], "d": "x"}}
    assert cfg.filename.endswith(name)
    assert cfg.text == text


def test_attribute_and_item_access_on_nested_dicts():
    cfg = Config(dict(model=dict(backbone=dict(depth=50)), pipeline=[dict(type="A")]))
    assert cfg.model.backbone.depth == 50
    assert cfg["model"]["backbone"]["depth"] == 50
    assert isinstance(cfg.pipeline[0], ConfigDict) and cfg.pipeline[0].type == "A"
    cfg.model.backbone.depth = 101
    cfg.new = {"x": 1}
    assert cfg.model["backbone"]["depth"] == 101 and cfg.new.x == 1


def test_missing_attribute_names_key_and_close_matches():
    cfg = Config(dict(model=dict(backbone=1, bbox_head=2)))
    with pytest.raises(AttributeError, match=r"'backbon'.*Did you mean: 'backbone'"):
        _ = cfg.model.backbon


def test_python_config_runs_as_code_and_drops_modules_and_functions(write):
    path = write("c.py", """
        import os
        def helper(x):
            return x * 2
        data_root = 'data/'
        ann = data_root + 'a.json'
        size = helper(4)
        __private = 3
    """)
    cfg = Config.fromfile(path)
    assert cfg.to_dict() == {"data_root": "data/", "ann": "data/a.json", "size": 8}


def test_base_single_string_relative_path_merges_dicts_and_replaces_lists(write):
    write("base/model.py", "model = dict(depth=50, norm=dict(type='BN', eps=1e-5), outs=[1, 2, 3])\n")
    path = write("exp/child.py", """
        _base_ = '../base/model.py'
        model = dict(norm=dict(type='GN'), outs=[4])
    """)
    cfg = Config.fromfile(path)
    assert cfg.model.to_dict() == {"depth": 50, "norm": {"type": "GN", "eps": 1e-5}, "outs": [4]}


def test_bases_in_three_formats_recursively(write):
    write("a.yaml", "a: 1\nshared: {x: 1, y: 2}\n")
    write("b.json", '{"_base_": "a.yaml", "b": 2, "shared": {"y": 3}}')
    write("c.py", "_base_ = ['b.json']\nc = 3\n")
    path = write("d.yml", "_base_: [c.py]\nd: 4\nshared: {z: 5}\n")
    cfg = Config.fromfile(path)
    assert cfg.to_dict() == {"a": 1, "shared": {"x": 1, "y": 3, "z": 5}, "b": 2, "c": 3, "d": 4}
    assert [Path(f).name for f in cfg.files] == ["d.yml", "c.py", "b.json", "a.yaml"]


def test_delete_replaces_base_dict_instead_of_merging(write):
    write("base.py", "optimizer = dict(type='SGD', lr=0.1, momentum=0.9)\n")
    path = write("c.py", "_base_ = 'base.py'\noptimizer = dict(_delete_=True, type='Adam', lr=1e-3)\n")
    assert Config.fromfile(path).optimizer.to_dict() == {"type": "Adam", "lr": 1e-3}


def test_delete_marker_is_removed_when_there_is_no_base_value(write):
    path = write("c.py", "opt = dict(_delete_=True, lr=1, sub=dict(_delete_=True, a=1))\n")
    assert Config.fromfile(path).opt.to_dict() == {"lr": 1, "sub": {"a": 1}}


def test_dict_over_non_dict_fails_naming_key_and_suggesting_delete(write):
    write("base.py", "model = dict(norm='BN')\n")
    path = write("c.py", "_base_ = 'base.py'\nmodel = dict(norm=dict(type='GN'))\n")
    with pytest.raises(ConfigError, match=r"'model\.norm'.*str.*_delete_=True"):
        Config.fromfile(path)


def test_two_bases_with_equal_values_for_a_key_are_allowed(write):
    write("a.py", "x = dict(k=1)\na = 1\n")
    write("b.py", "x = dict(k=1)\nb = 2\n")
    path = write("c.py", "_base_ = ['a.py', 'b.py']\n")
    assert Config.fromfile(path).to_dict() == {"x": {"k": 1}, "a": 1, "b": 2}


def test_two_bases_with_different_values_fail_naming_both_files(write):
    write("a.py", "x = 1\n")
    write("b.py", "x = 2\n")
    path = write("c.py", "_base_ = ['a.py', 'b.py']\n")
    with pytest.raises(ConfigError, match=r"'x'.*a\.py.*b\.py"):
        Config.fromfile(path)


def test_missing_base_file_names_the_entry_and_the_path(write):
    path = write("c.py", "_base_ = 'nope.py'\n")
    with pytest.raises(ConfigError, match=r"'nope\.py' not found"):
        Config.fromfile(path)


def test_circular_base_inheritance_is_reported(write):
    write("a.py", "_base_ = 'b.py'\n")
    write("b.py", "_base_ = 'a.py'\n")
    with pytest.raises(ConfigError, match="Circular _base_"):
        Config.fromfile(write("c.py", "_base_ = 'a.py'\n"))


def test_predefined_variables_are_substituted(write, tmp_path):
    path = write("sub/exp_1.py", """
        work_dir = './work_dirs/{{ fileBasenameNoExtension }}'
        info = ['{{fileDirname}}', '{{ fileBasename }}', '{{ fileExtname }}']
    """)
    cfg = Config.fromfile(path)
    assert cfg.work_dir == "./work_dirs/exp_1"
    assert cfg.info == [str(tmp_path / "sub"), "exp_1.py", ".py"]


def test_predefined_variables_can_be_disabled(write):
    path = write("c.py", "x = '{{ fileBasename }}'\n")
    assert Config.fromfile(path, use_predefined_variables=False).x == "{{ fileBasename }}"


def test_base_reference_in_python_yaml_and_nested_containers(write):
    write("base.py", "model = dict(depth=50, chans=[1, 2])\nlr = 0.1\n")
    py = write("c.py", """
        _base_ = 'base.py'
        head = dict(depth={{_base_.model.depth}}, items=['{{ _base_.lr }}', {'c': {{_base_.model.chans}}}])
        name = 'lr={{_base_.lr}}'
    """)
    cfg = Config.fromfile(py)
    assert cfg.head.to_dict() == {"depth": 50, "items": [0.1, {"c": [1, 2]}]}
    assert cfg.name == "lr=0.1"
    yml = write("c.yaml", "_base_: base.py\nneck: {{_base_.model}}\n")
    assert Config.fromfile(yml).neck.to_dict() == {"depth": 50, "chans": [1, 2]}


def test_base_reference_to_missing_key_fails_naming_it(write):
    write("base.py", "model = dict(depth=50)\n")
    path = write("c.py", "_base_ = 'base.py'\nx = {{_base_.model.width}}\n")
    with pytest.raises(ConfigError, match=r"_base_\.model\.width.*'width' is missing"):
        Config.fromfile(path)


def test_base_object_is_usable_as_a_value_in_python_configs(write):
    write("base.py", "model = dict(depth=50, neck=dict(c=1))\n")
    path = write("c.py", """
        _base_ = 'base.py'
        depth2 = _base_.model.depth * 2
        model = dict(neck=dict(c=_base_.model.neck.c + 1))
    """)
    cfg = Config.fromfile(path)
    assert cfg.depth2 == 100
    assert cfg.model.to_dict() == {"depth": 50, "neck": {"c": 2}}


def test_environment_variables_with_and_without_default(write, monkeypatch):
    monkeypatch.setenv("KILN_TEST_ROOT", "/data/x")
    monkeypatch.delenv("KILN_TEST_UNSET", raising=False)
    path = write("c.py", "root = '{{$KILN_TEST_ROOT}}'\nlr = {{$KILN_TEST_UNSET:0.5}}\n")
    cfg = Config.fromfile(path)
    assert cfg.root == "/data/x" and cfg.lr == 0.5


def test_missing_environment_variable_without_default_fails_naming_it(write, monkeypatch):
    monkeypatch.delenv("KILN_TEST_UNSET", raising=False)
    path = write("c.yaml", "root: '{{$KILN_TEST_UNSET}}'\n")
    with pytest.raises(ConfigError, match="KILN_TEST_UNSET.*not set"):
        Config.fromfile(path)


@pytest.mark.parametrize("key", ["filename", "text", "pretty_text"])
def test_reserved_keys_fail_clearly(write, key):
    with pytest.raises(ConfigError, match=f"'{key}' is a reserved name"):
        Config.fromfile(write("c.py", f"{key} = 1\n"))
    with pytest.raises(ConfigError, match="reserved"):
        Config({key: 1})


def test_python_syntax_error_reports_file_and_line(write):
    path = write("bad.py", "a = 1\nb = dict(x=1,,)\n")
    with pytest.raises(ConfigError, match=r"bad\.py, line 2: invalid Python syntax"):
        Config.fromfile(path)


def test_yaml_and_json_errors_report_file_and_line(write):
    with pytest.raises(ConfigError, match=r"bad\.yaml, line 3: invalid YAML"):
        Config.fromfile(write("bad.yaml", "a: 1\nb: [1, 2\nc: 3\n"))
    with pytest.raises(ConfigError, match=r"bad\.json, line 2: invalid JSON"):
        Config.fromfile(write("bad.json", '{"a": 1,\n "b": }'))


def test_yaml_uses_safe_loading(write):
    path = write("evil.yaml", "x: !!python/object/apply:os.system ['echo hi']\n")
    with pytest.raises(ConfigError, match="invalid YAML"):
        Config.fromfile(path)


def test_unsupported_extension_and_missing_file(tmp_path):
    with pytest.raises(ConfigError, match=r"unsupported extension '\.toml'.*\.py"):
        Config.fromfile(tmp_path / "c.toml")
    with pytest.raises(ConfigError, match="does not exist"):
        Config.fromfile(tmp_path / "missing.py")


def test_fromstring_in_each_format():
    assert Config.fromstring("a = dict(b=1)\n", ".py").a.b == 1
    assert Config.fromstring('{"a": {"b": 1}}', "json").a.b == 1
    assert Config.fromstring("a: {b: 1}\n", ".yaml").a.b == 1


def test_seed_config_loads_as_written():
    cfg = Config.fromfile(FIXTURE)
    assert cfg.model.type == "RetinaNet"
    assert cfg.data.train.ann_file == "data/coco/annotations/instances_train2017.json"
    assert cfg.data.test.pipeline[1].transforms[2].mean == [123.675, 116.28, 103.53]
    assert cfg.workflow == [("train", 1)]


def test_copy_deepcopy_and_pickle_keep_everything(write):
    cfg = Config.fromfile(write("c.py", "a = dict(b=[1, (2, 3)])\n"))
    for clone in (copy.copy(cfg), copy.deepcopy(cfg), pickle.loads(pickle.dumps(cfg))):
        assert clone.to_dict() == cfg.to_dict()
        assert clone.filename == cfg.filename and clone.text == cfg.text
        assert isinstance(clone.a, ConfigDict)
    deep = copy.deepcopy(cfg)
    deep.a.b.append(4)
    assert cfg.a.b == [1, (2, 3)]


def test_package_prefixed_paths_in_fromfile_and_base(write, monkeypatch):
    write("kiln_cfgpkg_t/__init__.py", "")
    write("kiln_cfgpkg_t/configs/base/model.yaml", "model: {depth: 18}\n")
    monkeypatch.syspath_prepend(str(write("x.txt", "").parent))
    child = write("c.py", "_base_ = 'kiln_cfgpkg_t::base/model.yaml'\nlr = 0.1\n")
    assert Config.fromfile(child).model.depth == 18
    assert Config.fromfile("kiln_cfgpkg_t::base/model").model.depth == 18  # suffix optional
    with pytest.raises(ConfigError, match="'kiln_cfgpkg_t::nope.py' not found in package"):
        Config.fromfile("kiln_cfgpkg_t::nope.py")


def test_kiln_prefix_resolves_shipped_model_zoo_configs(write):
    from kiln.model_zoo import list_configs

    name = next(n for n in list_configs() if n.endswith(".py"))  # (the zoo also ships Detectron2 yaml)
    child = write("c.py", f"_base_ = 'kiln::{name}'\nextra = 1\n")
    cfg = Config.fromfile(child)
    assert cfg.extra == 1 and cfg.model.to_dict() == Config.fromfile(f"kiln::{name}").model.to_dict()
    with pytest.raises(ConfigError, match="No shipped config 'kiln::nope/none.py'"):
        Config.fromfile(write("d.py", "_base_ = 'kiln::nope/none.py'\n"))


def test_detectron2_style_BASE_key_works_in_yaml_configs(write):
    write("base.yaml", "a: 1\nb: {c: 2}\n")
    assert Config.fromfile(write("c.yaml", "_BASE_: base.yaml\nb: {d: 3}\n")).to_dict() == {
        "a": 1, "b": {"c": 2, "d": 3}}


def test_python_runtime_error_reports_file_and_line(write):
    path = write("boom.py", "a = 1\nb = undefined_name + 1\n")
    with pytest.raises(ConfigError, match=r"boom\.py, line 2: the config raised NameError.*undefined_name"):
        Config.fromfile(path)


def test_config_is_a_mapping_and_reserved_names_cannot_be_set():
    from collections.abc import Mapping

    cfg = Config(dict(a=1))
    assert isinstance(cfg, Mapping) and dict(**cfg) == {"a": 1}
    with pytest.raises(ConfigError, match="read-only"):
        cfg.filename = "x.py"
    with pytest.raises(ConfigError, match="reserved"):
        cfg["text"] = "x"
