"""``InstanceData`` and ``DetDataSample``: MMEngine/MMDetection 3.x per-image containers.

MMDetection 3.x pipelines end in ``PackDetInputs``, which yields ``inputs`` (the image tensor) and
``data_samples`` (a ``DetDataSample``: image meta information plus ``gt_instances``). kiln keeps its
batch contract (a list of per-image dicts, see docs/architecture.md "Batches"); the 3.x form is one more
producer: ``{'inputs': Tensor C×H×W, 'data_samples': DetDataSample}``. Code written against MMDetection
3.x (custom hooks, metrics, transforms) reads these objects with the same attribute names.

Differences from MMDetection: ``gt_instances.bboxes`` is a plain float tensor N×4 (XYXY), not a
``HorizontalBoxes`` object (MMDetection's ``get_box_tensor`` accepts both).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np
import torch

__all__ = ["InstanceData", "DetDataSample"]


class InstanceData:
    """Per-instance fields of one image, all of the same length (MMEngine ``InstanceData``).

    Fields are set as attributes; indexing (int, slice, bool mask, index tensor/array/list) indexes
    every field. ``metainfo`` holds image-level values that are not per instance.

    Example::

        >>> inst = InstanceData(bboxes=torch.zeros(2, 4), labels=torch.tensor([0, 3]))
        >>> len(inst[inst.labels > 0])
        1
    """

    def __init__(self, metainfo: Mapping[str, Any] | None = None, **fields: Any) -> None:
        object.__setattr__(self, "_metainfo", dict(metainfo or {}))
        object.__setattr__(self, "_fields", {})
        for key, value in fields.items():
            setattr(self, key, value)

    # ------------------------------------------------------------------ fields
    def __setattr__(self, name: str, value: Any) -> None:
        if name.startswith("_"):
            raise AttributeError(f"InstanceData field names may not start with '_' (got {name!r}).")
        if not hasattr(value, "__len__"):
            raise TypeError(f"InstanceData.{name}: a field needs a length (tensor, array, list), got "
                            f"{type(value).__name__}; put image-level values in metainfo.")
        if self._fields and len(value) != len(self):
            raise ValueError(f"InstanceData.{name} has length {len(value)}; the other fields "
                             f"({sorted(self._fields)}) have length {len(self)}.")
        self._fields[name] = value

    def __getattr__(self, name: str) -> Any:
        fields = self.__dict__.get("_fields", {})
        if name in fields:
            return fields[name]
        meta = self.__dict__.get("_metainfo", {})
        if name in meta:
            return meta[name]
        raise AttributeError(f"InstanceData has no field {name!r}; fields: {sorted(fields)}.")

    def __delattr__(self, name: str) -> None:
        if name not in self._fields:
            raise AttributeError(f"InstanceData has no field {name!r}.")
        del self._fields[name]

    def __contains__(self, name: str) -> bool:
        return name in self._fields or name in self._metainfo

    def __len__(self) -> int:
        for value in self._fields.values():
            return len(value)
        return 0

    def get(self, name: str, default: Any = None) -> Any:
        """A field (or metainfo value) by name, ``default`` when absent."""
        return self._fields.get(name, self._metainfo.get(name, default))

    def keys(self) -> list[str]:
        """Names of the per-instance fields."""
        return list(self._fields)

    def values(self) -> list[Any]:
        """Values of the per-instance fields."""
        return list(self._fields.values())

    def items(self) -> Iterator[tuple[str, Any]]:
        """``(name, value)`` of the per-instance fields."""
        return iter(list(self._fields.items()))

    @property
    def metainfo(self) -> dict[str, Any]:
        """Image-level values (a copy)."""
        return dict(self._metainfo)

    def set_metainfo(self, metainfo: Mapping[str, Any]) -> None:
        """Add or replace image-level values."""
        self._metainfo.update(metainfo)

    # ------------------------------------------------------------------ indexing / conversion
    def __getitem__(self, index: Any) -> InstanceData:
        if isinstance(index, (int, np.integer)):
            n = len(self)
            if not -n <= int(index) < n:
                raise IndexError(f"InstanceData index {int(index)} out of range for {n} instances.")
            index = slice(int(index), int(index) + 1 if int(index) != -1 else None)
        if isinstance(index, list):
            index = torch.as_tensor(index, dtype=torch.bool if index and isinstance(index[0], bool)
                                    else torch.long)
        out = InstanceData(self._metainfo)
        for key, value in self._fields.items():
            out._fields[key] = _index(value, index)
        return out

    def new(self, **fields: Any) -> InstanceData:
        """An empty-fielded copy with the same metainfo, then ``fields`` set."""
        return InstanceData(self._metainfo, **fields)

    def to(self, *args: Any, **kwargs: Any) -> InstanceData:
        """Move tensor fields (``tensor.to(*args, **kwargs)``)."""
        out = InstanceData(self._metainfo)
        for key, value in self._fields.items():
            out._fields[key] = value.to(*args, **kwargs) if hasattr(value, "to") else value
        return out

    def cpu(self) -> InstanceData:
        """Tensor fields on the CPU."""
        return self.to("cpu")

    def detach(self) -> InstanceData:
        """Tensor fields detached from autograd."""
        out = InstanceData(self._metainfo)
        for key, value in self._fields.items():
            out._fields[key] = value.detach() if isinstance(value, torch.Tensor) else value
        return out

    def numpy(self) -> InstanceData:
        """Tensor fields as numpy arrays."""
        out = InstanceData(self._metainfo)
        for key, value in self._fields.items():
            out._fields[key] = value.detach().cpu().numpy() if isinstance(value, torch.Tensor) else value
        return out

    @staticmethod
    def cat(items: list[InstanceData]) -> InstanceData:
        """Concatenate instance sets with the same fields."""
        if not items:
            raise ValueError("InstanceData.cat needs at least one InstanceData.")
        keys = items[0].keys()
        for other in items[1:]:
            if other.keys() != keys:
                raise ValueError(f"InstanceData.cat: fields differ ({keys} vs {other.keys()}).")
        out = InstanceData(items[0]._metainfo)
        for key in keys:
            values = [it._fields[key] for it in items]
            if isinstance(values[0], torch.Tensor):
                out._fields[key] = torch.cat(values)
            elif isinstance(values[0], np.ndarray):
                out._fields[key] = np.concatenate(values)
            elif hasattr(type(values[0]), "cat"):  # Boxes, mask structures
                out._fields[key] = type(values[0]).cat(values)
            else:
                out._fields[key] = [v for vs in values for v in vs]
        return out

    def __repr__(self) -> str:
        parts = [f"{k}: {_describe(v)}" for k, v in self._fields.items()]
        return f"InstanceData(num={len(self)}, {', '.join(parts)})"


def _index(value: Any, index: Any) -> Any:
    if isinstance(value, (torch.Tensor, np.ndarray)):
        if isinstance(value, np.ndarray) and isinstance(index, torch.Tensor):
            index = index.cpu().numpy()
        if isinstance(value, torch.Tensor) and isinstance(index, np.ndarray):
            index = torch.from_numpy(index)
        if isinstance(value, torch.Tensor) and isinstance(index, torch.Tensor):
            index = index.to(value.device)
        return value[index]
    if isinstance(index, slice):
        return value[index]
    if hasattr(value, "__getitem__") and not isinstance(value, (list, tuple, str)):
        return value[index]  # e.g. Boxes, mask structures
    idx = torch.as_tensor(index).cpu()
    if idx.dtype == torch.bool:
        idx = idx.nonzero().flatten()
    return [value[int(i)] for i in idx.tolist()]


def _describe(value: Any) -> str:
    shape = getattr(value, "shape", None)
    return f"{type(value).__name__}{tuple(shape)}" if shape is not None else type(value).__name__


class DetDataSample:
    """One image's meta information and instance sets (MMDetection 3.x ``DetDataSample``).

    Meta information (``img_id``, ``img_path``, ``ori_shape``, ``img_shape``, ``scale_factor``,
    ``flip``, ``flip_direction``, ``pad_shape``...) is read as attributes (``sample.img_shape``) or as
    the ``metainfo`` dict. Instance sets: ``gt_instances`` (``bboxes`` N×4 XYXY in input pixels,
    ``labels`` N), ``ignored_instances`` (crowd/ignored boxes), ``pred_instances``, ``proposals``.
    """

    _DATA_FIELDS = ("gt_instances", "ignored_instances", "pred_instances", "proposals")

    def __init__(self, metainfo: Mapping[str, Any] | None = None, **fields: Any) -> None:
        object.__setattr__(self, "_metainfo", dict(metainfo or {}))
        object.__setattr__(self, "_data", {})
        for key, value in fields.items():
            setattr(self, key, value)

    def __setattr__(self, name: str, value: Any) -> None:
        if name.startswith("_"):
            raise AttributeError(f"DetDataSample field names may not start with '_' (got {name!r}).")
        if name in self._DATA_FIELDS and not isinstance(value, InstanceData):
            raise TypeError(f"DetDataSample.{name} must be an InstanceData, got {type(value).__name__}.")
        if name in self._metainfo:
            raise AttributeError(f"DetDataSample.{name} is meta information; change it with "
                                 f"set_metainfo({{{name!r}: ...}}).")
        self._data[name] = value

    def __getattr__(self, name: str) -> Any:
        data = self.__dict__.get("_data", {})
        if name in data:
            return data[name]
        meta = self.__dict__.get("_metainfo", {})
        if name in meta:
            return meta[name]
        raise AttributeError(f"DetDataSample has no {name!r}; meta: {sorted(meta)}, data: {sorted(data)}.")

    def __delattr__(self, name: str) -> None:
        if name not in self._data:
            raise AttributeError(f"DetDataSample has no data field {name!r}.")
        del self._data[name]

    def __contains__(self, name: str) -> bool:
        return name in self._data or name in self._metainfo

    def get(self, name: str, default: Any = None) -> Any:
        """A data field or meta value by name, ``default`` when absent."""
        return self._data.get(name, self._metainfo.get(name, default))

    @property
    def metainfo(self) -> dict[str, Any]:
        """The meta information (a copy)."""
        return dict(self._metainfo)

    def metainfo_keys(self) -> list[str]:
        """Names of the meta information values."""
        return list(self._metainfo)

    def keys(self) -> list[str]:
        """Names of the data fields."""
        return list(self._data)

    def set_metainfo(self, metainfo: Mapping[str, Any]) -> None:
        """Add or replace meta information."""
        clash = sorted(set(metainfo) & set(self._data))
        if clash:
            raise AttributeError(f"DetDataSample.set_metainfo: {clash} are data fields already.")
        self._metainfo.update(metainfo)

    def to(self, *args: Any, **kwargs: Any) -> DetDataSample:
        """Move every tensor-holding field (``.to(*args, **kwargs)``)."""
        out = DetDataSample(self._metainfo)
        for key, value in self._data.items():
            out._data[key] = value.to(*args, **kwargs) if hasattr(value, "to") else value
        return out

    def cpu(self) -> DetDataSample:
        """Every field on the CPU."""
        return self.to("cpu")

    def __repr__(self) -> str:
        data = dict(self._data)
        return f"DetDataSample(meta={sorted(self._metainfo)}, data={data})"
