"""Feature Pyramid Network (Lin et al. 2017) with MMDetection's extra-level options."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from kiln.registry import MODELS

from ..layers import ConvNormAct
from ..legacy_names import rename_on_load, renumber
from ..utils import refuse_init_cfg

__all__ = ["FPN"]

_EXTRA_MODES = ("on_input", "on_lateral", "on_output")


@MODELS.register_module()
class FPN(nn.Module):
    """Top-down feature pyramid over backbone levels ``start_level..end_level``, plus extra levels.

    Args:
        in_channels: channels of each backbone output (all of them, finest first).
        out_channels: channels of every pyramid level.
        num_outs: number of output levels; levels beyond the used backbone levels are "extra".
        start_level, end_level: which backbone outputs to use (``end_level=-1``: up to the last).
        add_extra_convs: how extra levels are made. ``False``: stride-2 max-pool of the last output
            (Faster R-CNN's P6). ``'on_input'`` / ``'on_lateral'`` / ``'on_output'``: a stride-2 3×3 conv
            on the last used backbone feature / lateral / FPN output (RetinaNet's P6, P7 chain further
            extra levels on the previous one). ``True`` means ``'on_input'`` (MMDetection v1 configs).
        relu_before_extra_convs: ReLU before each extra conv after the first.
        no_norm_on_lateral: lateral 1×1 convs without norm even when ``norm_cfg`` is set.
        norm_cfg: optional norm for the convs (e.g. GN).
        upsample_cfg: ``F.interpolate`` arguments for the top-down path (default nearest ×2 to size).
    """

    def __init__(
        self,
        in_channels: Sequence[int],
        out_channels: int,
        num_outs: int,
        start_level: int = 0,
        end_level: int = -1,
        add_extra_convs: bool | str = False,
        relu_before_extra_convs: bool = False,
        no_norm_on_lateral: bool = False,
        norm_cfg: Mapping[str, Any] | None = None,
        upsample_cfg: Mapping[str, Any] | None = None,
        init_cfg: Any = None,
        conv_cfg: Mapping[str, Any] | None = None,
        act_cfg: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__()
        refuse_init_cfg(init_cfg, type(self).__name__)
        for key, value in (("conv_cfg", conv_cfg), ("act_cfg", act_cfg)):
            if value is not None:
                raise NotImplementedError(
                    f"model.neck (FPN): {key}={value!r} is not supported: kiln's FPN uses plain convs "
                    "without activation (MMDetection's defaults conv_cfg=None, act_cfg=None); remove "
                    f"{key} to build this model."
                )
        in_channels = list(in_channels)
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.num_ins = len(in_channels)
        self.num_outs = num_outs
        self.relu_before_extra_convs = relu_before_extra_convs
        self.upsample_cfg = dict(upsample_cfg) if upsample_cfg else dict(mode="nearest")
        if end_level == -1 or end_level == self.num_ins - 1:
            self.backbone_end_level = self.num_ins
            if num_outs < self.num_ins - start_level:
                raise ValueError(
                    f"FPN num_outs={num_outs} is smaller than the {self.num_ins - start_level} used "
                    f"input levels (in_channels={in_channels}, start_level={start_level})."
                )
        else:
            # end_level is inclusive here (as in MMDetection v2.x+ configs).
            self.backbone_end_level = end_level + 1
            if not 0 <= end_level < self.num_ins or num_outs != end_level - start_level + 1:
                raise ValueError(
                    f"FPN end_level={end_level} needs num_outs == end_level - start_level + 1 "
                    f"(got num_outs={num_outs}, start_level={start_level})."
                )
        if not 0 <= start_level < self.backbone_end_level:
            raise ValueError(f"FPN start_level={start_level} out of range for in_channels={in_channels}.")
        self.start_level = start_level
        self.end_level = end_level
        if add_extra_convs is True:
            add_extra_convs = "on_input"
        if add_extra_convs not in (False, *_EXTRA_MODES):
            raise ValueError(
                f"FPN add_extra_convs={add_extra_convs!r}: expected False, True or one of {_EXTRA_MODES}."
            )
        self.add_extra_convs = add_extra_convs

        lateral_norm = None if no_norm_on_lateral else norm_cfg
        self.lateral_convs = nn.ModuleList(
            ConvNormAct(in_channels[i], out_channels, 1, norm_cfg=lateral_norm, act=False)
            for i in range(start_level, self.backbone_end_level)
        )
        self.fpn_convs = nn.ModuleList(
            ConvNormAct(out_channels, out_channels, 3, padding=1, norm_cfg=norm_cfg, act=False)
            for _ in range(start_level, self.backbone_end_level)
        )
        # Extra-level convs follow the per-level output convs in `fpn_convs` (MMDetection's names:
        # RetinaNet's P6/P7 convs are fpn_convs.3/4), so MMDetection checkpoints load strictly.
        self.num_used_levels = self.backbone_end_level - start_level
        num_extra = num_outs - self.num_used_levels
        if add_extra_convs and num_extra > 0:
            for i in range(num_extra):
                cin = (
                    in_channels[self.backbone_end_level - 1]
                    if (i == 0 and add_extra_convs == "on_input")
                    else out_channels
                )
                self.fpn_convs.append(
                    ConvNormAct(cin, out_channels, 3, stride=2, padding=1, norm_cfg=norm_cfg, act=False)
                )
        # kiln checkpoints before the renaming kept them in `extra_convs.<i>`.
        rename_on_load(self, self._legacy_names)
        self.init_weights()

    def _legacy_names(self, keys: list[str]) -> dict[str, str]:
        n = self.num_used_levels
        return renumber(keys, "extra_convs", lambda i, rest: f"fpn_convs.{n + i}.{rest}")

    @property
    def extra_convs(self) -> nn.ModuleList:
        """The extra-level convs (the tail of ``fpn_convs``; empty when extra levels are max-pooled)."""
        return self.fpn_convs[self.num_used_levels :]

    def init_weights(self) -> None:
        """Xavier-uniform convs (MMDetection's FPN init)."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.xavier_uniform_(m.weight)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def output_strides(self, in_strides: Sequence[int]) -> list[int]:
        """Strides of the outputs given the backbone strides (extra levels double each time)."""
        strides = list(in_strides[self.start_level : self.backbone_end_level])
        while len(strides) < self.num_outs:
            strides.append(strides[-1] * 2)
        return strides

    def forward(self, inputs: Sequence[torch.Tensor]) -> tuple[torch.Tensor, ...]:
        """Return ``num_outs`` feature maps, finest first."""
        if len(inputs) != self.num_ins:
            raise ValueError(
                f"FPN got {len(inputs)} feature maps but in_channels has {self.num_ins} entries "
                f"({self.in_channels}); make backbone out_indices match neck in_channels."
            )
        laterals = [conv(inputs[i + self.start_level]) for i, conv in enumerate(self.lateral_convs)]
        for i in range(len(laterals) - 1, 0, -1):
            up = F.interpolate(laterals[i], size=laterals[i - 1].shape[-2:], **self.upsample_cfg)
            laterals[i - 1] = laterals[i - 1] + up
        outs = [conv(lat) for conv, lat in zip(self.fpn_convs[: self.num_used_levels], laterals)]
        if self.num_outs > len(outs):
            if not self.add_extra_convs:
                while len(outs) < self.num_outs:
                    outs.append(F.max_pool2d(outs[-1], 1, stride=2))
            else:
                if self.add_extra_convs == "on_input":
                    src = inputs[self.backbone_end_level - 1]
                elif self.add_extra_convs == "on_lateral":
                    src = laterals[-1]
                else:
                    src = outs[-1]
                outs.append(self.extra_convs[0](src))
                for conv in self.extra_convs[1:]:
                    x = F.relu(outs[-1]) if self.relu_before_extra_convs else outs[-1]
                    outs.append(conv(x))
        return tuple(outs)
