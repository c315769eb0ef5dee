"""kiln.fileio: load/dump handlers, register_handler, paths/URIs through fsspec, atomic writes."""

from __future__ import annotations

import io
import json
import os
import uuid

import numpy as np
import pytest

from kiln import fileio
from kiln.fileio import BaseFileHandler, register_handler


@pytest.fixture
def mem_uri():
    """A unique memory:// prefix, removed afterwards."""
    import fsspec

    prefix = f"memory://kiln-test-{uuid.uuid4().hex}"
    yield prefix
    fs = fsspec.filesystem("memory")
    path = prefix[len("memory://"):]
    if fs.exists(path):
        fs.rm(path, recursive=True)


@pytest.mark.parametrize("suffix", ["json", "yaml", "yml", "pickle", "pkl"])
def test_dump_and_load_round_trip_by_suffix(tmp_path, suffix):
    data = {"a": [1, 2.5, "x"], "b": {"c": None, "d": True}}
    path = tmp_path / f"out.{suffix}"
    fileio.dump(data, path)
    assert fileio.load(path) == data
    assert fileio.load(str(path)) == data


def test_dump_without_file_returns_string_or_bytes():
    assert json.loads(fileio.dump({"a": 1}, file_format="json")) == {"a": 1}
    assert fileio.dump({"a": 1}, file_format="yaml") == "a: 1\n"
    assert isinstance(fileio.dump({"a": 1}, file_format="pkl"), bytes)


def test_file_objects_with_explicit_format(tmp_path):
    buf = io.StringIO()
    fileio.dump({"a": 1}, buf, file_format="yaml")
    buf.seek(0)
    assert fileio.load(buf, file_format="yaml") == {"a": 1}
    with open(tmp_path / "x.json", "w") as f:  # format from the file object's name
        fileio.dump([1, 2], f)
    with open(tmp_path / "x.json") as f:
        assert fileio.load(f) == [1, 2]


def test_json_handles_numpy_types_and_sets():
    text = fileio.dump({"i": np.int64(3), "f": np.float32(0.5), "arr": np.arange(3), "s": {3, 1}},
                       file_format="json")
    assert json.loads(text) == {"i": 3, "f": 0.5, "arr": [0, 1, 2], "s": [1, 3]}


def test_json_rejects_unknown_objects_naming_the_type():
    with pytest.raises(TypeError, match="object is not JSON serializable"):
        fileio.dump({"x": object()}, file_format="json")


def test_unknown_format_lists_known_ones(tmp_path):
    with pytest.raises(ValueError, match=r"format 'toml'.*json.*pkl.*yaml.*register_handler"):
        fileio.load(tmp_path / "c.toml")
    with pytest.raises(ValueError, match="pass file_format="):
        fileio.dump({"a": 1})


def test_register_handler_adds_a_new_format(tmp_path):
    @register_handler(["npy_kiln_test"])
    class NpyHandler(BaseFileHandler):
        str_like = False

        def load_from_fileobj(self, file, **kwargs):
            return np.load(file)

        def dump_to_fileobj(self, obj, file, **kwargs):
            np.save(file, obj)

        def dump_to_str(self, obj, **kwargs):
            return obj.tobytes()

    try:
        arr = np.arange(6).reshape(2, 3)
        path = tmp_path / "a.npy_kiln_test"
        fileio.dump(arr, path)
        np.testing.assert_array_equal(fileio.load(path), arr)
        assert fileio.dump(arr, file_format="npy_kiln_test") == arr.tobytes()
    finally:
        del fileio.file_handlers["npy_kiln_test"]


def test_register_handler_requires_a_handler_class():
    with pytest.raises(TypeError, match="BaseFileHandler subclass"):
        register_handler("x")(dict)


def test_memory_uri_read_write_exists_isfile_list(mem_uri):
    fileio.dump({"a": 1}, f"{mem_uri}/sub/a.json")
    fileio.put_text("hello", f"{mem_uri}/b.txt")
    assert fileio.load(f"{mem_uri}/sub/a.json") == {"a": 1}
    assert fileio.exists(f"{mem_uri}/b.txt") and fileio.isfile(f"{mem_uri}/b.txt")
    assert not fileio.exists(f"{mem_uri}/nope.txt")
    assert fileio.isdir(f"{mem_uri}/sub")
    assert fileio.list_dir(mem_uri) == ["b.txt"]
    assert fileio.list_dir(mem_uri, recursive=True) == ["b.txt", "sub/a.json"]
    assert fileio.list(mem_uri, suffix=".json", recursive=True) == ["sub/a.json"]
    with fileio.open(f"{mem_uri}/b.txt") as f:
        assert f.read() == "hello"


def test_get_local_path_downloads_remote_files_and_cleans_up(mem_uri):
    fileio.put_bytes(b"\x00\x01", f"{mem_uri}/w.bin")
    with fileio.get_local_path(f"{mem_uri}/w.bin") as local:
        assert os.path.isfile(local)
        with open(local, "rb") as f:
            assert f.read() == b"\x00\x01"
    assert not os.path.exists(local)


def test_get_local_path_of_a_local_file_is_the_file(tmp_path):
    path = tmp_path / "a.txt"
    path.write_text("x")
    with fileio.get_local_path(path) as local:
        assert local == str(path)
    assert path.exists()


def test_missing_files_raise_file_not_found_naming_them(tmp_path, mem_uri):
    with pytest.raises(FileNotFoundError, match="missing.json"):
        fileio.load(tmp_path / "missing.json")
    with pytest.raises(FileNotFoundError, match="gone.json"):
        fileio.load(f"{mem_uri}/gone.json")
    with pytest.raises(FileNotFoundError, match="gone.bin"):
        with fileio.get_local_path(f"{mem_uri}/gone.bin"):
            pass


def test_unknown_protocol_says_which_driver_is_missing():
    with pytest.raises(ImportError, match="kilnnoproto://"):
        fileio.exists("kilnnoproto://bucket/x.json")


def test_local_paths_and_file_uris_list(tmp_path):
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "x.py").write_text("")
    (tmp_path / "y.json").write_text("{}")
    assert fileio.list_dir(tmp_path) == ["y.json"]
    assert fileio.list_dir(f"file://{tmp_path}", recursive=True) == ["d/x.py", "y.json"]
    assert fileio.list_dir(tmp_path, list_dir=True) == ["d", "y.json"]
    with pytest.raises(FileNotFoundError, match="Not a directory"):
        fileio.list_dir(tmp_path / "y.json")


def test_atomic_write_leaves_old_file_intact_on_error(tmp_path):
    path = tmp_path / "state.json"
    fileio.dump({"v": 1}, path)
    with pytest.raises(TypeError):
        fileio.dump({"v": object()}, path)
    assert fileio.load(path) == {"v": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state.json"]


def test_atomic_write_creates_parent_dirs_and_keeps_permissions(tmp_path):
    path = tmp_path / "a" / "b" / "c.txt"
    fileio.put_text("one", path)
    os.chmod(path, 0o600)
    fileio.put_text("two", path)
    assert path.read_text() == "two"
    assert (os.stat(path).st_mode & 0o777) == 0o600
