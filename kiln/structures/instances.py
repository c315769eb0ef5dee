"""``Instances``: per-image fields of equal length (boxes, classes, scores, ...)."""

from __future__ import annotations

import itertools
from typing import Any

import torch

__all__ = ["Instances"]


class Instances:
    """A set of per-instance fields for one image, all with the same length.

    Fields are set as attributes (``inst.gt_boxes = Boxes(...)``) or with ``set``; any object with
    ``__len__`` works (tensors, ``Boxes``, lists). Indexing with an int, slice, bool mask or index
    tensor indexes every field.

    Example::

        >>> inst = Instances((480, 640))
        >>> inst.scores = torch.tensor([0.9, 0.2])
        >>> len(inst[inst.scores > 0.5])
        1
    """

    def __init__(self, image_size: tuple[int, int], **kwargs: Any) -> None:
        self._image_size = (int(image_size[0]), int(image_size[1]))
        self._fields: dict[str, Any] = {}
        for k, v in kwargs.items():
            self.set(k, v)

    @property
    def image_size(self) -> tuple[int, int]:
        """``(height, width)`` of the image these instances belong to."""
        return self._image_size

    def __setattr__(self, name: str, val: Any) -> None:
        if name.startswith("_"):
            super().__setattr__(name, val)
        else:
            self.set(name, val)

    def __getattr__(self, name: str) -> Any:
        # Only called when normal lookup fails; "_fields" guard avoids recursion during unpickling.
        if name == "_fields" or name not in self.__dict__.get("_fields", {}):
            present = sorted(self.__dict__.get("_fields", {}))
            raise AttributeError(f"Instances has no field '{name}'. Fields present: {present}.")
        return self._fields[name]

    def set(self, name: str, value: Any) -> None:
        """Set a field; its length must equal the other fields' length."""
        n = len(value)
        if self._fields and len(self) != n:
            raise ValueError(
                f"Instances.set('{name}'): length {n} does not match the other fields' length {len(self)} "
                f"(fields: {sorted(self._fields)})."
            )
        self._fields[name] = value

    def has(self, name: str) -> bool:
        """Whether field ``name`` exists."""
        return name in self._fields

    def remove(self, name: str) -> None:
        """Delete field ``name``."""
        del self._fields[name]

    def get(self, name: str) -> Any:
        """Return field ``name``."""
        return self._fields[name]

    def get_fields(self) -> dict[str, Any]:
        """The name → value dict of all fields (the live dict, not a copy)."""
        return self._fields

    def to(self, *args: Any, **kwargs: Any) -> Instances:
        """Return a copy with every field that has ``.to`` moved/cast."""
        ret = Instances(self._image_size)
        for k, v in self._fields.items():
            if hasattr(v, "to"):
                v = v.to(*args, **kwargs)
            ret.set(k, v)
        return ret

    def __getitem__(self, item: Any) -> Instances:
        if isinstance(item, int):
            if item >= len(self) or item < -len(self):
                raise IndexError(f"Instances index {item} out of range (length {len(self)}).")
            item = item % len(self)
            item = slice(item, item + 1)
        ret = Instances(self._image_size)
        for k, v in self._fields.items():
            if isinstance(v, list):
                if isinstance(item, torch.Tensor):
                    idx = item.nonzero().flatten().tolist() if item.dtype == torch.bool else item.tolist()
                    ret.set(k, [v[i] for i in idx])
                else:
                    ret.set(k, v[item])
            else:
                ret.set(k, v[item])
        return ret

    def __len__(self) -> int:
        for v in self._fields.values():
            return len(v)
        return 0

    def __iter__(self) -> Any:
        raise NotImplementedError("Instances is not iterable; index it or read its fields.")

    @staticmethod
    def cat(instance_lists: list[Instances]) -> Instances:
        """Concatenate ``Instances`` of the same image size and fields."""
        if not instance_lists:
            raise ValueError("Instances.cat needs at least one Instances.")
        if len(instance_lists) == 1:
            return instance_lists[0]
        image_size = instance_lists[0].image_size
        for i in instance_lists[1:]:
            if i.image_size != image_size:
                raise ValueError(f"Instances.cat: image sizes differ ({image_size} vs {i.image_size}).")
        ret = Instances(image_size)
        for k in instance_lists[0]._fields:
            values = [i.get(k) for i in instance_lists]
            v0 = values[0]
            if isinstance(v0, torch.Tensor):
                values = torch.cat(values, dim=0)
            elif isinstance(v0, list):
                values = list(itertools.chain(*values))
            elif hasattr(type(v0), "cat"):
                values = type(v0).cat(values)
            else:
                raise ValueError(f"Instances.cat: do not know how to concatenate field '{k}' of {type(v0)}.")
            ret.set(k, values)
        return ret

    def __repr__(self) -> str:
        fields = ", ".join(f"{k}: {v}" for k, v in self._fields.items())
        return (f"Instances(num_instances={len(self)}, image_height={self._image_size[0]}, "
                f"image_width={self._image_size[1]}, fields=[{fields}])")
