"""``ResLayer``: one ResNet stage run on pooled RoI features (the res5 head of C4 Faster R-CNN).

A C4 detector stops its backbone after res4 (stride 16), pools each RoI to 14×14 and runs res5 per RoI
(first block strided: 14×14 → 7×7), then average-pools for the box head. MMDetection calls this module
``ResLayer`` (``roi_head.shared_head``); Detectron2's ``Res5ROIHeads`` does the same with its ``res5``.
The stage is built by the same code as :class:`~kiln.models.backbones.ResNet`'s stages and registered
under the stage's backbone name (``layer4`` for ``stage=3``), so a ResNet checkpoint's ``layer4.*``
entries load into it unchanged and MMDetection C4 checkpoints (``roi_head.shared_head.layer4.*``) load
strictly.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import torch
import torch.nn as nn

from kiln.registry import MODELS

from ...backbones.pretrained import (
    convert_resnet_state_dict,
    load_checkpoint_state_dict,
    pretrained_from_init_cfg,
    resolve_pretrained,
    select_prefix,
)
from ...backbones.resnet import ResNet, ResNeXt, make_res_layer
from ...layers import is_norm

__all__ = ["ResLayer"]

logger = logging.getLogger(__name__)


def _mark_loaded(module: nn.Module, incompatible: Any) -> None:
    # A state dict loaded over the head (checkpoint, resume) supersedes `pretrained`.
    module.pretrained_loaded = True


@MODELS.register_module()
class ResLayer(nn.Module):
    """ResNet stage ``stage`` (0-based: 3 is res5) as an RoI shared head.

    Args:
        depth: ResNet depth (50, 101, 152; 18/34 build BasicBlock stages), as the backbone's.
        stage: which stage to build (3 = res5: 1024 → 2048 channels for a bottleneck ResNet).
        stride: stride of the first block (2 in C4: 14×14 pooled RoIs become 7×7).
        dilation: dilation of the 3×3 convs (Detectron2's ``RES5_DILATION``).
        style: ``'pytorch'`` (stride in the 3×3 conv) or ``'caffe'`` (stride in the first 1×1, Detectron2's
            ``STRIDE_IN_1X1``).
        norm_cfg: norm of the stage (``BN``, ``SyncBN``, ``GN``, ``FrozenBN``); default trainable BN.
        norm_eval: keep batch-norm statistics frozen while training (as the backbone's).
        with_cp: activation checkpointing in the residual blocks.
        pretrained / init_cfg: ``dict(type='Pretrained', checkpoint=...)``: a ResNet checkpoint (torchvision,
            MMDetection or Detectron2 names) whose stage ``stage`` is loaded, when training starts.
        base_channels: width of the ResNet's first stage (64; kiln's extension for small test models,
            matching :class:`~kiln.models.backbones.ResNet`'s ``base_channels``).
        groups, base_width: grouped 3×3 convs as in :class:`~kiln.models.backbones.ResNeXt` (kiln's
            extension: the res5 head of a ResNeXt C4 model, Detectron2's ``NUM_GROUPS``/``WIDTH_PER_GROUP``;
            ``groups=1`` is a plain ResNet stage).
        dcn: deformable convolution is not implemented; anything but ``None`` is refused.

    ``forward(x)``: K×C_in×S×S → K×C_out×(S/stride)×(S/stride).
    """

    def __init__(
        self,
        depth: int,
        stage: int = 3,
        stride: int = 2,
        dilation: int = 1,
        style: str = "pytorch",
        norm_cfg: Mapping[str, Any] | None = None,
        norm_eval: bool = True,
        with_cp: bool = False,
        dcn: Mapping[str, Any] | None = None,
        pretrained: str | None = None,
        init_cfg: Mapping[str, Any] | None = None,
        base_channels: int = 64,
        groups: int = 1,
        base_width: int = 4,
    ) -> None:
        super().__init__()
        if dcn is not None:
            raise NotImplementedError(
                f"roi_head.shared_head (ResLayer): dcn={dict(dcn)!r} is not supported: deformable "
                "convolution is not implemented in kiln; remove dcn to build this model."
            )
        if depth not in ResNet.arch_settings:
            raise KeyError(
                f"roi_head.shared_head (ResLayer): depth={depth!r} is not a ResNet depth; choose one of "
                f"{sorted(ResNet.arch_settings)}."
            )
        if not 0 <= stage <= 3:
            raise ValueError(f"roi_head.shared_head (ResLayer): stage={stage} must be 0..3 (3 is res5).")
        if style not in ("pytorch", "caffe"):
            raise ValueError(
                f"roi_head.shared_head (ResLayer): style={style!r}: expected 'pytorch' or 'caffe'."
            )
        self.depth = depth
        self.stage = stage
        self.norm_eval = norm_eval
        self.pretrained = pretrained_from_init_cfg(init_cfg, pretrained, "roi_head.shared_head (ResLayer)")
        self.pretrained_prefix = init_cfg.get("prefix") if init_cfg is not None else None
        self.pretrained_loaded = False
        self.register_load_state_dict_post_hook(_mark_loaded)
        block, stage_blocks = ResNet.arch_settings[depth]
        planes = base_channels * 2**stage
        inplanes = base_channels * 2 ** (stage - 1) * block.expansion if stage > 0 else base_channels
        norm_cfg = dict(norm_cfg) if norm_cfg is not None else dict(type="BN", requires_grad=True)
        self.layer_name = f"layer{stage + 1}"
        extra = {}
        if groups != 1:
            if depth not in ResNeXt.arch_settings:
                raise ValueError(
                    f"roi_head.shared_head (ResLayer): groups={groups} needs a bottleneck depth "
                    f"({sorted(ResNeXt.arch_settings)}), got depth={depth}."
                )
            extra = dict(groups=int(groups), base_width=int(base_width), base_channels=base_channels)
        layer = make_res_layer(
            block, inplanes, planes, stage_blocks[stage], stride, dilation, style, norm_cfg, with_cp, **extra
        )
        self.add_module(self.layer_name, layer)
        self.in_channels = inplanes
        self.out_channels = planes * block.expansion
        self._random_init()

    @property
    def layer(self) -> nn.Sequential:
        """The residual stage (``layer4`` for ``stage=3``)."""
        return getattr(self, self.layer_name)

    def _random_init(self) -> None:
        # He initialisation of the convs (as the backbone's stages, and Detectron2's c2_msra_fill); norms
        # start as the identity.
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, (nn.modules.batchnorm._BatchNorm, nn.GroupNorm)) and m.weight is not None:
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def init_weights(self) -> None:
        """Random initialisation, then the stage's weights from ``pretrained`` when one is set."""
        self._random_init()
        if self.pretrained:
            path = resolve_pretrained(self.pretrained)
            if path is not None:
                self.load_pretrained(str(path))
        self.pretrained_loaded = True

    def load_pretrained(self, path: str) -> None:
        """Load stage ``stage`` of a ResNet checkpoint (``layer4.*`` for res5; Detectron2: ``res5.*``)."""
        state = convert_resnet_state_dict(
            select_prefix(load_checkpoint_state_dict(path), self.pretrained_prefix, path)
        )
        prefix = self.layer_name + "."
        own = self.state_dict()
        picked = {k: v for k, v in state.items() if k.startswith(prefix) and k in own}
        if not picked:
            raise KeyError(
                f"roi_head.shared_head (ResLayer): {path} has no '{prefix}*' weights (a ResNet checkpoint "
                "with "
                f"stage {self.stage + 2} is expected; keys: {list(state)[:5]} ...)."
            )
        mismatched = [
            f"{k}: file {tuple(v.shape)} vs model {tuple(own[k].shape)}"
            for k, v in picked.items()
            if v.shape != own[k].shape
        ]
        if mismatched:
            raise ValueError(
                f"roi_head.shared_head (ResLayer depth={self.depth}): {path} does not fit: {mismatched[:3]}. "
                "Check depth against the checkpoint."
            )
        result = self.load_state_dict(picked, strict=False)
        missing = [k for k in result.missing_keys if not k.endswith("num_batches_tracked")]
        if missing:
            logger.warning("ResLayer pretrained %s: missing keys %s", path, missing)
        logger.info("ResLayer: loaded %s from %s", self.layer_name, path)

    def train(self, mode: bool = True) -> ResLayer:
        """Set train mode, keeping batch norms in eval mode when ``norm_eval``."""
        super().train(mode)
        if mode and self.norm_eval:
            for m in self.modules():
                if is_norm(m) and isinstance(m, nn.modules.batchnorm._BatchNorm):
                    m.eval()
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Run the stage on pooled RoI features."""
        return self.layer(x)
