"""Dataset wrappers built from config: ``ConcatDataset``, ``RepeatDataset``, ``ClassBalancedDataset``,
and ``build_dataset`` (MM semantics: a list of configs concatenates; a list of ``ann_file`` too)."""

from __future__ import annotations

import bisect
import copy
import math
from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from torch.utils.data import Dataset

from kiln.registry import DATASETS

__all__ = ["ConcatDataset", "RepeatDataset", "ClassBalancedDataset", "build_dataset"]


def _maybe_build(ds: Any, cfg_path: str) -> Any:
    return build_dataset(ds, cfg_path=cfg_path) if isinstance(ds, Mapping) else ds


def _refuse_lazy(owner: str, lazy_init: bool) -> None:
    if lazy_init:
        raise ValueError(f"{owner} lazy_init=True: kiln builds datasets eagerly (the loader needs their "
                         "length right away); remove lazy_init.")


def _metainfo(ds: Any) -> dict[str, Any]:
    """A dataset's ``metainfo`` (MMDetection 3.x), or one made from its ``CLASSES``."""
    meta = getattr(ds, "metainfo", None)
    if isinstance(meta, Mapping):
        return dict(meta)
    classes = getattr(ds, "CLASSES", None)
    return {"classes": tuple(classes) if classes is not None else None}


@DATASETS.register_module()
class ConcatDataset(Dataset):
    """Several datasets one after another; ``CLASSES``/``metainfo`` from the first, ``flag`` concatenated.

    As in MMEngine, the datasets' ``metainfo`` must agree (so labels mean the same throughout),
    except for the keys in ``ignore_keys``. ``separate_eval`` (2.x) is kept for evaluators;
    ``lazy_init`` (3.x) must be ``False``.
    """

    def __init__(self, datasets: Sequence[Any], separate_eval: bool = True, *,
                 ignore_keys: str | Sequence[str] | None = None, lazy_init: bool = False) -> None:
        _refuse_lazy("ConcatDataset", lazy_init)
        if len(datasets) == 0:
            raise ValueError("ConcatDataset needs at least one dataset.")
        self.datasets = [_maybe_build(d, f"datasets.{i}") for i, d in enumerate(datasets)]
        self.separate_eval = separate_eval
        ignore = {ignore_keys} if isinstance(ignore_keys, str) else set(ignore_keys or ())
        first = _metainfo(self.datasets[0])
        for i, ds in enumerate(self.datasets[1:], start=1):
            other = _metainfo(ds)
            for key in sorted((set(first) | set(other)) - ignore):
                if first.get(key) != other.get(key):
                    raise ValueError(
                        f"ConcatDataset: datasets[{i}] has metainfo {key}={other.get(key)!r}, datasets[0] "
                        f"has {first.get(key)!r}; concatenated datasets must agree (labels would mean "
                        f"different things). Align them, or list the key in ignore_keys if it does not "
                        "matter.")
        self._metainfo = first
        self.CLASSES = getattr(self.datasets[0], "CLASSES", None)
        self.cumulative_sizes = np.cumsum([len(d) for d in self.datasets]).tolist()
        if all(hasattr(d, "flag") for d in self.datasets):
            self.flag = np.concatenate([d.flag for d in self.datasets])

    def __len__(self) -> int:
        return self.cumulative_sizes[-1]

    def _locate(self, idx: int) -> tuple[int, int]:
        if idx < 0:
            idx += len(self)
        if not 0 <= idx < len(self):
            raise IndexError(f"ConcatDataset index {idx} out of range (length {len(self)}).")
        d = bisect.bisect_right(self.cumulative_sizes, idx)
        return d, idx - (self.cumulative_sizes[d - 1] if d > 0 else 0)

    def __getitem__(self, idx: int) -> Any:
        d, i = self._locate(idx)
        return self.datasets[d][i]

    def get_cat_ids(self, idx: int) -> list[int]:
        """Labels of sample ``idx`` (delegated)."""
        d, i = self._locate(idx)
        return self.datasets[d].get_cat_ids(i)

    @property
    def metainfo(self) -> dict[str, Any]:
        """The first dataset's ``metainfo`` (``classes``, ``palette``...)."""
        return copy.deepcopy(self._metainfo)


@DATASETS.register_module()
class RepeatDataset(Dataset):
    """``dataset`` repeated ``times`` (short epochs cost less loader start-up)."""

    def __init__(self, dataset: Any, times: int, lazy_init: bool = False) -> None:
        _refuse_lazy("RepeatDataset", lazy_init)
        if not isinstance(times, int) or times < 1:
            raise ValueError(f"RepeatDataset: times must be a positive int, got {times!r}.")
        self.dataset = _maybe_build(dataset, "dataset")
        self.times = times
        self.CLASSES = getattr(self.dataset, "CLASSES", None)
        self._ori_len = len(self.dataset)
        if hasattr(self.dataset, "flag"):
            self.flag = np.tile(self.dataset.flag, times)

    def __len__(self) -> int:
        return self.times * self._ori_len

    def __getitem__(self, idx: int) -> Any:
        return self.dataset[idx % self._ori_len]

    def get_cat_ids(self, idx: int) -> list[int]:
        """Labels of sample ``idx`` (delegated)."""
        return self.dataset.get_cat_ids(idx % self._ori_len)

    @property
    def metainfo(self) -> dict[str, Any]:
        """The wrapped dataset's ``metainfo``."""
        return _metainfo(self.dataset)


@DATASETS.register_module()
class ClassBalancedDataset(Dataset):
    """Repeat images containing rare classes (LVIS repeat factor sampling, fixed per dataset).

    Each image is repeated ``ceil(r)`` times with ``r = max over its classes c of
    max(1, sqrt(oversample_thr / f(c)))`` and ``f(c)`` the fraction of images containing ``c``.
    The inner dataset must provide ``get_cat_ids(idx)``.
    """

    def __init__(self, dataset: Any, oversample_thr: float, filter_empty_gt: bool = True,
                 lazy_init: bool = False) -> None:
        _refuse_lazy("ClassBalancedDataset", lazy_init)
        self.dataset = _maybe_build(dataset, "dataset")
        if not hasattr(self.dataset, "get_cat_ids"):
            raise TypeError(f"ClassBalancedDataset needs a dataset with get_cat_ids(idx); "
                            f"{type(self.dataset).__name__} has none.")
        self.oversample_thr = oversample_thr
        self.filter_empty_gt = filter_empty_gt
        self.CLASSES = getattr(self.dataset, "CLASSES", None)
        factors = self._get_repeat_factors(self.dataset, oversample_thr)
        self.repeat_indices: list[int] = []
        for i, f in enumerate(factors):
            self.repeat_indices.extend([i] * math.ceil(f))
        if hasattr(self.dataset, "flag"):
            self.flag = np.asarray([self.dataset.flag[i] for i in self.repeat_indices], dtype=np.uint8)

    def _get_repeat_factors(self, dataset: Any, thr: float) -> list[float]:
        cat_sets = [set(dataset.get_cat_ids(i)) for i in range(len(dataset))]
        freq: dict[int, float] = defaultdict(float)
        for cats in cat_sets:
            if not cats and not self.filter_empty_gt:
                cats = {-1}  # count images without boxes as their own "class"
            for c in cats:
                freq[c] += 1
        n = len(cat_sets)
        cat_repeat = {c: max(1.0, math.sqrt(thr / (k / n))) for c, k in freq.items()}
        out = []
        for cats in cat_sets:
            if not cats and not self.filter_empty_gt:
                cats = {-1}
            out.append(max((cat_repeat[c] for c in cats), default=1.0))
        return out

    def __len__(self) -> int:
        return len(self.repeat_indices)

    def __getitem__(self, idx: int) -> Any:
        return self.dataset[self.repeat_indices[idx]]

    def get_cat_ids(self, idx: int) -> list[int]:
        """Labels of sample ``idx`` (delegated)."""
        return self.dataset.get_cat_ids(self.repeat_indices[idx])

    @property
    def metainfo(self) -> dict[str, Any]:
        """The wrapped dataset's ``metainfo``."""
        return _metainfo(self.dataset)


def build_dataset(cfg: Any, default_args: Mapping | None = None, *, cfg_path: str = "data") -> Any:
    """Build a dataset from config (MM semantics).

    * a list of configs → ``ConcatDataset`` of them;
    * ``ann_file`` given as a list → one dataset per file (other keys shared), concatenated;
    * ``type='RepeatDataset'``/``'ClassBalancedDataset'``/``'ConcatDataset'`` wrap inner configs;
    * anything else → ``DATASETS.build``.
    """
    if isinstance(cfg, (list, tuple)):
        return ConcatDataset([build_dataset(c, default_args, cfg_path=f"{cfg_path}.{i}")
                              for i, c in enumerate(cfg)])
    if not isinstance(cfg, Mapping):
        raise TypeError(f"build_dataset: config at '{cfg_path}' must be a dict (or list of dicts), "
                        f"got {type(cfg).__name__}.")
    if isinstance(cfg.get("ann_file"), (list, tuple)):
        parts = []
        for i, ann in enumerate(cfg["ann_file"]):
            sub = copy.deepcopy(dict(cfg))
            sub["ann_file"] = ann
            for key in ("img_prefix", "seg_prefix", "proposal_file"):
                if isinstance(sub.get(key), (list, tuple)):
                    sub[key] = sub[key][i]
            parts.append(build_dataset(sub, default_args, cfg_path=f"{cfg_path}.ann_file.{i}"))
        return ConcatDataset(parts, separate_eval=cfg.get("separate_eval", True))
    return DATASETS.build(cfg, default_args, cfg_path=cfg_path)
