"""ResNet 18–152 backbone with MMDetection's options (norm_cfg, style, frozen_stages, norm_eval, ...).

Parameter names follow MMDetection, which equal torchvision's for batch norm (``conv1``, ``bn1``,
``layer1.0.conv1``, ``downsample.0``), so torchvision ImageNet and MMDetection checkpoints load without
renaming; GroupNorm layers are ``gn1``... as in MMDetection.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn as nn
import torch.utils.checkpoint as cp

from kiln.registry import MODELS
from kiln.structures import ShapeSpec

from ..layers import build_norm_layer, is_norm, norm_abbr
from ..legacy_names import rename_on_load
from .base import Backbone
from .pretrained import (
    convert_resnet_state_dict,
    load_checkpoint_state_dict,
    pretrained_from_init_cfg,
    resolve_pretrained,
    select_prefix,
)

__all__ = ["BasicBlock", "Bottleneck", "ResNet", "ResNeXt", "make_res_layer", "refuse_unsupported"]

logger = logging.getLogger(__name__)


def _conv(cin: int, cout: int, k: int, stride: int = 1, dilation: int = 1, groups: int = 1) -> nn.Conv2d:
    pad = dilation * (k - 1) // 2
    return nn.Conv2d(cin, cout, k, stride=stride, padding=pad, dilation=dilation, groups=groups, bias=False)


def _add_norms(module: nn.Module, norm_cfg: Mapping[str, Any] | None, *channels: int) -> None:
    """Add norm layers 1..n named as MMDetection does (``bn1``, or ``gn1`` for GroupNorm), readable as
    ``module.norm1``...; kiln checkpoints from before (always ``bnK``) are renamed on load."""
    abbr = norm_abbr(norm_cfg)
    module.norm_names = [f"{abbr}{i}" for i in range(1, len(channels) + 1)]
    for name, c in zip(module.norm_names, channels):
        module.add_module(name, build_norm_layer(norm_cfg, c))
    if abbr != "bn":
        rename_on_load(module, lambda keys: {
            k: f"{abbr}{k[2:]}" for k in keys if re.match(r"^bn\d\.", k)
        })


class _NormAccess:
    """``norm1``/``norm2``/``norm3``: the block's norm layers whatever their MMDetection name."""

    @property
    def norm1(self) -> nn.Module:
        return getattr(self, self.norm_names[0])

    @property
    def norm2(self) -> nn.Module:
        return getattr(self, self.norm_names[1])

    @property
    def norm3(self) -> nn.Module:
        return getattr(self, self.norm_names[2])


# What kiln's ResNet cannot build, and why: named in the refusal so a user knows it is a missing
# feature, not a typo (MMDetection's DCN/plugins need custom CUDA ops or extra modules).
_UNSUPPORTED = {
    "dcn": "deformable convolution (DCN) is not implemented",
    "stage_with_dcn": "deformable convolution (DCN) is not implemented",
    "plugins": "block plugins (GeneralizedAttention, ContextBlock/GCB, NonLocal2d...) are not implemented",
    "conv_cfg": "only plain convolutions are implemented (no ConvWS / weight standardisation)",
    "deep_stem": "the deep (3×conv) stem of ResNetV1c/V1d is not implemented",
    "avg_down": "average-pool downsampling (ResNetV1d) is not implemented",
    "contract_dilation": "contracted dilation is not implemented",
}


def refuse_unsupported(owner: str, **values: Any) -> None:
    """Raise a clear error for a backbone option kiln cannot honour (any value other than the default)."""
    for key, value in values.items():
        if value not in (None, False):
            raise NotImplementedError(
                f"model.backbone ({owner}): {key}={value!r} is not supported: {_UNSUPPORTED[key]}. "
                f"kiln's {owner} implements depth, groups/base_width (ResNeXt), strides, dilations, "
                "style, norm_cfg, frozen_stages, norm_eval, with_cp and pretrained/init_cfg; remove "
                f"{key} (or set it to its default) to build this model."
            )


def _mark_loaded(module: nn.Module, incompatible: Any) -> None:
    # A full state dict loaded over the backbone (checkpoint, resume) supersedes `pretrained`.
    module.pretrained_loaded = True


def make_res_layer(
    block: type,
    inplanes: int,
    planes: int,
    num_blocks: int,
    stride: int = 1,
    dilation: int = 1,
    style: str = "pytorch",
    norm_cfg: Mapping[str, Any] | None = None,
    with_cp: bool = False,
    **block_kwargs: Any,
) -> nn.Sequential:
    """One ResNet stage: ``num_blocks`` residual blocks, the first one striding (and projecting the
    identity with a 1×1 conv + norm, MMDetection's ``downsample.0``/``downsample.1``).

    Shared by :class:`ResNet` and the C4 ``ResLayer`` shared head, so a stage and the res5 head built
    from it have the same parameter names and the same arithmetic.
    """
    downsample = None
    if stride != 1 or inplanes != planes * block.expansion:
        downsample = nn.Sequential(
            nn.Conv2d(inplanes, planes * block.expansion, 1, stride=stride, bias=False),
            build_norm_layer(norm_cfg, planes * block.expansion),
        )
    layers = [block(inplanes, planes, stride, dilation, downsample, style, norm_cfg, with_cp, **block_kwargs)]
    for _ in range(1, num_blocks):
        layers.append(
            block(planes * block.expansion, planes, 1, dilation, None, style, norm_cfg, with_cp,
                  **block_kwargs)
        )
    return nn.Sequential(*layers)


class BasicBlock(_NormAccess, nn.Module):
    """Two 3×3 convs with a residual connection (ResNet-18/34)."""

    expansion = 1

    def __init__(
        self,
        inplanes: int,
        planes: int,
        stride: int = 1,
        dilation: int = 1,
        downsample: nn.Module | None = None,
        style: str = "pytorch",
        norm_cfg: Mapping[str, Any] | None = None,
        with_cp: bool = False,
    ) -> None:
        super().__init__()
        self.conv1 = _conv(inplanes, planes, 3, stride, dilation)
        self.conv2 = _conv(planes, planes, 3, 1, dilation)
        _add_norms(self, norm_cfg, planes, planes)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample
        self.with_cp = with_cp

    def _residual(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.norm1(self.conv1(x)))
        out = self.norm2(self.conv2(out))
        identity = x if self.downsample is None else self.downsample(x)
        return out + identity

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Residual block forward (optionally with activation checkpointing)."""
        if self.with_cp and x.requires_grad:
            out = cp.checkpoint(self._residual, x, use_reentrant=False)
        else:
            out = self._residual(x)
        return self.relu(out)

    @property
    def last_norm(self) -> nn.Module:
        """The norm layer zeroed by ``zero_init_residual``."""
        return self.norm2


class Bottleneck(_NormAccess, nn.Module):
    """1×1 → 3×3 → 1×1 bottleneck. ``style='pytorch'`` strides in the 3×3, ``'caffe'`` in the first 1×1."""

    expansion = 4

    def __init__(
        self,
        inplanes: int,
        planes: int,
        stride: int = 1,
        dilation: int = 1,
        downsample: nn.Module | None = None,
        style: str = "pytorch",
        norm_cfg: Mapping[str, Any] | None = None,
        with_cp: bool = False,
        groups: int = 1,
        base_width: int = 4,
        base_channels: int = 64,
    ) -> None:
        super().__init__()
        s1, s2 = (1, stride) if style == "pytorch" else (stride, 1)
        # ResNeXt: the 3×3 conv is grouped and `groups` times `base_width/base_channels` as wide.
        width = planes if groups == 1 else math.floor(planes * base_width / base_channels) * groups
        self.conv1 = _conv(inplanes, width, 1, s1)
        self.conv2 = _conv(width, width, 3, s2, dilation, groups)
        self.conv3 = _conv(width, planes * self.expansion, 1)
        _add_norms(self, norm_cfg, width, width, planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample
        self.with_cp = with_cp

    def _residual(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.norm1(self.conv1(x)))
        out = self.relu(self.norm2(self.conv2(out)))
        out = self.norm3(self.conv3(out))
        identity = x if self.downsample is None else self.downsample(x)
        return out + identity

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Residual block forward (optionally with activation checkpointing)."""
        if self.with_cp and x.requires_grad:
            out = cp.checkpoint(self._residual, x, use_reentrant=False)
        else:
            out = self._residual(x)
        return self.relu(out)

    @property
    def last_norm(self) -> nn.Module:
        """The norm layer zeroed by ``zero_init_residual``."""
        return self.norm3


@MODELS.register_module()
class ResNet(_NormAccess, Backbone):
    """ResNet backbone (He et al. 2016) returning the outputs of the stages in ``out_indices``.

    Args:
        depth: 18, 34, 50, 101 or 152.
        in_channels: input image channels.
        base_channels: width of the first stage (64 in the paper; smaller for fast tests).
        num_stages: how many of the 4 residual stages to build.
        strides, dilations: per stage.
        out_indices: which stages' outputs to return (0-based), e.g. ``(0, 1, 2, 3)`` → C2..C5.
        style: ``'pytorch'`` (stride on the 3×3 conv) or ``'caffe'`` (stride on the first 1×1).
        frozen_stages: ``-1`` freezes nothing, ``0`` the stem, ``k`` the stem and stages 1..k
            (parameters get ``requires_grad=False`` and their norm layers stay in eval mode).
        norm_cfg: ``dict(type='BN'|'SyncBN'|'GN'|'FrozenBN', requires_grad=True)``.
        norm_eval: keep batch-norm statistics frozen (eval mode) while training.
        with_cp: activation checkpointing in the residual blocks (less memory, more compute).
        zero_init_residual: zero the last norm's weight in each block (identity at start).
        pretrained: a local ``.pth`` file or ``'torchvision://resnet50'``-style name (see
            :func:`kiln.models.backbones.pretrained.resolve_pretrained`); loaded by :meth:`init_weights`.
        init_cfg: MM-style ``dict(type='Pretrained', checkpoint=...)`` (same as ``pretrained``).

    Example::

        >>> m = ResNet(depth=18, base_channels=16)
        >>> [f.shape[1] for f in m(torch.zeros(1, 3, 64, 64))]
        [16, 32, 64, 128]
    """

    arch_settings = {
        18: (BasicBlock, (2, 2, 2, 2)),
        34: (BasicBlock, (3, 4, 6, 3)),
        50: (Bottleneck, (3, 4, 6, 3)),
        101: (Bottleneck, (3, 4, 23, 3)),
        152: (Bottleneck, (3, 8, 36, 3)),
    }

    def __init__(
        self,
        depth: int = 50,
        in_channels: int = 3,
        base_channels: int = 64,
        stem_channels: int | None = None,
        num_stages: int = 4,
        strides: Sequence[int] = (1, 2, 2, 2),
        dilations: Sequence[int] = (1, 1, 1, 1),
        out_indices: Sequence[int] = (0, 1, 2, 3),
        style: str = "pytorch",
        frozen_stages: int = -1,
        norm_cfg: Mapping[str, Any] | None = None,
        norm_eval: bool = True,
        with_cp: bool = False,
        zero_init_residual: bool = True,
        pretrained: str | None = None,
        init_cfg: Mapping[str, Any] | None = None,
        dcn: Mapping[str, Any] | None = None,
        stage_with_dcn: Sequence[bool] = (False, False, False, False),
        plugins: Sequence[Mapping[str, Any]] | None = None,
        conv_cfg: Mapping[str, Any] | None = None,
        deep_stem: bool = False,
        avg_down: bool = False,
        contract_dilation: bool = False,
    ) -> None:
        super().__init__()
        refuse_unsupported(
            type(self).__name__,
            dcn=dcn,
            stage_with_dcn=any(stage_with_dcn),
            plugins=plugins,
            conv_cfg=conv_cfg,
            deep_stem=deep_stem,
            avg_down=avg_down,
            contract_dilation=contract_dilation and any(d > 1 for d in dilations),
        )
        self.base_channels = base_channels
        if depth not in self.arch_settings:
            raise KeyError(
                f"ResNet depth={depth!r} is not supported; choose one of {sorted(self.arch_settings)}."
            )
        if not 1 <= num_stages <= 4:
            raise ValueError(f"ResNet num_stages={num_stages} must be between 1 and 4.")
        if len(strides) < num_stages or len(dilations) < num_stages:
            raise ValueError(
                f"ResNet strides={tuple(strides)} and dilations={tuple(dilations)} need "
                f"num_stages={num_stages} entries."
            )
        if not out_indices or max(out_indices) >= num_stages or min(out_indices) < 0:
            raise ValueError(
                f"ResNet out_indices={tuple(out_indices)} must lie in [0, num_stages={num_stages})."
            )
        if style not in ("pytorch", "caffe"):
            raise ValueError(f"ResNet style={style!r}: expected 'pytorch' or 'caffe'.")
        if not -1 <= frozen_stages <= num_stages:
            raise ValueError(
                f"ResNet frozen_stages={frozen_stages} must be in [-1, num_stages={num_stages}]."
            )
        pretrained = pretrained_from_init_cfg(init_cfg, pretrained, type(self).__name__)
        self.pretrained_prefix = init_cfg.get("prefix") if init_cfg is not None else None
        norm_cfg = dict(norm_cfg) if norm_cfg is not None else dict(type="BN", requires_grad=True)
        self.depth = depth
        self.num_stages = num_stages
        self.out_indices = tuple(out_indices)
        self.style = style
        self.frozen_stages = frozen_stages
        self.norm_cfg = norm_cfg
        self.norm_eval = norm_eval
        self.zero_init_residual = zero_init_residual
        self.pretrained = pretrained
        # Set once init_weights() has loaded `pretrained` (or a state dict was loaded over it).
        self.pretrained_loaded = False
        self.register_load_state_dict_post_hook(_mark_loaded)

        block, stage_blocks = self.arch_settings[depth]
        stem_channels = stem_channels or base_channels
        self.conv1 = nn.Conv2d(in_channels, stem_channels, 7, stride=2, padding=3, bias=False)
        _add_norms(self, norm_cfg, stem_channels)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)

        inplanes = stem_channels
        self.res_layers: list[str] = []
        self._out_channels: list[int] = []
        for i in range(num_stages):
            planes = base_channels * 2**i
            layer = self._make_layer(
                block, inplanes, planes, stage_blocks[i], strides[i], dilations[i], style, norm_cfg, with_cp
            )
            inplanes = planes * block.expansion
            name = f"layer{i + 1}"
            self.add_module(name, layer)
            self.res_layers.append(name)
            self._out_channels.append(inplanes)
        stride = 4
        self._out_strides = []
        for i in range(num_stages):
            stride *= strides[i]
            self._out_strides.append(stride)
        # Random initialisation only: the build never reads files. `pretrained` is loaded by
        # init_weights(), which the runner calls when training starts (MMDetection's order).
        self._random_init()
        self._freeze_stages()

    def _block_kwargs(self) -> dict[str, Any]:
        """Extra arguments of every residual block (ResNeXt adds its grouped-conv width)."""
        return {}

    def _make_layer(
        self,
        block: type,
        inplanes: int,
        planes: int,
        num_blocks: int,
        stride: int,
        dilation: int,
        style: str,
        norm_cfg: Mapping[str, Any],
        with_cp: bool,
    ) -> nn.Sequential:
        return make_res_layer(block, inplanes, planes, num_blocks, stride, dilation, style, norm_cfg, with_cp,
                              **self._block_kwargs())

    # ------------------------------------------------------------------ contract
    def output_shape(self) -> dict[str, ShapeSpec]:
        """``{'res2': ShapeSpec(channels, stride=4), ...}`` for the stages in ``out_indices``."""
        return {
            f"res{i + 2}": ShapeSpec(channels=self._out_channels[i], stride=self._out_strides[i])
            for i in self.out_indices
        }

    @property
    def size_divisibility(self) -> int:
        """The largest output stride: padding inputs to it keeps feature maps aligned."""
        return max(self._out_strides[i] for i in self.out_indices)

    # ------------------------------------------------------------------ weights
    def init_weights(self, pretrained: str | None = None) -> None:
        """Kaiming-initialise convs, then load ``pretrained`` (argument or constructor value) if given.

        ``torchvision://NAME`` and local files are resolved by :func:`resolve_pretrained`; names that need
        a download (``open-mmlab://``, ``http(s)://``) raise an error saying which file to provide.
        """
        self._random_init()
        pretrained = pretrained if pretrained is not None else self.pretrained
        if pretrained:
            self.pretrained = pretrained
            path = resolve_pretrained(pretrained)
            if path is not None:
                self.load_pretrained(path)
        self.pretrained_loaded = True
        self._freeze_stages()

    def _random_init(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, (nn.modules.batchnorm._BatchNorm, nn.GroupNorm)) and m.weight is not None:
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        if self.zero_init_residual:
            for m in self.modules():
                if isinstance(m, (BasicBlock, Bottleneck)) and isinstance(
                    m.last_norm, (nn.modules.batchnorm._BatchNorm, nn.GroupNorm)
                ):
                    nn.init.zeros_(m.last_norm.weight)

    def load_pretrained(self, path: str) -> None:
        """Load a torchvision/MM/Detectron2 ResNet checkpoint file into this backbone (non-strict)."""
        state = select_prefix(load_checkpoint_state_dict(path), self.pretrained_prefix, path)
        state = convert_resnet_state_dict(state)
        own = self.state_dict()
        mismatched = [
            f"{k}: file {tuple(v.shape)} vs model {tuple(own[k].shape)}"
            for k, v in state.items()
            if k in own and own[k].shape != v.shape
        ]
        if mismatched:
            raise ValueError(
                f"pretrained file {path} does not fit ResNet(depth={self.depth}): shape mismatch for "
                f"{mismatched[:5]}{' ...' if len(mismatched) > 5 else ''}. "
                "Check depth/base_channels against the "
                "checkpoint."
            )
        result = self.load_state_dict(state, strict=False)
        missing = [k for k in result.missing_keys if not k.endswith("num_batches_tracked")]
        if missing:
            logger.warning("ResNet pretrained %s: missing keys %s", path, missing)
        if result.unexpected_keys:
            logger.warning("ResNet pretrained %s: unused keys %s", path, result.unexpected_keys)
        logger.info("ResNet: loaded pretrained weights from %s", path)

    def _frozen_modules(self) -> list[nn.Module]:
        mods: list[nn.Module] = []
        if self.frozen_stages >= 0:
            mods += [self.conv1, self.norm1]
        for i in range(1, self.frozen_stages + 1):
            mods.append(getattr(self, f"layer{i}"))
        return mods

    def _freeze_stages(self) -> None:
        for m in self._frozen_modules():
            m.eval()
            for p in m.parameters():
                p.requires_grad_(False)

    def train(self, mode: bool = True) -> ResNet:
        """Set train mode, keeping frozen stages (and all norms when ``norm_eval``) in eval mode."""
        super().train(mode)
        if mode:
            for m in self._frozen_modules():
                m.eval()
            if self.norm_eval:
                for m in self.modules():
                    if is_norm(m) and isinstance(m, nn.modules.batchnorm._BatchNorm):
                        m.eval()
        return self

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Return the feature maps of the stages in ``out_indices``, finest first."""
        x = self.maxpool(self.relu(self.norm1(self.conv1(x))))
        outs = []
        for i, name in enumerate(self.res_layers):
            x = getattr(self, name)(x)
            if i in self.out_indices:
                outs.append(x)
        return tuple(outs)


@MODELS.register_module()
class ResNeXt(ResNet):
    """ResNeXt backbone (Xie et al. 2017): a :class:`ResNet` whose bottleneck 3×3 convs are grouped.

    Module names are MMDetection's (``layerN.M.conv2`` is the grouped conv), so MMDetection ResNeXt
    checkpoints (``open-mmlab://resnext101_32x4d`` once downloaded) load without renaming.

    Args:
        groups: number of groups of each 3×3 conv (the "cardinality", 32 or 64 in the model zoo).
        base_width: width of each group at the first stage, relative to ``base_channels=64``.
        **kwargs: :class:`ResNet` arguments (depth 50, 101 or 152).
    """

    arch_settings = {k: v for k, v in ResNet.arch_settings.items() if k >= 50}

    def __init__(self, groups: int = 1, base_width: int = 4, **kwargs: Any) -> None:
        self.groups = int(groups)
        self.base_width = int(base_width)
        super().__init__(**kwargs)

    def _block_kwargs(self) -> dict[str, Any]:
        return dict(groups=self.groups, base_width=self.base_width, base_channels=self.base_channels)
