"""``SSDNeck``: SSD's L2-normalised conv4_3 and its extra feature layers (conv8_2 ... conv11_2)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn as nn

from kiln.registry import MODELS

from ..layers import ConvNormAct
from ..utils import refuse_init_cfg

__all__ = ["L2Norm", "SSDNeck"]


class L2Norm(nn.Module):
    """Scale each location's feature vector to unit L2 norm, then by a learned per-channel weight.

    SSD applies it to conv4_3, whose activations are much larger than the deeper layers'; the weight
    starts at ``scale`` (20).
    """

    def __init__(self, n_dims: int, scale: float = 20.0, eps: float = 1e-10) -> None:
        super().__init__()
        self.n_dims = n_dims
        self.scale = float(scale)
        self.eps = eps
        self.weight = nn.Parameter(torch.full((n_dims,), self.scale))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``weight · x / (‖x‖₂ + eps)`` over channels, computed in float32."""
        xf = x.float()
        norm = xf.pow(2).sum(1, keepdim=True).sqrt() + self.eps
        return (self.weight[None, :, None, None].float() * xf / norm).type_as(x)


@MODELS.register_module()
class SSDNeck(nn.Module):
    """Pass the backbone's outputs through (the first L2-normalised) and append extra levels.

    Each extra level is a 1×1 conv to half its channels and a ``k×k`` conv (``k=3``, the last level
    ``last_kernel_size``) with the level's stride and padding, each followed by the activation: SSD300's
    ``out_channels=(512, 1024, 512, 256, 256, 256)`` with strides ``(2, 2, 1, 1)`` and paddings
    ``(1, 1, 0, 0)`` give 38, 19, 10, 5, 3, 1 px maps from a 300 px input.

    Args:
        in_channels: the backbone outputs' channels (must equal the start of ``out_channels``).
        out_channels: every output level's channels.
        level_strides, level_paddings: of each extra level's second conv.
        l2_norm_scale: initial L2Norm weight on the first input (``None``/0: no L2Norm).
        last_kernel_size: kernel of the last extra level's second conv (SSD512: 4).
        norm_cfg: optional norm after each conv (default none, as SSD).
        act_cfg: ``dict(type='ReLU')`` (the only activation supported).
        use_depthwise, conv_cfg: refused unless default (SSDLite's depthwise convs are not implemented).
    """

    def __init__(
        self,
        in_channels: Sequence[int],
        out_channels: Sequence[int],
        level_strides: Sequence[int],
        level_paddings: Sequence[int],
        l2_norm_scale: float | None = 20.0,
        last_kernel_size: int = 3,
        use_depthwise: bool = False,
        conv_cfg: Mapping[str, Any] | None = None,
        norm_cfg: Mapping[str, Any] | None = None,
        act_cfg: Mapping[str, Any] | None = None,
        init_cfg: Any = None,
    ) -> None:
        super().__init__()
        refuse_init_cfg(init_cfg, "SSDNeck")
        if use_depthwise or conv_cfg is not None:
            raise ValueError(
                "SSDNeck(use_depthwise=True or conv_cfg=...): depthwise-separable convs (SSDLite) are not "
                "implemented in kiln; use the SSD300/SSD512 neck."
            )
        if act_cfg is not None and dict(act_cfg) != {"type": "ReLU"}:
            raise ValueError(f"SSDNeck act_cfg={dict(act_cfg)!r}: only dict(type='ReLU') is supported.")
        in_channels, out_channels = list(in_channels), list(out_channels)
        n_extra = len(out_channels) - len(in_channels)
        if n_extra < 1 or out_channels[: len(in_channels)] != in_channels:
            raise ValueError(
                f"SSDNeck: out_channels={out_channels} must start with in_channels={in_channels} and add at "
                "least one extra level."
            )
        if not len(level_strides) == len(level_paddings) == n_extra:
            raise ValueError(
                f"SSDNeck: {n_extra} extra levels need as many level_strides ({list(level_strides)}) and "
                f"level_paddings ({list(level_paddings)})."
            )
        self.l2_norm = L2Norm(in_channels[0], l2_norm_scale) if l2_norm_scale else None
        self.extra_layers = nn.ModuleList()
        for i, (cout, stride, pad) in enumerate(
            zip(out_channels[len(in_channels) :], level_strides, level_paddings)
        ):
            cin = out_channels[len(in_channels) - 1 + i]
            k = last_kernel_size if i == n_extra - 1 else 3
            self.extra_layers.append(
                nn.Sequential(
                    ConvNormAct(cin, cout // 2, 1, norm_cfg=norm_cfg),
                    ConvNormAct(cout // 2, cout, k, stride=stride, padding=pad, norm_cfg=norm_cfg),
                )
            )
        self.init_weights()

    def init_weights(self) -> None:
        """Xavier-uniform convs with zero bias (MMDetection's default); L2Norm weight back to its scale."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.xavier_uniform_(m.weight)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.modules.batchnorm._BatchNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        if self.l2_norm is not None:
            nn.init.constant_(self.l2_norm.weight, self.l2_norm.scale)

    def forward(self, inputs: Sequence[torch.Tensor]) -> tuple[torch.Tensor, ...]:
        """The inputs (first one L2-normalised) followed by the extra levels."""
        outs = list(inputs)
        if self.l2_norm is not None:
            outs[0] = self.l2_norm(outs[0])
        x = outs[-1]
        for i, layer in enumerate(self.extra_layers):
            conv = layer[1].conv
            need = conv.kernel_size[0] - 2 * conv.padding[0]
            if min(x.shape[-2:]) < need:
                raise ValueError(
                    f"SSDNeck: extra level {i} gets a {tuple(x.shape[-2:])} map but its "
                    f"{conv.kernel_size[0]}×{conv.kernel_size[0]} conv needs at least {need}×{need}: SSD is "
                    "built for one input size "
                    "(SSD300: 300×300 images). Resize inputs to the anchor generator's input_size "
                    "(Resize scale=(300, 300), keep_ratio=False)."
                )
            x = layer(x)
            outs.append(x)
        return tuple(outs)
