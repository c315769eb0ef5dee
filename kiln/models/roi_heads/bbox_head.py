"""The second-stage box head: classify each RoI and refine its box (Shared2FCBBoxHead)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F
from torchvision.ops import batched_nms

from kiln.registry import MODELS, TASK_UTILS

from ..layers import ConvNormAct
from ..legacy_names import rename_on_load, renumber
from ..utils import nms_iou_threshold, refuse_init_cfg

__all__ = ["ConvFCBBoxHead", "Shared2FCBBoxHead", "Shared4Conv1FCBBoxHead", "multiclass_nms"]


def multiclass_nms(
    boxes: torch.Tensor,
    scores: torch.Tensor,
    score_thr: float,
    iou_threshold: float,
    max_per_img: int,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-class NMS over RoI predictions.

    Args:
        boxes: K×4 (class-agnostic) or K×(4·C) (one box per class), XYXY.
        scores: K×C foreground class probabilities (background column removed).

    Returns:
        ``(boxes M×4, scores M, labels M)``, highest score first, ``M <= max_per_img``; boxes with zero
        width or height are dropped.
    """
    num_classes = scores.shape[1]
    if boxes.shape[1] == 4:
        boxes = boxes[:, None, :].expand(-1, num_classes, 4)
    else:
        boxes = boxes.reshape(boxes.shape[0], num_classes, 4)
    labels = torch.arange(num_classes, device=scores.device).expand_as(scores)
    # Zero-area boxes (clipped flat at an image edge) are not detections (MMDetection keeps w, h > 0).
    wh = boxes[..., 2:] - boxes[..., :2]
    keep = (scores > score_thr) & (wh[..., 0] > 0) & (wh[..., 1] > 0)
    boxes, scores, labels = boxes[keep], scores[keep], labels[keep]
    if boxes.numel() == 0:
        return boxes.reshape(0, 4), scores, labels
    kept = batched_nms(boxes, scores, labels, iou_threshold)
    if max_per_img > 0:
        kept = kept[:max_per_img]
    return boxes[kept], scores[kept], labels[kept]


def _is_linear(cfg: Mapping[str, Any] | None) -> bool:
    return cfg is None or dict(cfg) == {"type": "Linear"}


def _refuse_unsupported(**values: Any) -> None:
    # Options of MMDetection's ConvFCBBoxHead kiln does not implement: refused by name, never ignored.
    for key, value in values.items():
        if value not in (None, False, 0):
            raise NotImplementedError(
                f"roi_head.bbox_head: {key}={value!r} is not supported by kiln's ConvFCBBoxHead, which "
                "implements shared convs (num_shared_convs, norm_cfg) and shared FCs followed by Linear "
                f"classifier/regressor. Remove {key} (or set its default) to build this model."
            )


@MODELS.register_module()
class ConvFCBBoxHead(nn.Module):
    """RoI box head: (shared convs) → shared FCs → a classifier and a box regressor.

    Args:
        num_shared_convs, num_shared_fcs: shared layers before the two predictors.
        in_channels: channels of the pooled RoI features; ``roi_feat_size``: their side.
        conv_out_channels, fc_out_channels: widths of the shared layers.
        num_classes: foreground classes; the classifier has ``num_classes + 1`` outputs, the
            last one background (MMDetection v2 convention).
        bbox_coder: box coder config (``DeltaXYWHBBoxCoder`` with ``target_stds=[.1, .1, .2, .2]``).
        reg_class_agnostic: one box per RoI (True) or one per class (False).
        loss_cls, loss_bbox: loss configs (``CrossEntropyLoss``, ``L1Loss``/``SmoothL1Loss``).
        norm_cfg: norm of the shared convs (e.g. GN in ``Shared4Conv1FCBBoxHead``).
        with_avg_pool: average-pool the (post-conv) RoI features to 1×1 before the FCs / predictors
            (C4's ``BBoxHead`` on the res5 shared head's 7×7 output).
        conv_cfg, num_cls_convs/fcs, num_reg_convs/fcs, cls_predictor_cfg,
            reg_predictor_cfg: MMDetection options kiln does not implement; anything but the default
            (``Linear`` predictors) is refused by name.

        init_style: ``'mmdet'`` (default): shared FCs Xavier-uniform, shared convs as built.
            ``'detectron2'``: Detectron2's box-head initialisation, shared FCs ``kaiming_uniform(a=1)``
            (Caffe2's "Xavier", ``U(±sqrt(3 / fan_in))``) and shared convs ``kaiming_normal``
            (fan-out, ReLU: Caffe2's "MSRA"), biases zero. The predictors are initialised alike in both.

    Module names are MMDetection's (``shared_convs.<i>.conv``/``.gn``, ``shared_fcs.<i>``, ``fc_cls``,
    ``fc_reg``); kiln checkpoints saved before that naming are mapped on load.
    """

    def __init__(
        self,
        num_shared_convs: int = 0,
        num_shared_fcs: int = 2,
        in_channels: int = 256,
        roi_feat_size: int | Sequence[int] = 7,
        conv_out_channels: int = 256,
        fc_out_channels: int = 1024,
        num_classes: int = 80,
        bbox_coder: Mapping[str, Any] | None = None,
        reg_class_agnostic: bool = False,
        reg_decoded_bbox: bool = False,
        loss_cls: Mapping[str, Any] | None = None,
        loss_bbox: Mapping[str, Any] | None = None,
        init_cfg: Any = None,
        norm_cfg: Mapping[str, Any] | None = None,
        conv_cfg: Mapping[str, Any] | None = None,
        with_avg_pool: bool = False,
        num_cls_convs: int = 0,
        num_cls_fcs: int = 0,
        num_reg_convs: int = 0,
        num_reg_fcs: int = 0,
        cls_predictor_cfg: Mapping[str, Any] | None = None,
        reg_predictor_cfg: Mapping[str, Any] | None = None,
        init_style: str = "mmdet",
    ) -> None:
        super().__init__()
        if init_style not in ("mmdet", "detectron2"):
            raise ValueError(
                f"roi_head.bbox_head.init_style={init_style!r}: expected 'mmdet' or 'detectron2'."
            )
        self.init_style = init_style
        refuse_init_cfg(init_cfg, type(self).__name__)
        _refuse_unsupported(
            conv_cfg=conv_cfg,
            num_cls_convs=num_cls_convs,
            num_cls_fcs=num_cls_fcs,
            num_reg_convs=num_reg_convs,
            num_reg_fcs=num_reg_fcs,
            cls_predictor_cfg=None if _is_linear(cls_predictor_cfg) else cls_predictor_cfg,
            reg_predictor_cfg=None if _is_linear(reg_predictor_cfg) else reg_predictor_cfg,
        )
        self.num_classes = int(num_classes)
        self.reg_class_agnostic = reg_class_agnostic
        self.reg_decoded_bbox = reg_decoded_bbox
        size = (roi_feat_size, roi_feat_size) if isinstance(roi_feat_size, int) else tuple(roi_feat_size)
        self.bbox_coder = TASK_UTILS.build(
            bbox_coder
            or dict(type="DeltaXYWHBBoxCoder", target_means=[0.0] * 4, target_stds=[0.1, 0.1, 0.2, 0.2]),
            cfg_path="roi_head.bbox_head.bbox_coder",
        )
        self.loss_cls = MODELS.build(
            loss_cls or dict(type="CrossEntropyLoss", use_sigmoid=False, loss_weight=1.0),
            cfg_path="roi_head.bbox_head.loss_cls",
        )
        self.loss_bbox = MODELS.build(
            loss_bbox or dict(type="L1Loss", loss_weight=1.0), cfg_path="roi_head.bbox_head.loss_bbox"
        )
        # MMDetection's names: `shared_convs.<i>.conv` (ConvModule) and `shared_fcs.<i>` (Linear; the
        # ReLUs are applied in forward), so MMDetection checkpoints load strictly.
        self.shared_convs = nn.ModuleList(
            ConvNormAct(in_channels if i == 0 else conv_out_channels, conv_out_channels, 3, padding=1,
                        norm_cfg=norm_cfg)
            for i in range(num_shared_convs)
        )
        channels = conv_out_channels if num_shared_convs else in_channels
        self.with_avg_pool = bool(with_avg_pool)
        dim = channels if self.with_avg_pool else channels * size[0] * size[1]
        self.shared_fcs = nn.ModuleList()
        for _ in range(num_shared_fcs):
            self.shared_fcs.append(nn.Linear(dim, fc_out_channels))
            dim = fc_out_channels
        rename_on_load(self, self._legacy_names)
        self.fc_cls = nn.Linear(dim, self.num_classes + 1)
        self.fc_reg = nn.Linear(dim, 4 if reg_class_agnostic else 4 * self.num_classes)
        self.init_weights()

    @staticmethod
    def _legacy_names(keys: list[str]) -> dict[str, str]:
        # kiln checkpoints before the renaming: Sequential(layer, ReLU, layer, ReLU...) → index 2i, and
        # shared convs were bare Conv2d (`shared_convs.<2i>.weight`).
        out = {}
        if not any(k.startswith("shared_fcs.1.") for k in keys):
            out.update(renumber(keys, "shared_fcs", lambda i, rest: f"shared_fcs.{i // 2}.{rest}"))
        if not any(k.startswith("shared_convs.") and ".conv." in k for k in keys):
            out.update(renumber(keys, "shared_convs", lambda i, rest: f"shared_convs.{i // 2}.conv.{rest}"))
        return out

    def init_weights(self) -> None:
        """Classifier ~N(0, 0.01), regressor ~N(0, 0.001) (small first-step updates); FCs Xavier."""
        nn.init.normal_(self.fc_cls.weight, 0, 0.01)
        nn.init.zeros_(self.fc_cls.bias)
        nn.init.normal_(self.fc_reg.weight, 0, 0.001)
        nn.init.zeros_(self.fc_reg.bias)
        for m in self.shared_fcs:
            if self.init_style == "detectron2":
                nn.init.kaiming_uniform_(m.weight, a=1)
            else:
                nn.init.xavier_uniform_(m.weight)
            nn.init.zeros_(m.bias)
        if self.init_style == "detectron2":
            for m in self.shared_convs.modules():
                if isinstance(m, nn.Conv2d):
                    nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                    if m.bias is not None:
                        nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """RoI features K×C×S×S → (class logits K×(C+1), box deltas K×4 or K×4C)."""
        for conv in self.shared_convs:
            x = conv(x)
        if self.with_avg_pool:
            x = x.mean(dim=(2, 3))
        x = x.flatten(1)
        for fc in self.shared_fcs:
            x = F.relu(fc(x))
        return self.fc_cls(x), self.fc_reg(x)

    # ------------------------------------------------------------------ training
    def get_targets(
        self,
        pos_bboxes: Sequence[torch.Tensor],
        neg_bboxes: Sequence[torch.Tensor],
        pos_gt_bboxes: Sequence[torch.Tensor],
        pos_gt_labels: Sequence[torch.Tensor],
        pos_weight: float = 1.0,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Per-RoI training targets, images concatenated in the order ``[pos_i, neg_i]...``.

        Returns ``labels`` (K, background = num_classes), ``label_weights`` (K), ``bbox_targets``
        (K×4, encoded deltas or decoded boxes) and ``bbox_weights`` (K×4, 1 on positives).
        """
        labels, label_w, targets, target_w = [], [], [], []
        for pos, neg, gt, gl in zip(pos_bboxes, neg_bboxes, pos_gt_bboxes, pos_gt_labels):
            n_pos, n_neg = pos.shape[0], neg.shape[0]
            lab = pos.new_full((n_pos + n_neg,), self.num_classes, dtype=torch.long)
            lw = pos.new_zeros(n_pos + n_neg)
            tgt = pos.new_zeros((n_pos + n_neg, 4))
            tw = pos.new_zeros((n_pos + n_neg, 4))
            if n_pos:
                lab[:n_pos] = gl
                lw[:n_pos] = 1.0 if pos_weight <= 0 else pos_weight
                tgt[:n_pos] = gt if self.reg_decoded_bbox else self.bbox_coder.encode(pos, gt)
                tw[:n_pos] = 1.0
            if n_neg:
                lw[n_pos:] = 1.0
            labels.append(lab)
            label_w.append(lw)
            targets.append(tgt)
            target_w.append(tw)
        return torch.cat(labels), torch.cat(label_w), torch.cat(targets), torch.cat(target_w)

    def loss(
        self,
        cls_score: torch.Tensor,
        bbox_pred: torch.Tensor,
        rois: torch.Tensor,
        labels: torch.Tensor,
        label_weights: torch.Tensor,
        bbox_targets: torch.Tensor,
        bbox_weights: torch.Tensor,
    ) -> dict[str, torch.Tensor]:
        """Classification loss over all sampled RoIs, regression loss over the positives."""
        num_samples = max(float(label_weights.gt(0).sum().item()), 1.0)
        losses = {"loss_cls": self.loss_cls(cls_score, labels, label_weights, avg_factor=num_samples)}
        with torch.no_grad():
            valid = label_weights > 0
            correct = (cls_score[valid].argmax(1) == labels[valid]).float()
            losses["acc"] = correct.mean() * 100 if correct.numel() else cls_score.new_tensor(0.0)
        pos = (labels >= 0) & (labels < self.num_classes)
        if pos.any():
            if self.reg_class_agnostic:
                pos_pred = bbox_pred[pos]
            else:
                pos_pred = bbox_pred.reshape(bbox_pred.shape[0], self.num_classes, 4)[pos, labels[pos]]
            if self.reg_decoded_bbox:
                pos_pred = self.bbox_coder.decode(rois[pos, 1:], pos_pred)
            losses["loss_bbox"] = self.loss_bbox(
                pos_pred, bbox_targets[pos], bbox_weights[pos], avg_factor=bbox_targets.shape[0]
            )
        else:
            # Keep the graph connected (DDP needs every parameter to receive a gradient).
            losses["loss_bbox"] = bbox_pred.sum() * 0
        return losses

    # ------------------------------------------------------------------ inference
    def get_bboxes(
        self,
        rois: torch.Tensor,
        cls_score: torch.Tensor,
        bbox_pred: torch.Tensor,
        img_shape: Sequence[int],
        cfg: Mapping[str, Any],
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One image's detections in input-image pixels: ``(boxes, scores, labels)`` after NMS."""
        scores = F.softmax(cls_score, dim=1)[:, :-1]
        boxes = self.decode(rois, bbox_pred, img_shape)
        return multiclass_nms(
            boxes,
            scores,
            float(cfg.get("score_thr", 0.05)),
            nms_iou_threshold(cfg.get("nms"), "test_cfg.rcnn.nms"),
            int(cfg.get("max_per_img", 100)),
        )

    def decode(self, rois: torch.Tensor, bbox_pred: torch.Tensor, img_shape: Sequence[int]) -> torch.Tensor:
        """Apply the predicted deltas to the RoIs: K×4 (agnostic) or K×4C, clipped to the image."""
        max_shape = (int(img_shape[0]), int(img_shape[1]))
        if self.reg_class_agnostic:
            return self.bbox_coder.decode(rois[:, 1:], bbox_pred, max_shape=max_shape)
        k = bbox_pred.shape[0]
        deltas = bbox_pred.reshape(k, self.num_classes, 4)
        boxes = self.bbox_coder.decode(rois[:, None, 1:].expand_as(deltas), deltas, max_shape=max_shape)
        return boxes.reshape(k, self.num_classes * 4)

    def regress_by_class(
        self, rois: torch.Tensor, labels: torch.Tensor, bbox_pred: torch.Tensor, img_shape: Sequence[int]
    ) -> torch.Tensor:
        """Refined K×4 boxes: each RoI moved by the deltas of class ``labels`` (Cascade R-CNN)."""
        if not self.reg_class_agnostic:
            bbox_pred = bbox_pred.reshape(bbox_pred.shape[0], self.num_classes, 4)
            bbox_pred = bbox_pred[
                torch.arange(bbox_pred.shape[0], device=labels.device), labels.clamp(max=self.num_classes - 1)
            ]
        max_shape = (int(img_shape[0]), int(img_shape[1]))
        return self.bbox_coder.decode(rois[:, 1:], bbox_pred, max_shape=max_shape)


@MODELS.register_module()
class Shared2FCBBoxHead(ConvFCBBoxHead):
    """Two shared fully connected layers, then classifier and regressor (Faster R-CNN's box head)."""

    def __init__(self, fc_out_channels: int = 1024, **kwargs: Any) -> None:
        kwargs.pop("num_shared_convs", None)
        kwargs.pop("num_shared_fcs", None)
        super().__init__(num_shared_convs=0, num_shared_fcs=2, fc_out_channels=fc_out_channels, **kwargs)


@MODELS.register_module()
class Shared4Conv1FCBBoxHead(ConvFCBBoxHead):
    """Four shared 3×3 convs (usually with GroupNorm) and one FC, then classifier and regressor (MMDetection's
    GN / from-scratch recipes)."""

    def __init__(self, fc_out_channels: int = 1024, **kwargs: Any) -> None:
        kwargs.pop("num_shared_convs", None)
        kwargs.pop("num_shared_fcs", None)
        super().__init__(num_shared_convs=4, num_shared_fcs=1, fc_out_channels=fc_out_channels, **kwargs)
