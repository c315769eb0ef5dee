"""The Mask R-CNN mask head: a small FCN on each RoI's pooled features → one mask per class.

MMDetection's ``FCNMaskHead`` (Detectron2's ``MaskRCNNConvUpsampleHead``, torchvision's ``MaskRCNNHeads`` +
``MaskRCNNPredictor``): ``num_convs`` 3×3 convolutions on the 14×14 RoI features, a 2× upsampling (a
stride-2 transposed convolution by default) to 28×28, and a 1×1 convolution giving one mask logit map per
class (or one for all classes with ``class_agnostic``). Module names are MMDetection's (``convs.<i>.conv``,
``upsample``, ``conv_logits``), so its checkpoints load strictly.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn as nn

from kiln.registry import MODELS

from ..layers import ConvNormAct
from ..utils import refuse_init_cfg
from .mask_target import mask_target

__all__ = ["FCNMaskHead"]

_UPSAMPLE_TYPES = (None, "deconv", "nearest", "bilinear")


@MODELS.register_module()
class FCNMaskHead(nn.Module):
    """Predict a ``mask_size`` (28×28) mask logit map per RoI and class.

    Args:
        num_convs: 3×3 conv + ReLU layers on the RoI features (4 in Mask R-CNN FPN, 0 in C4, where the
            res5 shared head has already run).
        roi_feat_size: side of the pooled RoI features (14).
        in_channels: channels of the pooled features (256 for FPN, 2048 after a res5 shared head).
        conv_kernel_size, conv_out_channels: shape of the convs (3, 256).
        num_classes: foreground classes; the head predicts one map per class.
        class_agnostic: one map for all classes (Detectron2's ``CLS_AGNOSTIC_MASK``).
        upsample_cfg: ``dict(type='deconv'|'nearest'|'bilinear', scale_factor=2)`` or ``dict(type=None)``
            (no upsampling). ``'carafe'`` (an MMCV CUDA op) is refused.
        norm_cfg: norm of the convs (e.g. ``dict(type='GN', num_groups=32)``); ``conv_cfg`` must be None.
        predictor_cfg: ``dict(type='Conv')`` (the only predictor MMDetection ships).
        loss_mask: ``dict(type='CrossEntropyLoss', use_mask=True, loss_weight=1.0)``: binary cross-entropy
            of each positive RoI's map of its gt class against the gt mask cropped to the RoI.
        init_style: ``'mmdet'``: convs and the upsampling/predictor layers Kaiming-normal (fan-out) as
            MMDetection; ``'detectron2'``: as Detectron2, the same for convs and the transposed conv, the
            predictor ``N(0, 0.001)``.

    ``forward(x)`` maps K×C×S×S RoI features to K×classes×2S×2S logits.
    """

    def __init__(
        self,
        num_convs: int = 4,
        roi_feat_size: int = 14,
        in_channels: int = 256,
        conv_kernel_size: int = 3,
        conv_out_channels: int = 256,
        num_classes: int = 80,
        class_agnostic: bool = False,
        upsample_cfg: Mapping[str, Any] | None = None,
        conv_cfg: Mapping[str, Any] | None = None,
        norm_cfg: Mapping[str, Any] | None = None,
        predictor_cfg: Mapping[str, Any] | None = None,
        loss_mask: Mapping[str, Any] | None = None,
        init_cfg: Any = None,
        init_style: str = "mmdet",
    ) -> None:
        super().__init__()
        refuse_init_cfg(init_cfg, "FCNMaskHead")
        up = dict(upsample_cfg) if upsample_cfg is not None else {"type": "deconv", "scale_factor": 2}
        up_type = up.pop("type", None)
        if up_type not in _UPSAMPLE_TYPES:
            raise ValueError(
                f"roi_head.mask_head.upsample_cfg.type={up_type!r}: kiln implements "
                f"{[t for t in _UPSAMPLE_TYPES if t]} (or None for no upsampling); 'carafe' needs MMCV's "
                "CUDA op, which kiln does not ship. Use type='deconv'."
            )
        scale = int(up.pop("scale_factor", 2)) if up_type is not None else 1
        if up:
            raise ValueError(f"roi_head.mask_head.upsample_cfg: unknown keys {sorted(up)}; known: type, "
                             "scale_factor.")
        if conv_cfg is not None:
            raise NotImplementedError(f"roi_head.mask_head.conv_cfg={dict(conv_cfg)!r}: kiln's FCNMaskHead "
                                      "uses plain convolutions; remove conv_cfg.")
        if predictor_cfg is not None and dict(predictor_cfg) != {"type": "Conv"}:
            raise NotImplementedError(f"roi_head.mask_head.predictor_cfg={dict(predictor_cfg)!r}: kiln "
                                      "implements dict(type='Conv') only.")
        if init_style not in ("mmdet", "detectron2"):
            raise ValueError(f"FCNMaskHead init_style={init_style!r}: expected 'mmdet' or 'detectron2'.")
        self.num_classes = int(num_classes)
        self.class_agnostic = bool(class_agnostic)
        self.roi_feat_size = int(roi_feat_size)
        self.upsample_method = up_type
        self.scale_factor = scale
        self.init_style = init_style
        pad = (int(conv_kernel_size) - 1) // 2
        self.convs = nn.ModuleList(
            ConvNormAct(in_channels if i == 0 else conv_out_channels, conv_out_channels, conv_kernel_size,
                        padding=pad, norm_cfg=norm_cfg)
            for i in range(int(num_convs))
        )
        up_in = conv_out_channels if num_convs > 0 else in_channels
        if up_type == "deconv":
            self.upsample: nn.Module | None = nn.ConvTranspose2d(up_in, conv_out_channels, scale,
                                                                 stride=scale)
            logits_in = conv_out_channels
        elif up_type is None:
            self.upsample = None
            logits_in = up_in
        else:
            self.upsample = nn.Upsample(scale_factor=scale, mode=up_type,
                                        align_corners=None if up_type == "nearest" else False)
            logits_in = up_in
        self.conv_logits = nn.Conv2d(logits_in, 1 if self.class_agnostic else self.num_classes, 1)
        self.relu = nn.ReLU(inplace=True)
        loss_cfg = dict(loss_mask) if loss_mask is not None else {
            "type": "CrossEntropyLoss", "use_mask": True, "loss_weight": 1.0}
        self.loss_mask = MODELS.build(loss_cfg, cfg_path="roi_head.mask_head.loss_mask")
        if not getattr(self.loss_mask, "use_mask", False):
            raise ValueError(
                f"roi_head.mask_head.loss_mask={loss_cfg!r}: the mask loss must be "
                "dict(type='CrossEntropyLoss', use_mask=True, loss_weight=1.0) (per-pixel binary "
                "cross-entropy of the gt class's map)."
            )
        self.init_weights()

    @property
    def mask_size(self) -> int:
        """Side of the predicted masks (``roi_feat_size × scale_factor``)."""
        return self.roi_feat_size * self.scale_factor

    def init_weights(self) -> None:
        """Kaiming-normal (fan-out, ReLU) convs, upsampling and predictor, zero biases (``init_style``)."""
        layers = [c.conv for c in self.convs]
        if isinstance(self.upsample, nn.ConvTranspose2d):
            layers.append(self.upsample)
        for m in layers:
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        if self.init_style == "detectron2":
            nn.init.normal_(self.conv_logits.weight, std=0.001)
        else:
            nn.init.kaiming_normal_(self.conv_logits.weight, mode="fan_out", nonlinearity="relu")
        nn.init.zeros_(self.conv_logits.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """RoI features K×C×S×S → mask logits K×(num_classes or 1)×(S·scale)×(S·scale)."""
        for conv in self.convs:
            x = conv(x)
        if self.upsample is not None:
            x = self.upsample(x)
            if self.upsample_method == "deconv":
                x = self.relu(x)
        return self.conv_logits(x)

    # ------------------------------------------------------------------ training
    def get_targets(
        self,
        pos_bboxes: Sequence[torch.Tensor],
        pos_assigned_gt_inds: Sequence[torch.Tensor],
        gt_masks: Sequence[Any],
        mask_size: int | Sequence[int] | None = None,
    ) -> torch.Tensor:
        """Each positive RoI's gt mask cropped to the RoI and resized to ``mask_size`` (R×h×w, 0/1)."""
        size = self.mask_size if mask_size is None else mask_size
        return mask_target(pos_bboxes, pos_assigned_gt_inds, gt_masks, size)

    def loss(self, mask_logits: torch.Tensor, mask_targets: torch.Tensor, labels: torch.Tensor
             ) -> dict[str, torch.Tensor]:
        """``loss_mask``: BCE of each RoI's map of its class (``labels``, R) against its target (R×h×w)."""
        if mask_logits.shape[0] == 0:
            # No positive RoI: keep every parameter in the graph (DDP) with a zero loss.
            return {"loss_mask": mask_logits.sum() * 0}
        if mask_targets.shape[-2:] != mask_logits.shape[-2:]:
            raise ValueError(
                f"mask targets are {tuple(mask_targets.shape[-2:])} but the head predicts "
                f"{tuple(mask_logits.shape[-2:])} masks; set "
                f"train_cfg.rcnn.mask_size={mask_logits.shape[-1]}."
            )
        if self.class_agnostic:
            labels = torch.zeros_like(labels)
        return {"loss_mask": self.loss_mask(mask_logits, mask_targets, labels)}

    # ------------------------------------------------------------------ inference
    def predict_probs(self, mask_logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Mask probabilities (N×h×w) of each detection's predicted class (``labels``, N)."""
        probs = mask_logits.sigmoid()
        if probs.shape[0] == 0:
            return probs.new_zeros((0, *probs.shape[-2:]))
        channel = torch.zeros_like(labels) if self.class_agnostic else labels.long()
        return probs[torch.arange(probs.shape[0], device=probs.device), channel]
