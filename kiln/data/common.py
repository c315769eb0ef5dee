"""Dataset wrappers: ``DatasetFromList`` (one serialized buffer) and ``MapDataset`` (mapper + retry)."""

from __future__ import annotations

import copy
import logging
import pickle
import random
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch.utils.data as data

logger = logging.getLogger(__name__)

__all__ = ["DatasetFromList", "MapDataset"]


class DatasetFromList(data.Dataset):
    """A map-style dataset over a Python list (e.g. dataset dicts).

    With ``serialize=True`` (the default) every item is pickled into one numpy byte buffer plus an
    offsets array. Forked data-loader workers then share two numpy arrays instead of millions of
    Python objects whose reference counts would be written on every access (copy-on-read makes
    each worker's memory grow to a full copy of the list).

    Args:
        lst: the items.
        copy: when not serialized, return a deep copy of the item so a mapper may modify it.
        serialize: store items pickled in one buffer.
    """

    def __init__(self, lst: Sequence[Any], copy: bool = True, serialize: bool = True) -> None:
        self._copy = copy
        self._serialize = serialize
        if serialize:
            blobs = [np.frombuffer(pickle.dumps(x, protocol=-1), dtype=np.uint8) for x in lst]
            self._addr = np.cumsum(np.asarray([len(b) for b in blobs], dtype=np.int64))
            self._buffer = np.concatenate(blobs) if blobs else np.zeros(0, dtype=np.uint8)
            self._lst: list[Any] = []
        else:
            self._lst = list(lst)

    def __len__(self) -> int:
        if self._serialize:
            return len(self._addr)
        return len(self._lst)

    def __getitem__(self, idx: int) -> Any:
        if self._serialize:
            n = len(self._addr)
            if not -n <= idx < n:
                raise IndexError(f"DatasetFromList index {idx} out of range (length {n}).")
            idx = idx % n
            start = 0 if idx == 0 else int(self._addr[idx - 1])
            end = int(self._addr[idx])
            return pickle.loads(memoryview(self._buffer[start:end]))
        if self._copy:
            return copy.deepcopy(self._lst[idx])
        return self._lst[idx]


class MapDataset(data.Dataset):
    """Apply ``map_func`` to every item of ``dataset``; when it returns ``None``, try another index.

    A mapper returns ``None`` to reject a sample (e.g. no box survived a crop). Retrying keeps the
    batch full. The replacement index is drawn from an RNG seeded by (index, attempt), so the
    result does not depend on which worker produced the sample. After 3 failures in a row a
    warning names the index, so a mapper that rejects everything is noticed.
    """

    def __init__(self, dataset: Any, map_func: Callable[[Any], Any]) -> None:
        self._dataset = dataset
        self._map_func = map_func
        self._fallback_candidates = set(range(len(dataset)))

    def __len__(self) -> int:
        return len(self._dataset)

    @property
    def dataset(self) -> Any:
        """The wrapped dataset."""
        return self._dataset

    def __getitem__(self, idx: int) -> Any:
        retry_count = 0
        cur_idx = int(idx)
        while True:
            out = self._map_func(self._dataset[cur_idx])
            if out is not None:
                self._fallback_candidates.add(cur_idx)
                return out
            retry_count += 1
            self._fallback_candidates.discard(cur_idx)
            if not self._fallback_candidates:
                raise RuntimeError(
                    f"MapDataset: the mapper {self._map_func!r} returned None for every sample it was "
                    f"given (last index {cur_idx}); check its filtering (e.g. min box size, crop)."
                )
            rng = random.Random(hash((int(idx), retry_count)))
            cur_idx = rng.choice(sorted(self._fallback_candidates))
            if retry_count >= 3:
                logger.warning("MapDataset: failed to map sample %d %d times in a row; trying %d.",
                               idx, retry_count, cur_idx)

