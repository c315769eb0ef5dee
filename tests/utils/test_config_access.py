"""The one config-access helper: dicts, ConfigDicts, CfgNode-style objects and missing sections."""

from __future__ import annotations

import pytest

from kiln.config import Config, get_cfg
from kiln.utils import cfg_get, cfg_lookup


def test_cfg_get_walks_dotted_keys_through_dicts_configs_and_attribute_nodes():
    d2 = get_cfg()
    d2.SOLVER.BASE_LR = 0.02
    assert cfg_get(d2, "SOLVER.BASE_LR") == 0.02
    assert cfg_get(Config(dict(model=dict(backbone=dict(depth=18)))), "model.backbone.depth") == 18
    assert cfg_get({"a": {"b": 1}}, "a.b") == 1


def test_cfg_get_returns_the_default_for_missing_keys_none_values_and_missing_sections():
    assert cfg_get({"a": None}, "a", 3) == 3
    assert cfg_get({"a": {}}, "a.b.c", "d") == "d"
    assert cfg_get(None, "x", 0) == 0
    assert cfg_get(get_cfg(), "SOLVER.NO_SUCH_KEY", 5) == 5


def test_cfg_lookup_is_the_strict_form_and_names_the_missing_key():
    assert cfg_lookup({"a": None}, "a") is None
    with pytest.raises(KeyError, match="no 'SOLVER.NOPE'.*--opts SOLVER.NOPE"):
        cfg_lookup(get_cfg(), "SOLVER.NOPE")
