"""``YOLOV3Neck``: YOLOv3's top-down path (a simplified FPN) with MMDetection's module names."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from kiln.registry import MODELS

from ..backbones.darknet import conv_bn_leaky, leaky_slope
from ..utils import refuse_init_cfg

__all__ = ["DetectionBlock", "YOLOV3Neck"]


class DetectionBlock(nn.Module):
    """Five convs alternating 1×1 (``n`` channels) and 3×3 (``2n``), ending at ``n`` channels."""

    def __init__(
        self, in_channels: int, out_channels: int, norm_cfg: Mapping[str, Any], slope: float
    ) -> None:
        super().__init__()
        double = out_channels * 2
        self.conv1 = conv_bn_leaky(in_channels, out_channels, 1, norm_cfg=norm_cfg, negative_slope=slope)
        self.conv2 = conv_bn_leaky(out_channels, double, 3, norm_cfg=norm_cfg, negative_slope=slope)
        self.conv3 = conv_bn_leaky(double, out_channels, 1, norm_cfg=norm_cfg, negative_slope=slope)
        self.conv4 = conv_bn_leaky(out_channels, double, 3, norm_cfg=norm_cfg, negative_slope=slope)
        self.conv5 = conv_bn_leaky(double, out_channels, 1, norm_cfg=norm_cfg, negative_slope=slope)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """conv1 … conv5."""
        return self.conv5(self.conv4(self.conv3(self.conv2(self.conv1(x)))))


@MODELS.register_module()
class YOLOV3Neck(nn.Module):
    """Process the backbone's levels coarsest first: a DetectionBlock on the coarsest; then per finer level
    a 1×1 conv of the previous output, ×2 nearest upsampling, concatenation with that level and a
    DetectionBlock.

    Args:
        num_scales: number of levels.
        in_channels: channels of the levels, **coarsest first** (``[1024, 512, 256]``), while the
            backbone returns them finest first, as MMDetection's YOLOV3Neck expects.
        out_channels: output channels per level, coarsest first.
        norm_cfg, act_cfg: BN and LeakyReLU(0.1) by default.

    Returns the outputs coarsest first (stride 32, 16, 8), the order YOLOV3Head takes.
    """

    #: ``in_channels`` lists the backbone's levels coarsest first (read by the detector's channel check)
    in_channels_order = "coarsest_first"

    def __init__(
        self,
        num_scales: int,
        in_channels: Sequence[int],
        out_channels: Sequence[int],
        conv_cfg: Mapping[str, Any] | None = None,
        norm_cfg: Mapping[str, Any] | None = None,
        act_cfg: Mapping[str, Any] | None = None,
        init_cfg: Any = None,
    ) -> None:
        super().__init__()
        refuse_init_cfg(init_cfg, "YOLOV3Neck")
        if conv_cfg is not None:
            raise ValueError(f"YOLOV3Neck conv_cfg={conv_cfg!r}: only plain convs are supported.")
        if not num_scales == len(in_channels) == len(out_channels):
            raise ValueError(
                f"YOLOV3Neck: num_scales={num_scales}, in_channels={list(in_channels)} and out_channels="
                f"{list(out_channels)} must have the same length."
            )
        norm_cfg = dict(norm_cfg) if norm_cfg is not None else dict(type="BN", requires_grad=True)
        slope = leaky_slope(act_cfg, "YOLOV3Neck")
        self.num_scales = num_scales
        self.in_channels = list(in_channels)
        self.out_channels = list(out_channels)
        self.detect1 = DetectionBlock(in_channels[0], out_channels[0], norm_cfg, slope)
        for i in range(1, num_scales):
            cin, cout = in_channels[i], out_channels[i]
            self.add_module(
                f"conv{i}",
                conv_bn_leaky(out_channels[i - 1], cout, 1, norm_cfg=norm_cfg, negative_slope=slope),
            )
            self.add_module(f"detect{i + 1}", DetectionBlock(cin + cout, cout, norm_cfg, slope))

    def forward(self, feats: Sequence[torch.Tensor]) -> tuple[torch.Tensor, ...]:
        """``feats`` finest first (as backbones return them); outputs coarsest first."""
        if len(feats) != self.num_scales:
            raise ValueError(f"YOLOV3Neck expects {self.num_scales} feature maps, got {len(feats)}.")
        out = self.detect1(feats[-1])
        outs = [out]
        for i, x in enumerate(reversed(feats[:-1])):
            tmp = F.interpolate(getattr(self, f"conv{i + 1}")(out), scale_factor=2)
            out = getattr(self, f"detect{i + 2}")(torch.cat((tmp, x), 1))
            outs.append(out)
        return tuple(outs)
