"""kiln.registry: registration, lookup, building, hierarchy, lazy locations, errors."""

from __future__ import annotations

import copy
import sys

import pytest

from kiln import registry as reg_mod
from kiln.registry import Registry, build_from_cfg, build_model_from_cfg


@pytest.fixture
def things():
    return Registry("thing", scope="kiln_test")


def test_register_module_as_decorator_with_and_without_parentheses(things):
    @things.register_module()
    class A:
        pass

    @things.register_module
    class B:
        pass

    assert things.get("A") is A and things.get("B") is B


def test_register_module_with_name_alias_list_and_plain_call(things):
    class C:
        pass

    things.register_module(name=["C1", "C2"], module=C)
    things.register_module("C3")(C)
    assert things.get("C1") is things.get("C2") is things.get("C3") is C


def test_functions_can_be_registered_and_built(things):
    @things.register_module()
    def make_pair(a, b=2):
        return (a, b)

    assert things.build(dict(type="make_pair", a=1)) == (1, 2)


def test_detectron2_style_register_alias(things):
    @things.register()
    class D:
        pass

    def f():
        return 1

    assert things.register(f) is f
    assert things.get("D") is D and things.get("f") is f


def test_duplicate_name_error_names_both_definitions(things):
    @things.register_module(name="Dup")
    class First:
        pass

    class Second:
        pass

    with pytest.raises(KeyError, match=r"'Dup' is already registered.*First.*Second.*force=True"):
        things.register_module(name="Dup", module=Second)
    things.register_module(name="Dup", module=Second, force=True)
    assert things.get("Dup") is Second


def test_non_callable_and_bad_name_are_rejected(things):
    with pytest.raises(TypeError, match="classes or functions"):
        things.register_module(module=3)
    with pytest.raises(TypeError, match="name must be a str"):
        things.register_module(name=[1], module=dict)


def test_contains_len_iteration_and_repr(things):
    @things.register_module()
    class Zeta:
        pass

    @things.register_module()
    class Alpha:
        pass

    assert "Zeta" in things and "Nope" not in things and 5 not in things
    assert len(things) == 2 and list(things) == ["Alpha", "Zeta"]
    text = repr(things)
    assert "Registry(name='thing'" in text
    assert f"{__name__}." in text and "Alpha" in text and "Zeta" in text


def test_build_by_name_scope_name_and_class(things):
    @things.register_module()
    class E:
        def __init__(self, x=0):
            self.x = x

    assert things.build(dict(type="E", x=1)).x == 1
    assert things.build(dict(type="kiln_test.E", x=2)).x == 2
    assert things.build(dict(type=E, x=3)).x == 3


def test_default_args_fill_only_missing_keys(things):
    @things.register_module()
    class F:
        def __init__(self, a, b):
            self.a, self.b = a, b

    obj = things.build(dict(type="F", a=1), default_args=dict(a=9, b=2))
    assert (obj.a, obj.b) == (1, 2)
    assert things.build(dict(a=1, b=3), default_args=dict(type="F")).b == 3


def test_list_of_cfgs_builds_list_and_cfg_is_never_mutated(things):
    @things.register_module()
    class G:
        def __init__(self, items):
            items.append("mutated")
            self.items = items

    cfgs = [dict(type="G", items=[1]), dict(type="G", items=[2])]
    before = copy.deepcopy(cfgs)
    objs = things.build(cfgs)
    assert [o.items for o in objs] == [[1, "mutated"], [2, "mutated"]]
    assert cfgs == before


def test_model_registry_list_builds_sequential():
    import torch.nn as nn

    models = Registry("model_t", build_func=build_model_from_cfg, scope="kiln_test_models")
    models.register_module(module=nn.ReLU)
    models.register_module(module=nn.Identity)
    seq = models.build([dict(type="ReLU"), dict(type="Identity")])
    assert isinstance(seq, nn.Sequential) and len(seq) == 2


def test_child_registry_walks_to_parent_and_parent_finds_child_by_scope():
    parent = Registry("p", scope="kiln_test_parent")
    child = Registry("c", parent=parent, scope="kiln_test_child")

    @parent.register_module()
    class InParent:
        pass

    @child.register_module()
    class InChild:
        pass

    assert child.get("InParent") is InParent
    assert parent.get("InChild") is None
    assert parent.get("kiln_test_child.InChild") is InChild
    assert child.build(dict(type="InParent")).__class__ is InParent
    assert parent.children == {"kiln_test_child": child}


def test_scope_defaults_to_the_creating_package_and_duplicate_child_scope_fails():
    parent = Registry("p", scope="kiln_test_p2")
    assert Registry("x").scope == __name__.split(".")[0]  # the creating module's package
    Registry("c1", parent=parent, scope="dup")
    with pytest.raises(KeyError, match="already has a child with scope 'dup'"):
        Registry("c2", parent=parent, scope="dup")


def test_locations_are_imported_lazily_on_first_lookup(write, monkeypatch):
    pkg = write("kiln_lazy_loc_t/__init__.py", "from .mod import *\n")
    write("kiln_lazy_loc_t/mod.py", """
        from kiln.registry import Registry
        import kiln_lazy_reg_t as R

        @R.LAZY.register_module()
        class LazyThing:
            pass
    """)
    write("kiln_lazy_reg_t.py", """
        from kiln.registry import Registry
        LAZY = Registry('lazy', scope='kiln_lazy', locations=['kiln_lazy_loc_t'])
    """)
    monkeypatch.syspath_prepend(str(pkg.parent.parent))
    import kiln_lazy_reg_t

    assert "kiln_lazy_loc_t" not in sys.modules
    assert kiln_lazy_reg_t.LAZY.get("LazyThing").__name__ == "LazyThing"
    assert "kiln_lazy_loc_t" in sys.modules


def test_missing_location_warns_and_broken_location_raises(write, monkeypatch, caplog):
    write("kiln_broken_loc_t.py", "import kiln_this_does_not_exist_t\n")
    monkeypatch.syspath_prepend(str(write("x.txt", "").parent))
    missing = Registry("m", scope="kiln_t_missing", locations=["kiln_no_such_location_t"])
    with caplog.at_level("WARNING"):
        assert missing.get("X") is None
    assert "kiln_no_such_location_t" in caplog.text
    broken = Registry("b", scope="kiln_t_broken", locations=["kiln_broken_loc_t"])
    with pytest.raises(ModuleNotFoundError, match="kiln_this_does_not_exist_t"):
        broken.get("X")


def test_unknown_type_names_registry_close_matches_and_how_to_register(things):
    for name in ["ResNet", "ResNeXt", "RegNet", "VGG"]:
        things.register_module(name=name, module=type(name, (), {}))
    with pytest.raises(KeyError) as info:
        things.build(dict(type="ResNett"), cfg_path="model.backbone")
    msg = str(info.value)
    assert "'ResNett' is not registered in the 'thing' registry" in msg
    assert "model.backbone" in msg
    assert "'ResNet'" in msg and "'ResNeXt'" in msg
    assert "register_module" in msg and "custom_imports" in msg and "kiln.plugins" in msg


def test_constructor_type_error_names_class_keys_and_config_path(things):
    @things.register_module()
    class Head:
        def __init__(self, num_classes, channels=256):
            pass

    pattern = r"Head.*'model\.bbox_head'.*unexpected: chanels.*missing: num_classes"
    with pytest.raises(TypeError, match=pattern):
        things.build(dict(type="Head", chanels=3), cfg_path="model.bbox_head")


def test_build_errors_for_bad_cfgs(things):
    with pytest.raises(KeyError, match=r"no 'type' key.*Keys present: \['a'\]"):
        things.build(dict(a=1))
    with pytest.raises(TypeError, match="expected a dict"):
        build_from_cfg(3, things)
    with pytest.raises(TypeError, match="must be a str or a class"):
        things.build(dict(type=3))


def test_root_registries_and_aliases():
    assert reg_mod.BACKBONES is reg_mod.MODELS and reg_mod.DETECTORS is reg_mod.MODELS
    assert reg_mod.META_ARCH_REGISTRY is reg_mod.MODELS and reg_mod.LOSSES is reg_mod.MODELS
    names = {r.name for r in (reg_mod.DATASETS, reg_mod.TRANSFORMS, reg_mod.HOOKS, reg_mod.OPTIMIZERS,
                              reg_mod.PARAM_SCHEDULERS, reg_mod.EVALUATORS, reg_mod.WRITERS,
                              reg_mod.SAMPLERS, reg_mod.TASK_UTILS)}
    assert len(names) == 9


def test_import_modules_for_custom_imports(write, monkeypatch):
    monkeypatch.syspath_prepend(str(write("kiln_ci_mod_t.py", "X = 1\n").parent))
    assert reg_mod.import_modules(["kiln_ci_mod_t"])[0].X == 1
    with pytest.raises(ImportError, match="kiln_ci_missing_t.*allow_failed_imports=True"):
        reg_mod.import_modules("kiln_ci_missing_t")
    assert reg_mod.import_modules(["kiln_ci_missing_t"], allow_failed_imports=True) == [None]


def test_custom_build_func_with_and_without_cfg_path():
    seen = []

    def old_style(cfg, registry, default_args):
        seen.append(("old", cfg["type"]))
        return build_from_cfg(cfg, registry, default_args)

    def new_style(cfg, registry, default_args, cfg_path=""):
        seen.append(("new", cfg_path))
        return build_from_cfg(cfg, registry, default_args, cfg_path=cfg_path)

    old = Registry("old", build_func=old_style, scope="kiln_t_old")
    new = Registry("new", build_func=new_style, scope="kiln_t_new")
    old.register_module(module=dict)
    new.register_module(module=dict)
    assert old.build(dict(type="dict", a=1), cfg_path="x") == {"a": 1}
    assert new.build(dict(type="dict", a=2), cfg_path="model.x") == {"a": 2}
    assert seen == [("old", "dict"), ("new", "model.x")]


def test_type_error_inside_a_constructor_is_not_blamed_on_the_config(things):
    @things.register_module()
    class Broken:
        def __init__(self, n=1):
            len(n)  # a bug in the class, not in the config

    with pytest.raises(TypeError, match=r"^object of type 'int' has no len\(\)$"):
        things.build(dict(type="Broken", n=3))


def test_bad_key_forwarded_through_kwargs_still_names_the_config_path(things):
    class Base:
        def __init__(self, channels=1):
            self.channels = channels

    @things.register_module()
    class Child(Base):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)

    with pytest.raises(TypeError, match=r"Child.*'model\.neck'.*chanels"):
        things.build(dict(type="Child", chanels=3), cfg_path="model.neck")
