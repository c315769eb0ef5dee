"""DatasetCatalog / MetadataCatalog."""

import pytest

from kiln.data import DatasetCatalog, MetadataCatalog


@pytest.fixture
def name(request):
    n = f"test_catalog_{request.node.name}"
    yield n
    DatasetCatalog.pop(n, None)
    MetadataCatalog.pop(n, None)


def test_register_get_list_remove(name):
    DatasetCatalog.register(name, lambda: [{"file_name": "x.jpg"}])
    assert name in DatasetCatalog.list()
    assert DatasetCatalog.get(name) == [{"file_name": "x.jpg"}]
    DatasetCatalog.remove(name)
    assert name not in DatasetCatalog.list()


def test_unknown_name_lists_registered_and_suggests(name):
    DatasetCatalog.register(name, lambda: [])
    with pytest.raises(KeyError) as e:
        DatasetCatalog.get(name + "x")
    msg = str(e.value)
    assert f"Did you mean: '{name}'" in msg and "shapes_train" in msg and "register" in msg


def test_double_registration_is_an_error(name):
    DatasetCatalog.register(name, lambda: [])
    with pytest.raises(KeyError, match="already registered"):
        DatasetCatalog.register(name, lambda: [])


def test_loader_must_return_a_list(name):
    DatasetCatalog.register(name, lambda: {"a": 1})
    with pytest.raises(TypeError, match="must return a list"):
        DatasetCatalog.get(name)


def test_metadata_is_set_once_and_names_missing_keys(name):
    meta = MetadataCatalog.get(name).set(thing_classes=["a", "b"])
    assert MetadataCatalog.get(name).thing_classes == ["a", "b"]
    meta.thing_classes = ["a", "b"]  # same value: fine
    with pytest.raises(AttributeError, match="refusing to change"):
        meta.thing_classes = ["c"]
    with pytest.raises(AttributeError, match="has no 'evaluator_type'"):
        _ = meta.evaluator_type
    assert meta.get("evaluator_type", "none") == "none"
