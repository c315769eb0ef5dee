"""Data pickles (weights, proposals, annotations) load; pickles that would construct other objects do not."""

import os
import pickle
from collections import OrderedDict

import numpy as np
import pytest

from kiln import fileio
from kiln.fileio.safe_pickle import UnsafePickleError, safe_load, safe_loads


class _RunsCode:
    """Unpickling this would call os.system (what a crafted .pkl does)."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _weights():
    return {"model": OrderedDict(conv1_w=np.arange(24, dtype=np.float32).reshape(2, 3, 2, 2),
                                 conv1_b=np.zeros(2, dtype=np.float64), ids=np.array([1, 2], np.int64)),
            "__author__": "Detectron", "matching_heuristics": True, "scale": np.float32(0.5),
            "boxes": [np.ones((0, 4), np.float32)], "mix": (1, 2.5, None, b"x", {3, 4}, complex(1, 2))}


@pytest.mark.parametrize("protocol", [2, pickle.HIGHEST_PROTOCOL])
def test_numpy_arrays_scalars_and_containers_round_trip(tmp_path, protocol):
    data = _weights()
    path = tmp_path / "w.pkl"
    path.write_bytes(pickle.dumps(data, protocol=protocol))
    for got in (safe_load(path), safe_loads(path.read_bytes()), fileio.load(str(path))):
        assert got.keys() == data.keys()
        for k, v in data["model"].items():
            assert got["model"][k].dtype == v.dtype and np.array_equal(got["model"][k], v)
        assert isinstance(got["model"], OrderedDict)
        assert got["scale"] == np.float32(0.5) and got["mix"] == data["mix"]
        assert got["boxes"][0].shape == (0, 4)


def test_a_pickle_that_would_run_code_is_refused_naming_file_and_global(tmp_path):
    marker = tmp_path / "ran"
    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps({"model": _RunsCode(marker)}))
    with pytest.raises(UnsafePickleError) as e:
        safe_load(path)
    assert str(path) in str(e.value) and ("posix.system" in str(e.value) or "os.system" in str(e.value))
    with pytest.raises(UnsafePickleError):
        fileio.load(str(path))
    assert not marker.exists()


def test_a_pickled_annotation_file_cannot_run_code(tmp_path):
    from kiln.data.datasets.custom import CustomDataset

    marker = tmp_path / "ran"
    ann = tmp_path / "ann.pkl"
    ann.write_bytes(pickle.dumps([{"filename": "a.jpg", "width": 4, "height": 4, "ann": _RunsCode(marker)}]))
    with pytest.raises(UnsafePickleError, match="ann.pkl"):
        CustomDataset(ann_file=str(ann), pipeline=[], img_prefix=str(tmp_path))
    assert not marker.exists()
