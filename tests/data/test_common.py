"""DatasetFromList and MapDataset."""

import logging

import numpy as np
import pytest

from kiln.data import DatasetFromList, MapDataset


def test_dataset_from_list_stores_items_in_one_buffer():
    items = [{"file_name": f"{i}.jpg", "annotations": [{"bbox": [i, 0, 1, 1]}]} for i in range(50)]
    ds = DatasetFromList(items)
    assert len(ds) == 50 and ds[7] == items[7] and ds[-1] == items[-1]
    assert isinstance(ds._buffer, np.ndarray) and ds._buffer.dtype == np.uint8 and ds._lst == []
    ds[3]["file_name"] = "changed"
    assert ds[3]["file_name"] == "3.jpg"  # every access decodes a fresh copy
    with pytest.raises(IndexError, match="out of range"):
        ds[50]


def test_dataset_from_list_without_serialization_copies_on_request():
    items = [{"a": [1]}]
    assert DatasetFromList(items, copy=False, serialize=False)[0] is items[0]
    copied = DatasetFromList(items, copy=True, serialize=False)[0]
    assert copied == items[0] and copied is not items[0]


def test_map_dataset_retries_another_index_when_mapper_rejects(caplog):
    ds = MapDataset(DatasetFromList(list(range(10))), lambda x: None if x < 8 else x * 10)
    with caplog.at_level(logging.WARNING):
        out = ds[0]
    assert out in (80, 90)
    assert ds[0] == out  # the replacement is deterministic


def test_map_dataset_gives_up_when_nothing_maps():
    ds = MapDataset(DatasetFromList([1, 2, 3]), lambda x: None)
    with pytest.raises(RuntimeError, match="returned None for every sample"):
        ds[0]
