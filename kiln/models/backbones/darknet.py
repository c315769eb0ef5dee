"""``Darknet``: YOLOv3's Darknet-53 backbone (Redmon & Farhadi 2018), with MMDetection's module names."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn as nn

from kiln.registry import MODELS
from kiln.structures import ShapeSpec

from ..layers import ConvNormAct
from .base import Backbone
from .pretrained import pretrained_from_init_cfg
from .pretrained_loading import load_named_pretrained, mark_pretrained_loaded

__all__ = ["Darknet", "conv_bn_leaky"]


def conv_bn_leaky(
    in_channels: int,
    out_channels: int,
    kernel_size: int,
    stride: int = 1,
    norm_cfg: Mapping[str, Any] | None = None,
    negative_slope: float = 0.1,
) -> ConvNormAct:
    """MMCV's ``ConvModule`` with a LeakyReLU: YOLOv3's conv unit (``conv`` + ``bn``, "same" padding)."""
    m = ConvNormAct(
        in_channels, out_channels, kernel_size, stride, padding=kernel_size // 2, norm_cfg=norm_cfg, act=False
    )
    m.act = nn.LeakyReLU(negative_slope, inplace=True)
    # MMCV ConvModule's initialisation for a leaky ReLU: Kaiming-normal (fan_out) with its slope.
    nn.init.kaiming_normal_(m.conv.weight, a=negative_slope, mode="fan_out", nonlinearity="leaky_relu")
    return m


def leaky_slope(act_cfg: Mapping[str, Any] | None, owner: str) -> float:
    """The LeakyReLU slope of an MMCV ``act_cfg``; other activations are refused."""
    if act_cfg is None:
        return 0.1
    if act_cfg.get("type") != "LeakyReLU" or set(act_cfg) - {"type", "negative_slope", "inplace"}:
        raise ValueError(
            f"{owner} act_cfg={dict(act_cfg)!r}: kiln's YOLOv3 parts use LeakyReLU only; give "
            "act_cfg=dict(type='LeakyReLU', negative_slope=0.1) or leave it out."
        )
    return float(act_cfg.get("negative_slope", 0.01))


class ResBlock(nn.Module):
    """Darknet's residual unit: 1×1 conv to half the channels, 3×3 conv back, plus the input."""

    def __init__(self, channels: int, norm_cfg: Mapping[str, Any] | None, slope: float) -> None:
        super().__init__()
        self.conv1 = conv_bn_leaky(channels, channels // 2, 1, norm_cfg=norm_cfg, negative_slope=slope)
        self.conv2 = conv_bn_leaky(channels // 2, channels, 3, norm_cfg=norm_cfg, negative_slope=slope)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x + conv2(conv1(x))``."""
        return x + self.conv2(self.conv1(x))


@MODELS.register_module()
class Darknet(Backbone):
    """Darknet-53: a 3×3 stem and five stride-2 stages of 1, 2, 8, 8, 4 residual blocks.

    Args:
        depth: 53 (the only published depth).
        out_indices: which of ``conv1`` (0) and the stages ``conv_res_block1..5`` (1..5) to return;
            YOLOv3 takes ``(3, 4, 5)``: strides 8, 16, 32 with 256, 512, 1024 channels.
        frozen_stages: ``-1`` or ``0`` freezes nothing; ``k`` freezes the first ``k`` blocks of
            ``conv1, conv_res_block1, ...`` (MMDetection's count).
        norm_cfg, act_cfg: MMCV configs (BN and LeakyReLU(0.1) by default).
        norm_eval: keep batch-norm statistics frozen while training (MMDetection's default: True).
        widen_factor: multiplies every channel count; 1.0 is Darknet-53 (a kiln option for small CPU
            models; checkpoints fit only at 1.0).
        pretrained / init_cfg: backbone weights (``dict(type='Pretrained', checkpoint=...)``), loaded by
            :meth:`init_weights` when training starts.

    Example::

        >>> m = Darknet(widen_factor=0.125)
        >>> [f.shape[1] for f in m(torch.zeros(1, 3, 64, 64))]
        [32, 64, 128]
    """

    arch_settings = {53: ((1, 2, 8, 8, 4), ((32, 64), (64, 128), (128, 256), (256, 512), (512, 1024)))}

    def __init__(
        self,
        depth: int = 53,
        out_indices: Sequence[int] = (3, 4, 5),
        frozen_stages: int = -1,
        conv_cfg: Mapping[str, Any] | None = None,
        norm_cfg: Mapping[str, Any] | None = None,
        act_cfg: Mapping[str, Any] | None = None,
        norm_eval: bool = True,
        pretrained: str | None = None,
        init_cfg: Mapping[str, Any] | None = None,
        widen_factor: float = 1.0,
    ) -> None:
        super().__init__()
        if depth not in self.arch_settings:
            raise KeyError(f"Darknet depth={depth!r}: only {sorted(self.arch_settings)} is defined.")
        if conv_cfg is not None:
            raise ValueError(
                f"Darknet conv_cfg={conv_cfg!r}: only plain convs are supported (conv_cfg=None)."
            )
        if not out_indices or min(out_indices) < 0 or max(out_indices) > 5:
            raise ValueError(f"Darknet out_indices={tuple(out_indices)} must lie in [0, 5].")
        if not -1 <= frozen_stages <= 5:
            raise ValueError(f"Darknet frozen_stages={frozen_stages} must be in [-1, 5].")
        self.pretrained = pretrained_from_init_cfg(init_cfg, pretrained, "Darknet")
        self.pretrained_prefix = init_cfg.get("prefix") if init_cfg is not None else None
        self.pretrained_loaded = False
        self.register_load_state_dict_post_hook(mark_pretrained_loaded)
        norm_cfg = dict(norm_cfg) if norm_cfg is not None else dict(type="BN", requires_grad=True)
        slope = leaky_slope(act_cfg, "Darknet")
        self.out_indices = tuple(out_indices)
        self.frozen_stages = frozen_stages
        self.norm_eval = norm_eval

        def width(c: int) -> int:
            return max(int(round(c * widen_factor)), 2)

        layers, channels = self.arch_settings[depth]
        self.slope = slope
        self.conv1 = conv_bn_leaky(3, width(32), 3, norm_cfg=norm_cfg, negative_slope=slope)
        self.cr_blocks = ["conv1"]
        self._channels = [width(32)]
        for i, (n, (cin, cout)) in enumerate(zip(layers, channels)):
            stage = nn.Sequential()
            stage.add_module("conv", conv_bn_leaky(width(cin), width(cout), 3, 2, norm_cfg, slope))
            for j in range(n):
                stage.add_module(f"res{j}", ResBlock(width(cout), norm_cfg, slope))
            name = f"conv_res_block{i + 1}"
            self.add_module(name, stage)
            self.cr_blocks.append(name)
            self._channels.append(width(cout))
        self._random_init()
        self._freeze_stages()

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """The outputs of the blocks in ``out_indices``, finest first."""
        outs = []
        for i, name in enumerate(self.cr_blocks):
            x = getattr(self, name)(x)
            if i in self.out_indices:
                outs.append(x)
        return tuple(outs)

    def output_shape(self) -> dict[str, ShapeSpec]:
        """``{'dark3': ShapeSpec(256, 8), ...}`` for the blocks in ``out_indices``."""
        return {f"dark{i}": ShapeSpec(channels=self._channels[i], stride=2**i) for i in self.out_indices}

    @property
    def size_divisibility(self) -> int:
        """The largest output stride."""
        return 2 ** max(self.out_indices)

    def _random_init(self) -> None:
        # MMCV ConvModule's default: Kaiming-normal convs, unit/zero batch norms.
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, a=self.slope, mode="fan_out", nonlinearity="leaky_relu")
            elif isinstance(m, nn.modules.batchnorm._BatchNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def init_weights(self, pretrained: str | None = None) -> None:
        """Random initialisation, then ``pretrained`` (argument or constructor value) if given."""
        self._random_init()
        pretrained = pretrained if pretrained is not None else self.pretrained
        if pretrained:
            self.pretrained = pretrained
            load_named_pretrained(self, pretrained, self.pretrained_prefix, "Darknet")
        self.pretrained_loaded = True
        self._freeze_stages()

    def _freeze_stages(self) -> None:
        for name in self.cr_blocks[: max(self.frozen_stages, 0)]:
            m = getattr(self, name)
            m.eval()
            for p in m.parameters():
                p.requires_grad_(False)

    def train(self, mode: bool = True) -> Darknet:
        """Train mode, keeping frozen stages and (with ``norm_eval``) batch norms in eval mode."""
        super().train(mode)
        self._freeze_stages()
        if mode and self.norm_eval:
            for m in self.modules():
                if isinstance(m, nn.modules.batchnorm._BatchNorm):
                    m.eval()
        return self
