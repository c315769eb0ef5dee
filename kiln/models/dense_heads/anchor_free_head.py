"""``AnchorFreeHead``: the shared base of point-based dense heads (FCOS): conv towers, per-level prior
points, per-point regression targets and the multi-level decoding loop.

Module names are MMDetection's (``cls_convs.i.conv``/``.gn``, ``reg_convs``, ``conv_cls``, ``conv_reg``)
so its checkpoints load strictly. Losses live in the subclasses; the target rule every point-based head
starts from (which ground truth a point lies in, and its distances to that box's sides) lives here.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn as nn

from kiln.registry import MODELS, TASK_UTILS

from ..layers import ConvNormAct
from ..utils import cfg_get, refuse_init_cfg
from .dense_predict import predict_dense

__all__ = ["AnchorFreeHead", "refuse_head_options"]

INF = 1e8
logger = logging.getLogger("kiln.models")


def refuse_head_options(owner: str, dcn_on_last_conv: bool = False, conv_cfg: Any = None) -> None:
    """A clear error for the dense-head options kiln cannot build (they need custom CUDA ops)."""
    if dcn_on_last_conv:
        raise NotImplementedError(
            f"model.bbox_head ({owner}): dcn_on_last_conv=True is not supported: deformable convolution "
            "(DCN) is not implemented in kiln. Set bbox_head.dcn_on_last_conv=False (the towers then end "
            "with a plain 3x3 conv; expect about 1 AP less than MMDetection's DCN variant)."
        )
    if conv_cfg is not None:
        raise NotImplementedError(
            f"model.bbox_head ({owner}): conv_cfg={conv_cfg!r} is not supported: only plain convolutions "
            "are implemented (no ConvWS / DCN); remove conv_cfg."
        )


@MODELS.register_module()
class AnchorFreeHead(nn.Module):
    """Two towers of ``stacked_convs`` 3×3 conv(+norm)+ReLU shared across levels, then a 3×3 class conv
    and a 3×3 box conv predicting ``(left, top, right, bottom)`` distances from each point.

    Args:
        num_classes: foreground classes.
        in_channels: channels of each input level.
        feat_channels: tower channels.
        stacked_convs: convs per tower.
        strides: one per level (the points are at ``(x + 0.5)·stride``).
        dcn_on_last_conv: refused (deformable convolution is not implemented).
        conv_bias: ``'auto'`` (bias only without a norm layer) or a bool.
        loss_cls, loss_bbox: ``MODELS`` loss configs (sigmoid focal loss, ``IoULoss``).
        bbox_coder: ``TASK_UTILS`` config (``DistancePointBBoxCoder``).
        norm_cfg: tower norm (``dict(type='GN', num_groups=32)``; ``None``: no norm).
        train_cfg, test_cfg: as in MMDetection; ``test_cfg`` has ``score_thr``, ``nms_pre``,
            ``min_bbox_size``, ``nms``, ``max_per_img``.
        prior_offset: where in its cell a point sits (0.5: the centre, MMDetection; 0: the top-left corner,
            torchvision).
    """

    def __init__(
        self,
        num_classes: int,
        in_channels: int,
        feat_channels: int = 256,
        stacked_convs: int = 4,
        strides: Sequence[int] = (4, 8, 16, 32, 64),
        dcn_on_last_conv: bool = False,
        conv_bias: bool | str = "auto",
        loss_cls: Mapping[str, Any] | None = None,
        loss_bbox: Mapping[str, Any] | None = None,
        bbox_coder: Mapping[str, Any] | None = None,
        conv_cfg: Mapping[str, Any] | None = None,
        norm_cfg: Mapping[str, Any] | None = None,
        train_cfg: Any = None,
        test_cfg: Any = None,
        init_cfg: Any = None,
        prior_offset: float = 0.5,
    ) -> None:
        super().__init__()
        owner = type(self).__name__
        refuse_init_cfg(init_cfg, owner)
        refuse_head_options(owner, dcn_on_last_conv, conv_cfg)
        if conv_bias != "auto" and not isinstance(conv_bias, bool):
            raise ValueError(f"{owner}(conv_bias={conv_bias!r}): expected 'auto', True or False.")
        loss_cls = dict(loss_cls) if loss_cls is not None else dict(
            type="FocalLoss", use_sigmoid=True, gamma=2.0, alpha=0.25, loss_weight=1.0
        )
        loss_bbox = dict(loss_bbox) if loss_bbox is not None else dict(type="IoULoss", loss_weight=1.0)
        self.loss_cls = MODELS.build(loss_cls, cfg_path="bbox_head.loss_cls")
        self.loss_bbox = MODELS.build(loss_bbox, cfg_path="bbox_head.loss_bbox")
        self.use_sigmoid_cls = bool(getattr(self.loss_cls, "use_sigmoid", loss_cls.get("use_sigmoid", False)))
        self.num_classes = int(num_classes)
        self.cls_out_channels = self.num_classes if self.use_sigmoid_cls else self.num_classes + 1
        self.in_channels = int(in_channels)
        self.feat_channels = int(feat_channels)
        self.stacked_convs = int(stacked_convs)
        self.strides = [s if isinstance(s, (int, float)) else tuple(s) for s in strides]
        self.conv_bias = conv_bias
        self.norm_cfg = dict(norm_cfg) if norm_cfg is not None else None
        self.bbox_coder = TASK_UTILS.build(
            dict(bbox_coder) if bbox_coder is not None else dict(type="DistancePointBBoxCoder"),
            cfg_path="bbox_head.bbox_coder",
        )
        self.prior_generator = TASK_UTILS.build(
            dict(type="MlvlPointGenerator", strides=list(strides), offset=prior_offset)
        )
        self.train_cfg = train_cfg
        self.test_cfg = test_cfg
        if cfg_get(train_cfg, "assigner") is not None:
            # MMDetection 2.x FCOS configs carry a RetinaNet-style train_cfg that FCOS never reads.
            logger.warning(
                "%s: train_cfg.assigner=%r is not used: points are assigned by the head's own rule "
                "(inside the box, regress range, smallest area), as in MMDetection.",
                owner, dict(cfg_get(train_cfg, "assigner")).get("type"),
            )
        self._init_layers()
        self.init_weights()

    # ------------------------------------------------------------------ layers
    def _tower(self) -> nn.ModuleList:
        return nn.ModuleList(
            ConvNormAct(
                self.in_channels if i == 0 else self.feat_channels,
                self.feat_channels,
                3,
                padding=1,
                norm_cfg=self.norm_cfg,
                bias=self.conv_bias,
            )
            for i in range(self.stacked_convs)
        )

    def _init_layers(self) -> None:
        self.cls_convs = self._tower()
        self.reg_convs = self._tower()
        cin = self.feat_channels if self.stacked_convs else self.in_channels
        self.conv_cls = nn.Conv2d(cin, self.cls_out_channels, 3, padding=1)
        self.conv_reg = nn.Conv2d(cin, 4, 3, padding=1)

    def init_weights(self) -> None:
        """Normal(0, 0.01) convs with zero bias; class bias ``-log(99)`` (1% foreground at the start)."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.normal_(m.weight, std=0.01)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
        nn.init.constant_(self.conv_cls.bias, -math.log((1 - 0.01) / 0.01))

    def forward_single(
        self, x: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """One level: class logits, box regression, and the two towers' last features."""
        cls_feat = x
        for conv in self.cls_convs:
            cls_feat = conv(cls_feat)
        reg_feat = x
        for conv in self.reg_convs:
            reg_feat = conv(reg_feat)
        return self.conv_cls(cls_feat), self.conv_reg(reg_feat), cls_feat, reg_feat

    # ------------------------------------------------------------------ targets
    def points(self, featmap_sizes: Sequence[Sequence[int]], ref: torch.Tensor) -> list[torch.Tensor]:
        """Prior points of every level (P_l×2), on ``ref``'s device and dtype."""
        return self.prior_generator.grid_priors(featmap_sizes, dtype=ref.dtype, device=ref.device)

    def point_targets(
        self,
        points: torch.Tensor,
        gt_bboxes: torch.Tensor,
        gt_labels: torch.Tensor,
        inside: torch.Tensor,
        in_range: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Labels (P, background = ``num_classes``) and distance targets (P×4) of one image's points.

        ``inside`` and ``in_range`` are P×G masks (the point may learn from that ground truth); among the
        allowed ones a point takes the ground truth of smallest area, as FCOS does.
        """
        num_points = len(points)
        if len(gt_bboxes) == 0:
            return (
                gt_labels.new_full((num_points,), self.num_classes),
                points.new_zeros((num_points, 4)),
            )
        areas = ((gt_bboxes[:, 2] - gt_bboxes[:, 0]) * (gt_bboxes[:, 3] - gt_bboxes[:, 1]))[None].repeat(
            num_points, 1
        )
        areas[~inside] = INF
        areas[~in_range] = INF
        min_area, idx = areas.min(dim=1)
        labels = gt_labels[idx].clone()
        labels[min_area == INF] = self.num_classes
        targets = self.bbox_coder.encode(points, gt_bboxes[idx])
        return labels, targets

    # ------------------------------------------------------------------ inference
    def predict(
        self, feats: Sequence[torch.Tensor], metas: Sequence[Mapping[str, Any]]
    ) -> list[dict[str, torch.Tensor]]:
        """Per-image ``{'boxes', 'scores', 'labels'}`` in input-image pixels, post-processed."""
        outs = self(feats)
        return self.predict_by_feat(*outs, metas=metas)

    def predict_by_feat(
        self,
        cls_scores: Sequence[torch.Tensor],
        bbox_preds: Sequence[torch.Tensor],
        score_factors: Sequence[torch.Tensor] | None = None,
        metas: Sequence[Mapping[str, Any]] = (),
        cfg: Any = None,
    ) -> list[dict[str, torch.Tensor]]:
        """Decode head outputs (distances from the points) into detections; see :func:`predict_dense`."""
        points = self.points([c.shape[-2:] for c in cls_scores], bbox_preds[0])
        return predict_dense(
            cls_scores,
            bbox_preds,
            score_factors,
            points,
            self.bbox_coder.decode,
            metas,
            cfg if cfg is not None else self.test_cfg,
            self.use_sigmoid_cls,
        )
