"""Box modes and the ``Boxes`` container (an N×4 XYXY float tensor with helpers).

Box math delegates to ``torchvision.ops`` so there is one implementation of IoU in kiln.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from enum import IntEnum
from typing import Any, Union

import numpy as np
import torch

__all__ = ["BoxMode", "Boxes", "pairwise_iou", "pairwise_intersection"]

_RawBoxType = Union[list, tuple, torch.Tensor, np.ndarray]


class BoxMode(IntEnum):
    """How 4 (or 5) numbers describe a box.

    ``XYXY_ABS``: (x0, y0, x1, y1) in pixels. ``XYWH_ABS``: (x0, y0, w, h) in pixels (COCO).
    ``XYWHA_ABS``: (xc, yc, w, h, angle_degrees) rotated boxes, angle counter-clockwise.
    ``XYXY_REL``/``XYWH_REL`` are relative to the image size; they exist so dataset dicts can
    say what they hold, but converting them needs the image size, which ``convert`` does not take.

    Example::

        >>> BoxMode.convert([10, 20, 5, 5], BoxMode.XYWH_ABS, BoxMode.XYXY_ABS)
        [10, 20, 15, 25]
    """

    XYXY_ABS = 0
    XYWH_ABS = 1
    XYXY_REL = 2
    XYWH_REL = 3
    XYWHA_ABS = 4

    @staticmethod
    def convert(box: _RawBoxType, from_mode: BoxMode, to_mode: BoxMode) -> _RawBoxType:
        """Convert one box (list/tuple of 4 or 5) or an N×4 / N×5 array/tensor between modes.

        The result has the same container type as the input (list → list, numpy → numpy,
        tensor → tensor with the same dtype).
        """
        from_mode, to_mode = BoxMode(from_mode), BoxMode(to_mode)
        if from_mode == to_mode:
            return box
        rel = (BoxMode.XYXY_REL, BoxMode.XYWH_REL)
        if from_mode in rel or to_mode in rel:
            raise NotImplementedError(
                f"Cannot convert {from_mode.name} -> {to_mode.name}: relative modes need the image size. "
                "Multiply by (width, height) first and use an *_ABS mode."
            )
        original_type = type(box)
        is_numpy = isinstance(box, np.ndarray)
        single = isinstance(box, (list, tuple))
        if single:
            if len(box) not in (4, 5):
                raise ValueError(
                    f"BoxMode.convert: a single box must have 4 or 5 numbers, got {len(box)}: {box!r}."
                )
            arr = torch.tensor(box, dtype=torch.float64)[None, :]
        elif is_numpy:
            arr = torch.from_numpy(np.asarray(box)).clone()
        else:
            arr = box.clone()
        orig_dtype = arr.dtype
        if not arr.is_floating_point():
            arr = arr.double()

        if from_mode == BoxMode.XYWHA_ABS and to_mode == BoxMode.XYXY_ABS:
            if arr.shape[-1] != 5:
                raise ValueError(f"XYWHA_ABS boxes need 5 numbers per box, got shape {tuple(arr.shape)}.")
            w, h = arr[:, 2], arr[:, 3]
            a = arr[:, 4] * math.pi / 180.0
            c, s = torch.abs(torch.cos(a)), torch.abs(torch.sin(a))
            new_w = c * w + s * h
            new_h = c * h + s * w
            out = torch.stack(
                [arr[:, 0] - new_w / 2, arr[:, 1] - new_h / 2, arr[:, 0] + new_w / 2, arr[:, 1] + new_h / 2],
                dim=1,
            )
        elif from_mode == BoxMode.XYXY_ABS and to_mode == BoxMode.XYWHA_ABS:
            w = arr[:, 2] - arr[:, 0]
            h = arr[:, 3] - arr[:, 1]
            out = torch.stack(
                [arr[:, 0] + w / 2, arr[:, 1] + h / 2, w, h, torch.zeros_like(w)], dim=1
            )
        elif from_mode == BoxMode.XYWH_ABS and to_mode == BoxMode.XYXY_ABS:
            out = arr.clone()
            out[:, 2] += out[:, 0]
            out[:, 3] += out[:, 1]
        elif from_mode == BoxMode.XYXY_ABS and to_mode == BoxMode.XYWH_ABS:
            out = arr.clone()
            out[:, 2] -= out[:, 0]
            out[:, 3] -= out[:, 1]
        elif from_mode == BoxMode.XYWH_ABS and to_mode == BoxMode.XYWHA_ABS:
            return BoxMode.convert(
                BoxMode.convert(box, from_mode, BoxMode.XYXY_ABS), BoxMode.XYXY_ABS, to_mode
            )
        elif from_mode == BoxMode.XYWHA_ABS and to_mode == BoxMode.XYWH_ABS:
            return BoxMode.convert(
                BoxMode.convert(box, from_mode, BoxMode.XYXY_ABS), BoxMode.XYXY_ABS, to_mode
            )
        else:  # pragma: no cover - all absolute pairs are handled above
            raise NotImplementedError(f"Conversion {from_mode.name} -> {to_mode.name} is not supported.")

        if orig_dtype.is_floating_point:
            out = out.to(orig_dtype)
        if single:
            vals = out[0].tolist()
            if all(isinstance(v, int) for v in box):
                vals = [int(v) if float(v).is_integer() else v for v in vals]
            return original_type(vals)
        if is_numpy:
            return out.numpy()
        return out


class Boxes:
    """An N×4 float tensor of XYXY_ABS boxes with the operations detectors need.

    ``Boxes`` behaves like a tensor where it matters: ``len``, indexing (int, slice, bool mask,
    index tensor) returning ``Boxes``, ``.to(device)``, ``.device``, iteration over rows.

    Example::

        >>> b = Boxes(torch.tensor([[0., 0., 10., 20.]]))
        >>> b.area()
        tensor([200.])
    """

    def __init__(self, tensor: torch.Tensor | np.ndarray | list) -> None:
        if not isinstance(tensor, torch.Tensor):
            tensor = torch.as_tensor(np.asarray(tensor, dtype=np.float32), dtype=torch.float32)
        elif not tensor.is_floating_point():
            tensor = tensor.float()
        if tensor.numel() == 0:
            # Keep a (0, 4) shape so cat/indexing work on empty images.
            tensor = tensor.reshape(-1, 4)
        if tensor.dim() != 2 or tensor.size(-1) != 4:
            raise ValueError(f"Boxes expects an N×4 tensor (XYXY_ABS), got shape {tuple(tensor.shape)}.")
        self.tensor = tensor

    def clone(self) -> Boxes:
        """A copy with its own storage."""
        return Boxes(self.tensor.clone())

    def to(self, *args: Any, **kwargs: Any) -> Boxes:
        """Move/cast like ``Tensor.to``."""
        return Boxes(self.tensor.to(*args, **kwargs))

    @property
    def device(self) -> torch.device:
        """The device of the underlying tensor."""
        return self.tensor.device

    def area(self) -> torch.Tensor:
        """Area of each box, shape (N,)."""
        b = self.tensor
        return (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])

    def clip(self, box_size: tuple[int, int]) -> None:
        """Clip boxes in place to an image of ``box_size = (height, width)``."""
        if not torch.isfinite(self.tensor).all():
            raise ValueError("Boxes.clip: boxes contain inf or nan.")
        h, w = box_size
        x1 = self.tensor[:, 0].clamp(min=0, max=w)
        y1 = self.tensor[:, 1].clamp(min=0, max=h)
        x2 = self.tensor[:, 2].clamp(min=0, max=w)
        y2 = self.tensor[:, 3].clamp(min=0, max=h)
        self.tensor = torch.stack((x1, y1, x2, y2), dim=-1)

    def nonempty(self, threshold: float = 0.0) -> torch.Tensor:
        """Bool mask (N,) of boxes whose width and height are both > ``threshold``."""
        b = self.tensor
        return ((b[:, 2] - b[:, 0]) > threshold) & ((b[:, 3] - b[:, 1]) > threshold)

    def inside_box(self, box_size: tuple[int, int], boundary_threshold: int = 0) -> torch.Tensor:
        """Bool mask (N,) of boxes lying inside an image of ``(height, width)`` (with a margin)."""
        h, w = box_size
        t = boundary_threshold
        b = self.tensor
        return (b[:, 0] >= -t) & (b[:, 1] >= -t) & (b[:, 2] < w + t) & (b[:, 3] < h + t)

    def get_centers(self) -> torch.Tensor:
        """Box centers, shape (N, 2)."""
        return (self.tensor[:, :2] + self.tensor[:, 2:]) / 2

    def scale(self, scale_x: float, scale_y: float) -> None:
        """Scale coordinates in place (x by ``scale_x``, y by ``scale_y``)."""
        self.tensor[:, 0::2] *= scale_x
        self.tensor[:, 1::2] *= scale_y

    def iou(self, other: Boxes) -> torch.Tensor:
        """IoU of every box here with every box of ``other``, shape (N, M)."""
        return pairwise_iou(self, other)

    @classmethod
    def cat(cls, boxes_list: list[Boxes]) -> Boxes:
        """Concatenate a list of ``Boxes`` into one."""
        if not isinstance(boxes_list, (list, tuple)):
            raise TypeError(f"Boxes.cat expects a list of Boxes, got {type(boxes_list).__name__}.")
        if len(boxes_list) == 0:
            return cls(torch.empty(0, 4))
        if not all(isinstance(b, Boxes) for b in boxes_list):
            raise TypeError("Boxes.cat: every element must be a Boxes.")
        return cls(torch.cat([b.tensor for b in boxes_list], dim=0))

    def __getitem__(self, item: Any) -> Boxes:
        if isinstance(item, int):
            return Boxes(self.tensor[item].view(1, -1))
        b = self.tensor[item]
        if b.dim() != 2:
            raise IndexError(f"Indexing Boxes with {item!r} did not give a 2-D result.")
        return Boxes(b)

    def __len__(self) -> int:
        return self.tensor.shape[0]

    def __repr__(self) -> str:
        return f"Boxes({self.tensor!s})"

    def __iter__(self) -> Iterator[torch.Tensor]:
        yield from self.tensor


def pairwise_intersection(boxes1: Boxes, boxes2: Boxes) -> torch.Tensor:
    """Intersection area of every pair, shape (N, M)."""
    b1, b2 = boxes1.tensor, boxes2.tensor
    wh = (torch.min(b1[:, None, 2:], b2[:, 2:]) - torch.max(b1[:, None, :2], b2[:, :2])).clamp(min=0)
    return wh.prod(dim=2)


def pairwise_iou(boxes1: Boxes, boxes2: Boxes) -> torch.Tensor:
    """IoU of every pair, shape (N, M), via ``torchvision.ops.box_iou``."""
    from torchvision.ops import box_iou

    return box_iou(boxes1.tensor, boxes2.tensor)
