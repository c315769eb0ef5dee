"""``RetinaHead``: RetinaNet's shared classification/regression towers (Lin et al. 2017)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
import torch.nn as nn

from kiln.registry import MODELS

from ..layers import ConvNormAct
from .anchor_head import AnchorHead

__all__ = ["RetinaHead"]


@MODELS.register_module()
class RetinaHead(AnchorHead):
    """Two towers of ``stacked_convs`` 3×3 convs (+ReLU, optional norm) shared across levels, then a 3×3
    class conv (bias initialised to ``-log((1 - prior_prob) / prior_prob)`` so training starts at
    ``prior_prob`` foreground probability) and a 3×3 box conv.

    Default anchors: ``octave_base_scale=4, scales_per_octave=3, ratios=[0.5, 1, 2], strides=[8..128]``.
    """

    def __init__(
        self,
        num_classes: int,
        in_channels: int,
        stacked_convs: int = 4,
        conv_cfg: Mapping[str, Any] | None = None,
        norm_cfg: Mapping[str, Any] | None = None,
        prior_prob: float = 0.01,
        **kwargs: Any,
    ) -> None:
        if conv_cfg is not None:
            raise ValueError(
                f"RetinaHead conv_cfg={conv_cfg!r}: only plain convs are supported (conv_cfg=None)."
            )
        self.stacked_convs = stacked_convs
        self.norm_cfg = norm_cfg
        self.prior_prob = prior_prob
        if kwargs.get("anchor_generator") is None:
            kwargs["anchor_generator"] = dict(
                type="AnchorGenerator",
                octave_base_scale=4,
                scales_per_octave=3,
                ratios=[0.5, 1.0, 2.0],
                strides=[8, 16, 32, 64, 128],
            )
        if kwargs.get("loss_cls") is None:
            kwargs["loss_cls"] = dict(
                type="FocalLoss", use_sigmoid=True, gamma=2.0, alpha=0.25, loss_weight=1.0
            )
        super().__init__(num_classes, in_channels, **kwargs)

    def _init_layers(self) -> None:
        self.cls_convs = nn.ModuleList()
        self.reg_convs = nn.ModuleList()
        for i in range(self.stacked_convs):
            cin = self.in_channels if i == 0 else self.feat_channels
            self.cls_convs.append(ConvNormAct(cin, self.feat_channels, 3, padding=1, norm_cfg=self.norm_cfg))
            self.reg_convs.append(ConvNormAct(cin, self.feat_channels, 3, padding=1, norm_cfg=self.norm_cfg))
        cin = self.feat_channels if self.stacked_convs else self.in_channels
        self.retina_cls = nn.Conv2d(cin, self.num_anchors * self.cls_out_channels, 3, padding=1)
        self.retina_reg = nn.Conv2d(cin, self.num_anchors * 4, 3, padding=1)

    def init_weights(self) -> None:
        """Normal(0, 0.01) convs; class bias from ``prior_prob``."""
        super().init_weights()
        nn.init.constant_(self.retina_cls.bias, -math.log((1 - self.prior_prob) / self.prior_prob))

    def forward_single(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Class logits and box deltas of one level."""
        c = x
        for conv in self.cls_convs:
            c = conv(c)
        r = x
        for conv in self.reg_convs:
            r = conv(r)
        return self.retina_cls(c), self.retina_reg(r)
