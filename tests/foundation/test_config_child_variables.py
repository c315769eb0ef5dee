"""A child config that re-assigns a base's variable (``data_root``) while inherited values still hold the
base's text gets a warning naming those values; values the child sets itself, and the command-line
override (which re-derives), give none."""

from __future__ import annotations

import warnings

import pytest

from kiln.config import Config
from kiln.config.loading import StaleInheritedValueWarning

BASE = """data_root = 'data/coco/'
dataset_type = 'CocoDataset'
data = dict(train=dict(type=dataset_type, ann_file=data_root + 'ann/train.json',
                       img_prefix=data_root + 'train/'),
            val=dict(type=dataset_type, ann_file=data_root + 'ann/val.json', img_prefix=data_root + 'val/'))
"""


def _load(tmp_path, child: str, **kw):
    (tmp_path / "base.py").write_text(BASE)
    (tmp_path / "child.py").write_text("_base_ = 'base.py'\n" + child)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        cfg = Config.fromfile(str(tmp_path / "child.py"), **kw)
    return cfg, [w for w in caught if issubclass(w.category, StaleInheritedValueWarning)]


def test_a_child_data_root_that_leaves_inherited_paths_behind_is_named(tmp_path):
    cfg, caught = _load(tmp_path, "data_root = '/data/mine/'\n")
    assert cfg.data.train.ann_file == "data/coco/ann/train.json"  # MMEngine's meaning, unchanged
    assert len(caught) == 1
    msg = str(caught[0].message)
    assert "data_root='/data/mine/'" in msg and "data_root='data/coco/'" in msg
    assert "data.train.ann_file, data.train.img_prefix, data.val.ann_file and 1 more" in msg
    assert "--cfg-options data_root=/data/mine/" in msg


def test_the_command_line_override_re_derives_and_does_not_warn(tmp_path):
    cfg, caught = _load(tmp_path, "data_root = '/data/mine/'\n", cfg_options=["data_root=/data/x/"])
    assert cfg.data.val.img_prefix == "/data/x/val/" and not caught


@pytest.mark.parametrize("child", [
    "data_root = '/data/mine/'\ndata = dict(train=dict(ann_file=data_root + 'a.json', img_prefix=data_root),"
    " val=dict(ann_file=data_root + 'b.json', img_prefix=data_root))\n",
    "data_root = 'data/coco/'\n",  # same value: nothing is stale
    "other = 'data/coco/ann'\n",   # a new variable the bases never had
])
def test_no_warning_when_nothing_inherited_is_stale(tmp_path, child):
    _, caught = _load(tmp_path, child)
    assert not caught


def test_a_stale_dataset_type_is_named_too(tmp_path):
    _, caught = _load(tmp_path, "dataset_type = 'VOCDataset'\n")
    assert len(caught) == 1 and "data.train.type, data.val.type" in str(caught[0].message)
