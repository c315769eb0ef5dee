"""``DetDataPreprocessor``: MMDetection 3.x's model-side normalisation of ``PackDetInputs`` images.

MMDetection 3.x pipelines stop before normalisation: ``PackDetInputs`` yields unnormalised images in the
pipeline's channel order (BGR when loaded by ``LoadImageFromFile``) and the model's ``data_preprocessor``
flips channels, normalises and pads the batch. The detector builds this module from its
``data_preprocessor=dict(type='DetDataPreprocessor', ...)`` argument and calls it from
:meth:`kiln.models.detectors.base.BaseDetector.preprocess` on the 3.x batch form only.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from kiln.registry import MODELS
from kiln.structures import ImageList

__all__ = ["BatchFixedSizePad", "DetDataPreprocessor", "BATCH_AUGMENTS"]

# Batch augmentations kiln implements (others are refused by name at build time).
BATCH_AUGMENTS = ("BatchFixedSizePad",)


def _refuse_seg(owner: str, pad_seg: bool) -> None:
    # kiln has no semantic-segmentation heads (panoptic models are not implemented): no semantic maps
    # reach the model, so a request to pad them cannot be honoured.
    if pad_seg:
        raise ValueError(
            f"{owner}(pad_seg=True): kiln has no semantic-segmentation heads (panoptic configs are not "
            "supported), so no semantic maps reach the model to pad. Set pad_seg=False."
        )


def _pad_masks(masks: Sequence[Any], metas: Sequence[Mapping[str, Any]], pad_val: int) -> list[Any]:
    """Pad each image's gt instance masks bottom/right to the batch's padded shape (``batch_input_shape``),
    as MMDetection's ``pad_mask``: the mask head's targets are then cropped from masks of the same size as
    the features they are pooled from."""
    out = []
    for m, meta in zip(masks, metas):
        shape = tuple(int(v) for v in meta["batch_input_shape"][:2])
        out.append(m.pad(shape, pad_val=pad_val))
    return out


@MODELS.register_module()
class BatchFixedSizePad(nn.Module):
    """Pad a training batch bottom/right to a fixed ``size=(h, w)`` (MMDetection's large-scale-jitter
    recipes crop to ``size`` and pad every batch to it, so every step has the same input shape).

    A batch already at least ``size`` in both sides is left unchanged, as in MMDetection. With
    ``pad_mask`` the gt instance masks are padded to the batch too (:meth:`DetDataPreprocessor.pad_gt_masks`).
    """

    def __init__(
        self,
        size: Sequence[int],
        img_pad_value: float = 0,
        pad_mask: bool = False,
        mask_pad_value: int = 0,
        pad_seg: bool = False,
        seg_pad_value: int = 255,
    ) -> None:
        super().__init__()
        if len(size) != 2 or any(int(s) <= 0 for s in size):
            raise ValueError(f"BatchFixedSizePad size={size!r}: expected (height, width) > 0.")
        _refuse_seg("BatchFixedSizePad", pad_seg)
        self.pad_mask = bool(pad_mask)
        self.mask_pad_value = int(mask_pad_value)
        self.size = (int(size[0]), int(size[1]))
        self.img_pad_value = float(img_pad_value)

    def forward(self, images: ImageList, metas: list[dict[str, Any]]) -> ImageList:
        """Pad ``images.tensor`` to ``size``; per-image sizes (``img_shape``) do not change."""
        src_h, src_w = images.tensor.shape[-2:]
        dst_h, dst_w = self.size
        if src_h >= dst_h and src_w >= dst_w:
            return images
        tensor = F.pad(
            images.tensor, (0, max(0, dst_w - src_w), 0, max(0, dst_h - src_h)), value=self.img_pad_value
        )
        for meta in metas:
            meta["pad_shape"] = tuple(tensor.shape[-2:])
        return ImageList(tensor, images.image_sizes)


@MODELS.register_module()
class DetDataPreprocessor(nn.Module):
    """Channel flip, normalisation and padding of a batch of ``PackDetInputs`` images.

    The order is MMEngine's ``ImgDataPreprocessor``: cast to float, flip BGR↔RGB (3-channel images
    only), ``(x - mean) / std``, then pad bottom/right to the batch maximum rounded up to
    ``pad_size_divisor`` with ``pad_value`` (the padding is in normalised units, as in MMDetection).
    ``batch_augments`` run on training batches only.

    Args:
        mean, std: per-channel statistics (in the channel order *after* ``bgr_to_rgb``); both or
            neither (neither: no normalisation).
        pad_size_divisor: padded H and W are multiples of this.
        pad_value: fill value of the padding.
        bgr_to_rgb, rgb_to_bgr: reverse the channel order before normalising (at most one of them).
        boxtype2tensor: accepted for compatibility; kiln boxes are always plain tensors.
        non_blocking: host→device copies are asynchronous.
        pad_mask, mask_pad_value: pad the gt instance masks of training batches to the padded batch shape
            with ``mask_pad_value`` (:meth:`pad_gt_masks`; Mask R-CNN configs set it).
        pad_seg: must be False (kiln has no semantic-segmentation heads).
        batch_augments: list of batch-augmentation configs; kiln implements ``BatchFixedSizePad``.
    """

    def __init__(
        self,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        pad_size_divisor: int = 1,
        pad_value: float = 0,
        pad_mask: bool = False,
        mask_pad_value: int = 0,
        pad_seg: bool = False,
        seg_pad_value: int = 255,
        bgr_to_rgb: bool = False,
        rgb_to_bgr: bool = False,
        boxtype2tensor: bool = True,
        non_blocking: bool = False,
        batch_augments: Sequence[Mapping[str, Any]] | None = None,
    ) -> None:
        super().__init__()
        if (mean is None) != (std is None):
            raise ValueError(
                f"data_preprocessor: mean={mean!r} and std={std!r}: give both (normalise) or neither."
            )
        if bgr_to_rgb and rgb_to_bgr:
            raise ValueError("data_preprocessor: bgr_to_rgb and rgb_to_bgr cannot both be True.")
        if int(pad_size_divisor) < 1:
            raise ValueError(f"data_preprocessor.pad_size_divisor={pad_size_divisor!r}: expected >= 1.")
        _refuse_seg("DetDataPreprocessor", pad_seg)
        self.pad_mask = bool(pad_mask)
        self.mask_pad_value = int(mask_pad_value)
        self.normalize = mean is not None
        if self.normalize:
            m = torch.tensor([float(v) for v in mean], dtype=torch.float32).view(-1, 1, 1)
            s = torch.tensor([float(v) for v in std], dtype=torch.float32).view(-1, 1, 1)
            if m.shape != s.shape or m.shape[0] not in (1, 3):
                raise ValueError(
                    f"data_preprocessor: mean={list(mean)} and std={list(std)} need 1 or 3 values each."
                )
            self.register_buffer("mean", m, persistent=False)
            self.register_buffer("std", s, persistent=False)
        self.channel_conversion = bool(bgr_to_rgb or rgb_to_bgr)
        self.pad_size_divisor = int(pad_size_divisor)
        self.pad_value = float(pad_value)
        self.boxtype2tensor = bool(boxtype2tensor)
        self.non_blocking = bool(non_blocking)
        augments = []
        for i, aug in enumerate(batch_augments or []):
            kind = aug.get("type") if isinstance(aug, Mapping) else None
            if kind not in BATCH_AUGMENTS:
                raise ValueError(
                    f"model.data_preprocessor.batch_augments[{i}]: type {kind!r} is not implemented in "
                    f"kiln (it implements {list(BATCH_AUGMENTS)}); remove it or replace it with a "
                    "pipeline transform (e.g. RandomResize) that has the same effect."
                )
            augments.append(MODELS.build(aug, cfg_path=f"model.data_preprocessor.batch_augments[{i}]"))
        self.batch_augments = nn.ModuleList(augments) if augments else None

    def forward(
        self, images: Sequence[torch.Tensor], metas: list[dict[str, Any]], training: bool = False
    ) -> ImageList:
        """Normalise and pad C×H×W ``images`` into one batch; ``metas`` get ``pad_shape``.

        Args:
            images: per-view tensors as ``PackDetInputs`` made them (uint8 or float), on the model's
                device (the detector moves them, with ``non_blocking``).
            metas: per-view meta dicts (``pad_shape`` and ``batch_input_shape`` are set here).
            training: whether to run ``batch_augments``.
        """
        out = []
        for i, img in enumerate(images):
            if img.dim() != 3:
                raise ValueError(
                    f"data_preprocessor: input {i} has shape {tuple(img.shape)}; expected C×H×W."
                )
            if self.channel_conversion and img.shape[0] == 3:
                img = img.flip(0)
            img = img.float()
            if self.normalize:
                if self.mean.shape[0] == 3 and img.shape[0] != 3:
                    raise ValueError(
                        f"data_preprocessor: input {i} has {img.shape[0]} channels but mean/std have 3."
                    )
                img = (img - self.mean) / self.std
            out.append(img)
        batch = ImageList.from_tensors(out, self.pad_size_divisor, self.pad_value)
        d = self.pad_size_divisor
        for meta, (h, w) in zip(metas, batch.image_sizes):
            meta["pad_shape"] = (math.ceil(h / d) * d, math.ceil(w / d) * d)
        if training and self.batch_augments is not None:
            for aug in self.batch_augments:
                batch = aug(batch, metas)
        for meta in metas:
            meta["batch_input_shape"] = tuple(batch.tensor.shape[-2:])
        return batch

    def pad_gt_masks(self, masks: Sequence[Any], metas: Sequence[Mapping[str, Any]], training: bool = False
                     ) -> list[Any]:
        """Pad training gt masks to ``batch_input_shape`` when ``pad_mask`` (here or on a
        ``BatchFixedSizePad``) asks for it; otherwise return them unchanged."""
        if not training or not masks:
            return list(masks)
        if self.pad_mask:
            return _pad_masks(masks, metas, self.mask_pad_value)
        for aug in self.batch_augments or []:
            if getattr(aug, "pad_mask", False):
                return _pad_masks(masks, metas, aug.mask_pad_value)
        return list(masks)
