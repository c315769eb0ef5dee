"""Small building blocks shared by backbones, necks and heads: norm layers from config, conv+norm+act.

``norm_cfg`` follows MMCV: ``dict(type='BN'|'SyncBN'|'GN'|'FrozenBN', requires_grad=True, ...)``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn as nn
from torchvision.ops.misc import FrozenBatchNorm2d

from .legacy_names import rename_on_load

__all__ = ["FrozenBatchNorm2d", "build_norm_layer", "ConvNormAct", "NORM_TYPES", "is_norm", "norm_abbr"]

NORM_TYPES = ("BN", "BN2d", "SyncBN", "GN", "FrozenBN", "LN", "MMSyncBN")


def build_norm_layer(cfg: Mapping[str, Any] | None, num_features: int) -> nn.Module | None:
    """Build a 2d normalization layer from ``cfg`` (``None`` → no layer).

    ``requires_grad=False`` freezes the affine parameters (MMCV semantics). ``GN`` needs
    ``num_groups``. Extra keys (``eps``, ``momentum``) go to the layer.
    """
    if cfg is None:
        return None
    if not isinstance(cfg, Mapping) or "type" not in cfg:
        raise TypeError(f"norm_cfg must be a dict with a 'type' key (one of {NORM_TYPES}), got {cfg!r}.")
    args = dict(cfg)
    norm_type = args.pop("type")
    requires_grad = args.pop("requires_grad", True)
    if norm_type in ("BN", "BN2d"):
        layer: nn.Module = nn.BatchNorm2d(num_features, **args)
    elif norm_type in ("SyncBN", "MMSyncBN"):
        # MMSyncBN is MMCV's own implementation of the same synchronised batch norm.
        # Falls back to plain batch norm when not running distributed (e.g. on one CPU process).
        layer = nn.SyncBatchNorm(num_features, **args)
    elif norm_type == "GN":
        if "num_groups" not in args:
            raise KeyError(
                f"norm_cfg {dict(cfg)!r}: GN needs num_groups, e.g. dict(type='GN', num_groups=32)."
            )
        num_groups = args.pop("num_groups")
        if num_features % num_groups:
            raise ValueError(
                f"norm_cfg {dict(cfg)!r}: {num_features} channels are not divisible into "
                f"{num_groups} groups; "
                "choose num_groups dividing every channel count (e.g. 16 or 32)."
            )
        layer = nn.GroupNorm(num_groups, num_features, **args)
    elif norm_type == "FrozenBN":
        layer = FrozenBatchNorm2d(num_features, **args)
    else:
        raise KeyError(f"norm_cfg type {norm_type!r} is not supported; expected one of {NORM_TYPES}.")
    for p in layer.parameters():
        p.requires_grad_(requires_grad)
    return layer


def is_norm(module: nn.Module) -> bool:
    """Whether ``module`` is a normalization layer (batch/group/frozen norm)."""
    return isinstance(module, (nn.modules.batchnorm._BatchNorm, nn.GroupNorm, FrozenBatchNorm2d))


def norm_abbr(cfg: Mapping[str, Any] | None) -> str:
    """MMCV's short name of a norm layer (``bn``, ``gn``, ``ln``): the attribute name its modules use."""
    norm_type = cfg.get("type") if cfg is not None else None
    return {"GN": "gn", "LN": "ln"}.get(norm_type, "bn")


class ConvNormAct(nn.Module):
    """``conv → (norm) → (ReLU)``; the conv has a bias only when there is no norm layer.

    Submodules are named as in MMCV's ``ConvModule`` (``conv``, and ``bn`` / ``gn`` after the norm
    type), so MMDetection checkpoints load strictly; :attr:`norm` is the norm layer whatever its name.
    kiln checkpoints from before that renaming (``norm.*``) are mapped on load.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int = 1,
        padding: int = 0,
        dilation: int = 1,
        norm_cfg: Mapping[str, Any] | None = None,
        act: bool = True,
        bias: bool | str = "auto",
    ) -> None:
        super().__init__()
        if bias == "auto":
            bias = norm_cfg is None
        self.conv = nn.Conv2d(
            in_channels, out_channels, kernel_size, stride, padding, dilation, bias=bool(bias)
        )
        self.norm_name = norm_abbr(norm_cfg)
        norm = build_norm_layer(norm_cfg, out_channels)
        if norm is not None:
            self.add_module(self.norm_name, norm)
            # kiln checkpoints before the renaming called every ConvNormAct norm layer `norm`.
            name = self.norm_name
            rename_on_load(self, lambda keys: {k: f"{name}.{k[5:]}" for k in keys if k.startswith("norm.")})
        self.act = nn.ReLU(inplace=True) if act else None

    @property
    def norm(self) -> nn.Module | None:
        """The norm layer (``None`` without ``norm_cfg``)."""
        return self._modules.get(self.norm_name)


    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply conv, norm and activation."""
        x = self.conv(x)
        if self.norm is not None:
            x = self.norm(x)
        if self.act is not None:
            x = self.act(x)
        return x


