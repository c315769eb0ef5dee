"""Property: any config of plain values survives dump → fromfile exactly (.py and .yaml)."""

from __future__ import annotations

import keyword
import math

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kiln.config import Config

_RESERVED = {"filename", "text", "pretty_text"}

idents = st.from_regex(r"[a-z_][a-z0-9_]{0,8}", fullmatch=True).filter(
    lambda s: not keyword.iskeyword(s) and not s.startswith("__") and s not in _RESERVED
    and s not in ("_base_", "_delete_", "_BASE_"))
scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-10**12, 10**12),
    st.floats(allow_nan=False, width=64).filter(math.isfinite),
    st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="{}"), max_size=12),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.lists(inner, max_size=4).map(tuple),
        st.dictionaries(idents, inner, max_size=4),
        st.dictionaries(st.text(min_size=1, max_size=6).filter(lambda k: k != "_delete_"),
                        inner, max_size=3),
    ),
    max_leaves=12,
)
configs = st.dictionaries(idents, values, max_size=5)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=configs)
def test_py_dump_round_trips_exactly(tmp_path, data):
    cfg = Config(data)
    path = tmp_path / "c.py"
    cfg.dump(path)
    again = Config.fromfile(path, use_predefined_variables=False, use_environment_variables=False)
    assert again.to_dict() == cfg.to_dict()
    assert repr(again.to_dict()) == repr(cfg.to_dict())  # also tuple vs list, int vs float


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=configs)
def test_yaml_dump_round_trips_exactly(tmp_path, data):
    cfg = Config(data)
    path = tmp_path / "c.yaml"
    cfg.dump(path)
    again = Config.fromfile(path, use_predefined_variables=False, use_environment_variables=False)
    assert repr(again.to_dict()) == repr(cfg.to_dict())


def test_keys_that_python_normalizes_as_identifiers_round_trip(tmp_path):
    # `º = 1` or `dict(ﬁ=2)` would bind `o` / `fi` (identifiers are NFKC-normalized): written quoted.
    cfg = Config({"º": 1, "a": {"ﬁ": 2, "plain": 3}})
    path = tmp_path / "c.py"
    cfg.dump(path)
    again = Config.fromfile(path, use_predefined_variables=False, use_environment_variables=False)
    assert again.to_dict() == {"º": 1, "a": {"ﬁ": 2, "plain": 3}}
