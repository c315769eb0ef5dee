"""The Gradient Decoupled Layer of DeFRCN: identity forward, gradient scaled by λ backward, then a
learnable per-channel affine map.

DeFRCN puts one between the shared backbone and each of the RPN and the R-CNN head: λ = 0 stops the
RPN's gradient from reaching the backbone, a small λ (0.75 base, 0.001 fine-tune) damps the R-CNN's,
and the affine layer lets each head re-weight the shared features for itself.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

__all__ = ["GradientDecoupleLayer", "AffineLayer", "decouple_layer"]


class GradientDecoupleLayer(torch.autograd.Function):
    """``y = x``; ``dL/dx = scale * dL/dy`` (a scale of 0 blocks the gradient, 1 is a plain identity)."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, scale: float) -> torch.Tensor:  # type: ignore[override]
        ctx.scale = float(scale)
        return x.view_as(x)

    @staticmethod
    def backward(ctx: Any, grad_output: torch.Tensor) -> tuple[torch.Tensor, None]:  # type: ignore[override]
        return grad_output * ctx.scale, None


def decouple_layer(x: torch.Tensor, scale: float) -> torch.Tensor:
    """Apply :class:`GradientDecoupleLayer` to ``x`` with backward scale ``scale``."""
    return GradientDecoupleLayer.apply(x, scale)


class AffineLayer(nn.Module):
    """``y = x * w + b`` per channel of an N×C×H×W map; ``w`` starts at 1 and ``b`` at 0 (an identity).

    Parameter names and shapes (``weight``/``bias`` of shape 1×C×1×1) are DeFRCN's, so its checkpoints'
    ``affine_rpn.*``/``affine_rcnn.*`` entries load as they are.
    """

    def __init__(self, num_channels: int, bias: bool = True) -> None:
        super().__init__()
        if int(num_channels) < 1:
            raise ValueError(f"AffineLayer: num_channels must be >= 1, got {num_channels}")
        self.weight = nn.Parameter(torch.ones(1, int(num_channels), 1, 1))
        self.bias = nn.Parameter(torch.zeros(1, int(num_channels), 1, 1)) if bias else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1] != self.weight.shape[1]:
            raise ValueError(f"AffineLayer({self.weight.shape[1]}) got a map of shape {tuple(x.shape)}; "
                             f"expected N×{self.weight.shape[1]}×H×W (set the layer's channels to the "
                             f"feature maps' channel count)")
        out = x * self.weight
        return out + self.bias if self.bias is not None else out
