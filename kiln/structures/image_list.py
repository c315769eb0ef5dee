"""``ImageList``: a padded batch of images with their original sizes."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F

__all__ = ["ImageList"]


class ImageList:
    """Images of different sizes padded into one tensor (B×C×H×W), keeping each image's size.

    Attributes:
        tensor: the padded batch.
        image_sizes: ``[(h, w), ...]`` of each image before padding.

    Example::

        >>> il = ImageList.from_tensors([torch.zeros(3, 5, 7), torch.zeros(3, 8, 4)], size_divisibility=4)
        >>> il.tensor.shape, il.image_sizes
        (torch.Size([2, 3, 8, 8]), [(5, 7), (8, 4)])
    """

    def __init__(self, tensor: torch.Tensor, image_sizes: list[tuple[int, int]]) -> None:
        self.tensor = tensor
        self.image_sizes = [(int(h), int(w)) for h, w in image_sizes]

    def __len__(self) -> int:
        return len(self.image_sizes)

    def __getitem__(self, idx: int) -> torch.Tensor:
        """The ``idx``-th image without padding."""
        h, w = self.image_sizes[idx]
        return self.tensor[idx, ..., :h, :w]

    def to(self, *args: Any, **kwargs: Any) -> ImageList:
        """Move/cast the tensor like ``Tensor.to``."""
        return ImageList(self.tensor.to(*args, **kwargs), self.image_sizes)

    @property
    def device(self) -> torch.device:
        """The device of the padded tensor."""
        return self.tensor.device

    @staticmethod
    def from_tensors(
        tensors: Sequence[torch.Tensor], size_divisibility: int = 0, pad_value: float = 0.0
    ) -> ImageList:
        """Pad a list of (C×)H×W tensors to a common size, bottom/right, and stack them.

        Args:
            tensors: images with equal leading dims (e.g. channels) and any H, W.
            size_divisibility: if > 0, the padded H and W are rounded up to a multiple of it
                (FPN backbones need a multiple of the largest stride).
            pad_value: the fill value of the padding.
        """
        if len(tensors) == 0:
            raise ValueError("ImageList.from_tensors needs at least one tensor.")
        for t in tensors:
            if not isinstance(t, torch.Tensor):
                raise TypeError(f"ImageList.from_tensors expects tensors, got {type(t).__name__}.")
            if t.shape[:-2] != tensors[0].shape[:-2]:
                raise ValueError(
                    "ImageList.from_tensors: leading dims differ: "
                    f"{tuple(t.shape)} vs {tuple(tensors[0].shape)}."
                )
        image_sizes = [(int(t.shape[-2]), int(t.shape[-1])) for t in tensors]
        max_h = max(s[0] for s in image_sizes)
        max_w = max(s[1] for s in image_sizes)
        if size_divisibility > 1:
            max_h = int(math.ceil(max_h / size_divisibility) * size_divisibility)
            max_w = int(math.ceil(max_w / size_divisibility) * size_divisibility)
        if len(tensors) == 1:
            t = tensors[0]
            pad = [0, max_w - image_sizes[0][1], 0, max_h - image_sizes[0][0]]
            batched = F.pad(t, pad, value=pad_value).unsqueeze(0)
        else:
            shape = (len(tensors), *tensors[0].shape[:-2], max_h, max_w)
            batched = tensors[0].new_full(shape, pad_value)
            for i, t in enumerate(tensors):
                batched[i, ..., : t.shape[-2], : t.shape[-1]].copy_(t)
        return ImageList(batched.contiguous(), image_sizes)
