"""``SSDVGG``: the VGG backbone of SSD (Liu et al. 2016), with MMCV/MMDetection's module names."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn as nn

from kiln.registry import MODELS
from kiln.structures import ShapeSpec

from .base import Backbone
from .pretrained import pretrained_from_init_cfg
from .pretrained_loading import load_named_pretrained, mark_pretrained_loaded

__all__ = ["SSDVGG"]


@MODELS.register_module()
class SSDVGG(Backbone):
    """VGG without classifier, then SSD's ``pool5`` (3×3, stride 1), dilated ``fc6`` and 1×1 ``fc7``.

    Every layer sits in one ``features`` ``nn.Sequential`` numbered as MMCV's VGG numbers it (conv, ReLU,
    ..., max-pool per stage; VGG-16: conv4_3's ReLU is ``features.22``, fc7's ReLU ``features.34``), so
    ``out_feature_indices=(22, 34)`` picks SSD's two backbone outputs and MMDetection checkpoints
    (``open-mmlab://vgg16_caffe``) load strictly.

    Args:
        depth: 11, 13, 16 or 19.
        with_last_pool: keep the last stage's 2×2 max-pool (SSD: False; pool5 replaces it).
        ceil_mode: round pooled sizes up (SSD300: 75 → 38 at the third pool).
        out_indices: accepted for MMDetection compatibility; the outputs are chosen by
            ``out_feature_indices`` (as in MMDetection's SSDVGG).
        out_feature_indices: ``features`` indices whose outputs are returned.
        widen_factor: multiplies every channel count (a kiln option for small CPU models; checkpoints fit
            only at 1.0).
        pretrained / init_cfg: backbone weights, loaded by :meth:`init_weights` when training starts.
        input_size, l2_norm_scale: MMDetection's deprecated arguments; ``l2_norm_scale`` belongs to
            ``SSDNeck`` and is refused here.
    """

    arch_settings = {11: (1, 1, 2, 2, 2), 13: (2, 2, 2, 2, 2), 16: (2, 2, 3, 3, 3), 19: (2, 2, 4, 4, 4)}

    def __init__(
        self,
        depth: int = 16,
        with_last_pool: bool = False,
        ceil_mode: bool = True,
        out_indices: Sequence[int] = (3, 4),
        out_feature_indices: Sequence[int] = (22, 34),
        pretrained: str | None = None,
        init_cfg: Mapping[str, Any] | None = None,
        input_size: int | None = None,
        l2_norm_scale: float | None = None,
        widen_factor: float = 1.0,
    ) -> None:
        super().__init__()
        if depth not in self.arch_settings:
            raise KeyError(f"SSDVGG depth={depth!r}: expected one of {sorted(self.arch_settings)}.")
        if l2_norm_scale is not None:
            raise ValueError(
                "SSDVGG(l2_norm_scale=...) is MMDetection's deprecated spelling; give l2_norm_scale to the "
                "neck instead: neck=dict(type='SSDNeck', ..., l2_norm_scale=20)."
            )
        self.pretrained = pretrained_from_init_cfg(init_cfg, pretrained, "SSDVGG")
        self.pretrained_prefix = init_cfg.get("prefix") if init_cfg is not None else None
        self.pretrained_loaded = False
        self.register_load_state_dict_post_hook(mark_pretrained_loaded)

        def width(c: int) -> int:
            return max(int(round(c * widen_factor)), 2)

        layers: list[nn.Module] = []
        channels, strides = [], []
        cin, stride = 3, 1
        blocks = self.arch_settings[depth]
        for i, n in enumerate(blocks):
            cout = width(64 * 2 ** min(i, 3))
            for _ in range(n):
                layers += [nn.Conv2d(cin, cout, 3, padding=1), nn.ReLU(inplace=True)]
                channels.append(cout)
                channels.append(cout)
                strides += [stride, stride]
                cin = cout
            if i < len(blocks) - 1 or with_last_pool:
                stride *= 2
                layers.append(nn.MaxPool2d(2, 2, ceil_mode=ceil_mode))
                channels.append(cout)
                strides.append(stride)
        fc = width(1024)
        layers += [
            nn.MaxPool2d(3, 1, padding=1),
            nn.Conv2d(cin, fc, 3, padding=6, dilation=6),
            nn.ReLU(inplace=True),
            nn.Conv2d(fc, fc, 1),
            nn.ReLU(inplace=True),
        ]
        channels += [cin, fc, fc, fc, fc]
        strides += [stride] * 5
        self.features = nn.Sequential(*layers)
        bad = [i for i in out_feature_indices if not 0 <= i < len(layers)]
        if bad:
            raise ValueError(
                f"SSDVGG out_feature_indices={tuple(out_feature_indices)}: {bad} are not layers of the "
                f"{len(layers)}-layer features (VGG-16: 22 is conv4_3's ReLU, 34 fc7's)."
            )
        self.out_feature_indices = tuple(out_feature_indices)
        self.out_indices = tuple(out_indices)
        self._channels = channels
        self._strides = strides
        self._random_init()

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """The outputs of the ``features`` layers in ``out_feature_indices``."""
        outs = []
        for i, layer in enumerate(self.features):
            x = layer(x)
            if i in self.out_feature_indices:
                outs.append(x)
        return tuple(outs)

    def output_shape(self) -> dict[str, ShapeSpec]:
        """``{'features22': ShapeSpec(512, 8), 'features34': ShapeSpec(1024, 16)}`` for SSD300's VGG-16."""
        return {
            f"features{i}": ShapeSpec(channels=self._channels[i], stride=self._strides[i])
            for i in self.out_feature_indices
        }

    @property
    def size_divisibility(self) -> int:
        """1: SSD takes its fixed input size as it is (padding 300 px to 320 would shift every default box
        off the features it was laid out for); batches are only padded to their largest image."""
        return 1

    def _random_init(self) -> None:
        # MMDetection's SSDVGG default without a checkpoint: Kaiming-normal convs, zero bias.
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(m.bias)

    def init_weights(self, pretrained: str | None = None) -> None:
        """Random initialisation, then ``pretrained`` (argument or constructor value) if given."""
        self._random_init()
        pretrained = pretrained if pretrained is not None else self.pretrained
        if pretrained:
            self.pretrained = pretrained
            load_named_pretrained(self, pretrained, self.pretrained_prefix, "SSDVGG")
        self.pretrained_loaded = True
