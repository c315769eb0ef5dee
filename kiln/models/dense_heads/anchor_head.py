"""``AnchorHead``: dense per-anchor classification + box regression, its targets, losses and decoding.

The head takes MMDetection v2 arguments (``anchor_generator=dict(type='AnchorGenerator', ...)``,
``bbox_coder=dict(type='DeltaXYWHBBoxCoder', ...)``, ``num_classes`` = foreground classes). MMDetection v1
configs (flat ``anchor_ratios/anchor_strides/...`` keys, background counted in ``num_classes``) are
translated before the head is built (:mod:`kiln.config.dialects.mmdet_v1_heads`, applied by
``build_detector``/``build_head``). Labels are 0-based foreground indices.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn as nn
from torchvision.ops import batched_nms

from kiln.registry import MODELS, TASK_UTILS

from ..task_modules import PseudoSampler
from ..utils import cfg_get, nms_iou_threshold, put_scalars, refuse_init_cfg

__all__ = ["AnchorHead"]

@MODELS.register_module()
class AnchorHead(nn.Module):
    """Anchor-based dense head with one 1×1 conv for classes and one for box deltas.

    Args:
        num_classes: foreground classes.
        in_channels: channels of each input feature level.
        feat_channels: hidden channels (used by subclasses with conv towers).
        anchor_generator, bbox_coder: ``TASK_UTILS`` configs.
        reg_decoded_bbox: regress decoded boxes (for IoU-style losses) instead of deltas.
        loss_cls, loss_bbox: ``MODELS`` loss configs.
        train_cfg: ``assigner``, optional ``sampler`` (default: no sampling), ``allowed_border``
            (-1: all anchors; ≥0: only anchors inside the image + border), ``pos_weight`` (-1: 1.0).
        test_cfg: ``nms_pre``, ``min_bbox_size``, ``score_thr``, ``nms=dict(type='nms', iou_threshold)``
            (v1 ``iou_thr``), ``max_per_img``.
        loss_prefix: prepended to loss names (``'rpn_'`` → ``loss_rpn_cls``).
        loss_normalizer_momentum: ``None`` (default): losses are averaged over the positive anchors of the
            batch (the sampled anchors when a sampler is set), as MMDetection does. A momentum ``m`` in
            ``[0, 1)`` divides them instead by an exponential moving average of that count,
            ``n ← m·n + (1 - m)·max(num_pos, 1)`` updated once per training step before use (Detectron2's
            RetinaNet: ``m = 0.9``), which steadies the loss scale when few objects are in a batch. The
            average is a buffer (``loss_normalizer``), so it is checkpointed and resumed exactly.
        loss_normalizer_init: the average's starting value (Detectron2: 100).
    """

    # Heads sharing one conv across levels need one anchor count everywhere; SSD's per-level convs do not.
    same_anchors_per_level = True

    def __init__(
        self,
        num_classes: int,
        in_channels: int,
        feat_channels: int = 256,
        anchor_generator: Mapping[str, Any] | None = None,
        bbox_coder: Mapping[str, Any] | None = None,
        reg_decoded_bbox: bool = False,
        loss_cls: Mapping[str, Any] | None = None,
        loss_bbox: Mapping[str, Any] | None = None,
        train_cfg: Any = None,
        test_cfg: Any = None,
        loss_prefix: str = "",
        init_cfg: Any = None,
        loss_normalizer_momentum: float | None = None,
        loss_normalizer_init: float = 100.0,
    ) -> None:
        super().__init__()
        refuse_init_cfg(init_cfg, type(self).__name__)
        self.loss_normalizer_momentum = None
        if loss_normalizer_momentum is not None:
            momentum = float(loss_normalizer_momentum)
            if not 0.0 <= momentum < 1.0 or float(loss_normalizer_init) <= 0:
                raise ValueError(
                    f"{type(self).__name__}: loss_normalizer_momentum={loss_normalizer_momentum} must be in "
                    f"[0, 1) and loss_normalizer_init={loss_normalizer_init} > 0 (Detectron2's RetinaNet: "
                    "0.9 and 100)."
                )
            self.loss_normalizer_momentum = momentum
            # float64 like Detectron2's Python float, so the running value does not drift in float32.
            init = torch.tensor(float(loss_normalizer_init), dtype=torch.float64)
            self.register_buffer("loss_normalizer", init)
        loss_cls = (
            dict(loss_cls)
            if loss_cls is not None
            else dict(type="CrossEntropyLoss", use_sigmoid=True, loss_weight=1.0)
        )
        loss_bbox = (
            dict(loss_bbox)
            if loss_bbox is not None
            else dict(type="SmoothL1Loss", beta=1 / 9, loss_weight=1.0)
        )
        # Ask the built loss (FocalLoss defaults to sigmoid without saying so in the config).
        self.loss_cls = MODELS.build(loss_cls, cfg_path="bbox_head.loss_cls")
        self.use_sigmoid_cls = bool(getattr(self.loss_cls, "use_sigmoid", loss_cls.get("use_sigmoid", False)))
        self.num_classes = int(num_classes)
        self.cls_out_channels = self.num_classes if self.use_sigmoid_cls else self.num_classes + 1
        self.in_channels = in_channels
        self.feat_channels = feat_channels
        self.reg_decoded_bbox = reg_decoded_bbox
        self.loss_prefix = loss_prefix
        self.train_cfg = train_cfg
        self.test_cfg = test_cfg
        if anchor_generator is None:
            anchor_generator = dict(
                type="AnchorGenerator", scales=[8, 16, 32], ratios=[0.5, 1.0, 2.0], strides=[4, 8, 16, 32, 64]
            )
        if bbox_coder is None:
            bbox_coder = dict(type="DeltaXYWHBBoxCoder")
        self.prior_generator = TASK_UTILS.build(anchor_generator, cfg_path="bbox_head.anchor_generator")
        self.bbox_coder = TASK_UTILS.build(bbox_coder, cfg_path="bbox_head.bbox_coder")
        self.loss_bbox = MODELS.build(loss_bbox, cfg_path="bbox_head.loss_bbox")
        self.num_anchors = self.prior_generator.num_base_anchors[0]
        if self.same_anchors_per_level and len(set(self.prior_generator.num_base_anchors)) != 1:
            raise ValueError(
                "AnchorHead needs the same number of anchors on every level; got "
                f"{self.prior_generator.num_base_anchors}."
            )
        self.assigner = self.sampler = None
        if train_cfg is not None and cfg_get(train_cfg, "assigner") is not None:
            self.assigner = TASK_UTILS.build(cfg_get(train_cfg, "assigner"), cfg_path="train_cfg.assigner")
            sampler = cfg_get(train_cfg, "sampler")
            self.sampler = (
                TASK_UTILS.build(sampler, cfg_path="train_cfg.sampler")
                if sampler is not None
                else PseudoSampler()
            )
        self._init_layers()
        self.init_weights()

    def _load_from_state_dict(self, state_dict: dict, prefix: str, *args: Any, **kwargs: Any) -> None:
        # The loss normalizer is training state, not a weight: checkpoints from a head without it (an
        # MMDetection or Detectron2 model) keep the starting value, and a head without the option
        # has no use for a saved one.
        key = prefix + "loss_normalizer"
        if self.loss_normalizer_momentum is None:
            state_dict.pop(key, None)
        elif key not in state_dict:
            state_dict[key] = self.loss_normalizer.clone()
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def _normalizer(self, num_pos: int) -> float:
        """The EMA loss normalizer after this step's update (updated in training mode only)."""
        if self.training:
            m = self.loss_normalizer_momentum
            self.loss_normalizer.mul_(m).add_((1.0 - m) * max(num_pos, 1))
        return float(self.loss_normalizer.item())

    # MMDetection v1 name
    @property
    def anchor_generator(self) -> Any:
        """The anchor generator (alias of ``prior_generator``)."""
        return self.prior_generator

    def _init_layers(self) -> None:
        self.conv_cls = nn.Conv2d(self.in_channels, self.num_anchors * self.cls_out_channels, 1)
        self.conv_reg = nn.Conv2d(self.in_channels, self.num_anchors * 4, 1)

    def init_weights(self) -> None:
        """Normal(0, 0.01) convs with zero bias."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.normal_(m.weight, std=0.01)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def forward_single(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Class logits (N×A·C×H×W) and box deltas (N×A·4×H×W) of one level."""
        return self.conv_cls(x), self.conv_reg(x)

    def forward(self, feats: Sequence[torch.Tensor]) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Per-level class logits and box deltas."""
        cls_scores, bbox_preds = [], []
        for x in feats:
            c, b = self.forward_single(x)
            cls_scores.append(c)
            bbox_preds.append(b)
        return cls_scores, bbox_preds

    # ------------------------------------------------------------------ training
    def _flatten(self, maps: Sequence[torch.Tensor], channels: int) -> torch.Tensor:
        n = maps[0].shape[0]
        return torch.cat([m.permute(0, 2, 3, 1).reshape(n, -1, channels) for m in maps], dim=1)

    def get_targets(
        self,
        anchors: torch.Tensor,
        gt_bboxes: Sequence[torch.Tensor],
        gt_labels: Sequence[torch.Tensor],
        metas: Sequence[Mapping[str, Any]],
        gt_bboxes_ignore: Sequence[torch.Tensor | None] | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, int, int]:
        """Per-anchor targets for every image, stacked: labels (N×A, background = ``num_classes``),
        label weights, box targets (N×A×4), box weights, and the numbers of positives and negatives."""
        if self.assigner is None:
            raise RuntimeError(
                f"{type(self).__name__} has no train_cfg.assigner; build the detector with a train_cfg "
                "(e.g. assigner=dict(type='MaxIoUAssigner', pos_iou_thr=0.5, neg_iou_thr=0.4))."
            )
        allowed_border = cfg_get(self.train_cfg, "allowed_border", -1)
        pos_weight = cfg_get(self.train_cfg, "pos_weight", -1)
        num_anchors = len(anchors)
        labels_all, lw_all, tgt_all, bw_all = [], [], [], []
        num_pos = num_neg = 0
        for i, meta in enumerate(metas):
            gt = gt_bboxes[i]
            labels = anchors.new_full((num_anchors,), self.num_classes, dtype=torch.long)
            label_weights = anchors.new_zeros(num_anchors)
            targets = anchors.new_zeros((num_anchors, 4))
            box_weights = anchors.new_zeros((num_anchors, 4))
            if allowed_border is not None and allowed_border >= 0:
                h, w = meta["img_shape"][:2]
                b = allowed_border
                valid = (
                    (anchors[:, 0] >= -b)
                    & (anchors[:, 1] >= -b)
                    & (anchors[:, 2] < w + b)
                    & (anchors[:, 3] < h + b)
                )
                valid_idx = torch.nonzero(valid).flatten()
                cand = anchors[valid_idx]
            else:
                valid_idx = None
                cand = anchors
            ignore = gt_bboxes_ignore[i] if gt_bboxes_ignore else None
            assign = self.assigner.assign(cand, gt, ignore, gt_labels[i])
            res = self.sampler.sample(assign, cand, gt, gt_labels[i])
            pos, neg = res.pos_inds, res.neg_inds
            if valid_idx is not None:
                pos, neg = valid_idx[pos], valid_idx[neg]
            if len(pos):
                if self.reg_decoded_bbox:
                    targets[pos] = res.pos_gt_bboxes.to(targets)
                else:
                    targets[pos] = self.bbox_coder.encode(res.pos_bboxes, res.pos_gt_bboxes)
                box_weights[pos] = 1.0
                labels[pos] = gt_labels[i][res.pos_assigned_gt_inds]
                label_weights[pos] = 1.0 if pos_weight is None or pos_weight <= 0 else float(pos_weight)
            label_weights[neg] = 1.0
            num_pos += len(pos)
            num_neg += len(neg)
            labels_all.append(labels)
            lw_all.append(label_weights)
            tgt_all.append(targets)
            bw_all.append(box_weights)
        return (
            torch.stack(labels_all),
            torch.stack(lw_all),
            torch.stack(tgt_all),
            torch.stack(bw_all),
            num_pos,
            num_neg,
        )

    def loss(
        self,
        feats: Sequence[torch.Tensor],
        gt_bboxes: Sequence[torch.Tensor],
        gt_labels: Sequence[torch.Tensor],
        metas: Sequence[Mapping[str, Any]],
        gt_bboxes_ignore: Sequence[torch.Tensor | None] | None = None,
    ) -> dict[str, torch.Tensor]:
        """``{'loss_cls', 'loss_bbox'}`` (with ``loss_prefix``) averaged over positive anchors."""
        cls_scores, bbox_preds = self(feats)
        return self.loss_by_feat(cls_scores, bbox_preds, gt_bboxes, gt_labels, metas, gt_bboxes_ignore)

    def loss_by_feat(
        self,
        cls_scores: Sequence[torch.Tensor],
        bbox_preds: Sequence[torch.Tensor],
        gt_bboxes: Sequence[torch.Tensor],
        gt_labels: Sequence[torch.Tensor],
        metas: Sequence[Mapping[str, Any]],
        gt_bboxes_ignore: Sequence[torch.Tensor | None] | None = None,
    ) -> dict[str, torch.Tensor]:
        """Losses from head outputs (the part of :meth:`loss` after the forward pass)."""
        device = cls_scores[0].device
        sizes = [tuple(c.shape[-2:]) for c in cls_scores]
        anchors = torch.cat(self.prior_generator.grid_priors(sizes, device))
        cls = self._flatten(cls_scores, self.cls_out_channels)
        reg = self._flatten(bbox_preds, 4)
        labels, label_weights, targets, box_weights, num_pos, num_neg = self.get_targets(
            anchors, gt_bboxes, gt_labels, metas, gt_bboxes_ignore
        )
        sampling = not isinstance(self.sampler, PseudoSampler)
        avg_factor = max(num_pos + num_neg if sampling else num_pos, 1)
        if self.loss_normalizer_momentum is not None:
            avg_factor = self._normalizer(num_pos)
        loss_cls = self.loss_cls(
            cls.reshape(-1, self.cls_out_channels),
            labels.reshape(-1),
            label_weights.reshape(-1),
            avg_factor=avg_factor,
        )
        pos = box_weights[..., 0] > 0
        if pos.any():
            pred = reg[pos]
            if self.reg_decoded_bbox:
                pred = self.bbox_coder.decode(anchors.expand(len(metas), -1, -1)[pos], pred)
            loss_bbox = self.loss_bbox(pred, targets[pos], box_weights[pos], avg_factor=avg_factor)
        else:
            loss_bbox = reg.sum() * 0.0  # keeps the graph (and DDP) happy on images without objects
        put_scalars(
            **{
                f"{self.loss_prefix or 'head_'}num_pos_anchors": num_pos / max(len(metas), 1),
                f"{self.loss_prefix or 'head_'}num_neg_anchors": num_neg / max(len(metas), 1),
            }
        )
        p = self.loss_prefix
        return {f"loss_{p}cls": loss_cls, f"loss_{p}bbox": loss_bbox}

    # ------------------------------------------------------------------ inference
    def predict(
        self, feats: Sequence[torch.Tensor], metas: Sequence[Mapping[str, Any]]
    ) -> list[dict[str, torch.Tensor]]:
        """Per-image ``{'boxes', 'scores', 'labels'}`` in input-image pixels, post-processed."""
        cls_scores, bbox_preds = self(feats)
        return self.predict_by_feat(cls_scores, bbox_preds, metas)

    def predict_by_feat(
        self,
        cls_scores: Sequence[torch.Tensor],
        bbox_preds: Sequence[torch.Tensor],
        metas: Sequence[Mapping[str, Any]],
        cfg: Any = None,
    ) -> list[dict[str, torch.Tensor]]:
        """Decode head outputs: per level keep scores > ``score_thr``, top ``nms_pre``; then NMS per class."""
        cfg = cfg if cfg is not None else self.test_cfg
        nms_pre = int(cfg_get(cfg, "nms_pre", 1000))
        score_thr = float(cfg_get(cfg, "score_thr", 0.05))
        min_size = float(cfg_get(cfg, "min_bbox_size", 0))
        max_per_img = int(cfg_get(cfg, "max_per_img", 100))
        iou = nms_iou_threshold(cfg_get(cfg, "nms"))
        device = cls_scores[0].device
        sizes = [tuple(c.shape[-2:]) for c in cls_scores]
        anchors_lvl = self.prior_generator.grid_priors(sizes, device)
        n = cls_scores[0].shape[0]
        C = self.num_classes
        per_level = []
        for c, b in zip(cls_scores, bbox_preds):
            logits = c.permute(0, 2, 3, 1).reshape(n, -1, self.cls_out_channels)
            probs = logits.sigmoid() if self.use_sigmoid_cls else logits.softmax(-1)[..., :C]
            per_level.append((probs, b.permute(0, 2, 3, 1).reshape(n, -1, 4)))
        results = []
        for i, meta in enumerate(metas):
            boxes_l, scores_l, labels_l = [], [], []
            for (probs, deltas), anchors in zip(per_level, anchors_lvl):
                scores = probs[i].reshape(-1)
                keep = torch.nonzero(scores > score_thr).flatten()
                scores = scores[keep]
                if len(scores) > nms_pre:
                    scores, top = scores.topk(nms_pre)
                    keep = keep[top]
                anchor_idx = torch.div(keep, C, rounding_mode="floor")
                boxes_l.append(
                    self.bbox_coder.decode(
                        anchors[anchor_idx], deltas[i][anchor_idx], max_shape=meta["img_shape"]
                    )
                )
                scores_l.append(scores)
                labels_l.append(keep % C)
            boxes = torch.cat(boxes_l)
            scores = torch.cat(scores_l)
            labels = torch.cat(labels_l)
            # Boxes with w or h <= min_bbox_size go, and zero-area boxes (clipped to an image edge)
            # always do, whatever min_bbox_size says (MMDetection keeps only w, h > 0).
            wh = boxes[:, 2:] - boxes[:, :2]
            ok = (wh[:, 0] > max(min_size, 0.0)) & (wh[:, 1] > max(min_size, 0.0))
            boxes, scores, labels = boxes[ok], scores[ok], labels[ok]
            keep = batched_nms(boxes, scores, labels, iou)[:max_per_img]
            results.append({"boxes": boxes[keep], "scores": scores[keep], "labels": labels[keep]})
        return results
