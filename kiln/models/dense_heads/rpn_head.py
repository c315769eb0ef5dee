"""Region Proposal Network head (Ren et al. 2015): objectness + box deltas per anchor, then proposals.

Takes MMDetection v2 arguments (``anchor_generator=dict(...)``, ``bbox_coder=dict(...)``); the v1 flat keys
are translated before the head is built (:mod:`kiln.config.dialects.mmdet_v1_heads`).
"""

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
from ..utils import nms_iou_threshold, put_scalars, refuse_init_cfg

__all__ = ["RPNHead"]


# MMDetection's RPN anchors: one scale per level, three ratios, FPN strides.
_DEFAULT_ANCHORS = dict(
    type="AnchorGenerator", scales=[8], ratios=[0.5, 1.0, 2.0], strides=[4, 8, 16, 32, 64]
)


@MODELS.register_module()
class RPNHead(nn.Module):
    """A shared 3×3 conv, then per-anchor objectness and box-delta 1×1 convs, on every FPN level.

    Args:
        in_channels: channels of the input feature maps.
        feat_channels: channels of the shared conv.
        num_convs: number of shared 3×3 convs.
        anchor_generator, bbox_coder: task-util configs (default: scale 8, ratios 0.5/1/2, strides
            4..64; ``DeltaXYWHBBoxCoder`` with zero means and unit stds).
        loss_cls: ``CrossEntropyLoss`` with ``use_sigmoid=True`` (one logit per anchor) or
            ``False`` (two logits: object, background).
        loss_bbox: ``L1Loss`` / ``SmoothL1Loss`` over encoded deltas.
        train_cfg: the ``rpn`` train settings: ``assigner``, ``sampler``, ``allowed_border``,
            ``pos_weight``.
        test_cfg: proposal settings (``rpn_proposal`` in training, ``rpn`` in testing) — given to
            :meth:`get_proposals` at call time.
        normalize_by_budget: ``False`` (MMDetection): both losses are averaged over the anchors actually
            sampled in the batch. ``True`` (Detectron2): they are divided by the sampling budget,
            ``train_cfg.sampler.num`` (``RPN.BATCH_SIZE_PER_IMAGE``) times the number of images, even
            when an image has fewer anchors to sample.
        ignore_padding_anchors: ``True`` (MMDetection): anchors on feature cells that cover only batch
            padding are neither positives nor negatives. ``False`` (Detectron2): every anchor is a
            candidate, wherever the image ends.
        rank_by_logits: ``False`` (MMDetection): proposals are ranked (top-k per level, NMS) by their
            sigmoid scores. ``True`` (Detectron2): by the objectness logits, the same order except that
            float32 sigmoids tie for logits that differ by less than their resolution (common early in
            training, when all logits are near 0), and ties are broken differently. Scores returned
            are sigmoids either way. Only for ``use_sigmoid=True``.
    """

    def __init__(
        self,
        in_channels: int,
        feat_channels: int = 256,
        num_classes: int = 1,
        num_convs: int = 1,
        anchor_generator: Mapping[str, Any] | None = None,
        bbox_coder: Mapping[str, Any] | None = None,
        loss_cls: Mapping[str, Any] | None = None,
        loss_bbox: Mapping[str, Any] | None = None,
        train_cfg: Mapping[str, Any] | None = None,
        test_cfg: Mapping[str, Any] | None = None,
        reg_decoded_bbox: bool = False,
        init_cfg: Any = None,
        normalize_by_budget: bool = False,
        ignore_padding_anchors: bool = True,
        rank_by_logits: bool = False,
    ) -> None:
        super().__init__()
        refuse_init_cfg(init_cfg, type(self).__name__)
        self.normalize_by_budget = bool(normalize_by_budget)
        self.ignore_padding_anchors = bool(ignore_padding_anchors)
        self.rank_by_logits = bool(rank_by_logits)
        if num_classes != 1:
            raise ValueError(f"rpn_head.num_classes={num_classes}: an RPN scores objectness only; use 1.")
        if anchor_generator is None:
            anchor_generator = dict(_DEFAULT_ANCHORS)
        if bbox_coder is None:
            bbox_coder = dict(type="DeltaXYWHBBoxCoder", target_means=[0.0] * 4, target_stds=[1.0] * 4)
        self.anchor_generator = TASK_UTILS.build(anchor_generator, cfg_path="rpn_head.anchor_generator")
        self.bbox_coder = TASK_UTILS.build(bbox_coder, cfg_path="rpn_head.bbox_coder")
        loss_cls = dict(loss_cls or dict(type="CrossEntropyLoss", use_sigmoid=True, loss_weight=1.0))
        self.use_sigmoid_cls = bool(loss_cls.get("use_sigmoid", False))
        self.loss_cls = MODELS.build(loss_cls, cfg_path="rpn_head.loss_cls")
        self.loss_bbox = MODELS.build(
            loss_bbox or dict(type="L1Loss", loss_weight=1.0), cfg_path="rpn_head.loss_bbox"
        )
        self.reg_decoded_bbox = reg_decoded_bbox
        self.cls_out_channels = 1 if self.use_sigmoid_cls else 2
        if self.rank_by_logits and not self.use_sigmoid_cls:
            raise ValueError("rpn_head.rank_by_logits=True needs loss_cls with use_sigmoid=True (one logit "
                             "per anchor, as Detectron2's RPN).")
        self.num_anchors = self.anchor_generator.num_base_anchors[0]
        if len(set(self.anchor_generator.num_base_anchors)) != 1:
            raise ValueError(
                "rpn_head.anchor_generator: every level must have the same number of anchors "
                "per location (the convs are shared across levels)."
            )
        # MMDetection's names: one conv is `rpn_conv` itself, several are `rpn_conv.<i>.conv`.
        self.num_convs = int(num_convs)
        if self.num_convs < 1:
            raise ValueError(f"rpn_head.num_convs={num_convs}: an RPN needs at least one shared conv.")
        if self.num_convs == 1:
            self.rpn_conv: nn.Module = nn.Conv2d(in_channels, feat_channels, 3, padding=1)
        else:
            self.rpn_conv = nn.Sequential(
                *(ConvNormAct(in_channels if i == 0 else feat_channels, feat_channels, 3, padding=1)
                  for i in range(self.num_convs))
            )
        channels = feat_channels
        rename_on_load(self, self._legacy_names)
        self.rpn_cls = nn.Conv2d(channels, self.num_anchors * self.cls_out_channels, 1)
        self.rpn_reg = nn.Conv2d(channels, self.num_anchors * 4, 1)
        self.train_cfg = dict(train_cfg or {})
        self.test_cfg = dict(test_cfg or {})
        self.assigner = self.sampler = None
        if self.train_cfg:
            self.assigner = TASK_UTILS.build(self.train_cfg["assigner"], cfg_path="train_cfg.rpn.assigner")
            sampler = self.train_cfg.get("sampler", dict(type="PseudoSampler"))
            self.sampler = TASK_UTILS.build(sampler, cfg_path="train_cfg.rpn.sampler")
            if self.normalize_by_budget and not isinstance(getattr(self.sampler, "num", None), int):
                raise ValueError(
                    f"rpn_head.normalize_by_budget=True divides by the sampler's budget, but "
                    f"train_cfg.rpn.sampler={sampler!r} has no num; use dict(type='RandomSampler', num=256, "
                    "pos_fraction=0.5, add_gt_as_proposals=False)."
                )
        self.init_weights()

    def _legacy_names(self, keys: list[str]) -> dict[str, str]:
        # kiln checkpoints before the renaming: Sequential(conv, ReLU, conv, ReLU...) → `rpn_conv.<2i>.`.
        if any(k.startswith("rpn_conv.") and ".conv." in k for k in keys):
            return {}
        if self.num_convs == 1:
            return renumber(keys, "rpn_conv", lambda i, rest: f"rpn_conv.{rest}" if i == 0 else None)
        return renumber(keys, "rpn_conv", lambda i, rest: f"rpn_conv.{i // 2}.conv.{rest}")

    def init_weights(self) -> None:
        """All convs ~N(0, 0.01) with zero bias (MMDetection's RPN init)."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.zeros_(m.bias)

    def forward(self, feats: Sequence[torch.Tensor]) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Per level: objectness logits B×(A·c)×H×W and deltas B×(A·4)×H×W."""
        if len(feats) != self.anchor_generator.num_levels:
            raise ValueError(
                f"rpn_head: {len(feats)} feature maps but the anchor generator has "
                f"{self.anchor_generator.num_levels} strides; match neck.num_outs to them."
            )
        cls_scores, bbox_preds = [], []
        for x in feats:
            x = F.relu(self.rpn_conv(x))
            cls_scores.append(self.rpn_cls(x))
            bbox_preds.append(self.rpn_reg(x))
        return cls_scores, bbox_preds

    def _flatten(
        self, cls_scores: Sequence[torch.Tensor], bbox_preds: Sequence[torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        # (B, A·c, H, W) → (B, H·W·A, c): the anchor generator's (y, x, anchor) order.
        b = cls_scores[0].shape[0]
        cls = torch.cat([c.permute(0, 2, 3, 1).reshape(b, -1, self.cls_out_channels) for c in cls_scores], 1)
        reg = torch.cat([r.permute(0, 2, 3, 1).reshape(b, -1, 4) for r in bbox_preds], 1)
        return cls, reg

    def _anchors(self, cls_scores: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        sizes = [tuple(c.shape[-2:]) for c in cls_scores]
        return self.anchor_generator.grid_priors(sizes, device=cls_scores[0].device)

    def valid_flags(self, featmap_sizes: Sequence[Sequence[int]], img_shape: Sequence[int],
                    device: torch.device | str = "cpu") -> torch.Tensor:
        """Which anchors (all levels, generator order) sit on a feature cell inside the image.

        Anchors on cells that cover only batch padding (an image smaller than the padded batch) are
        neither positives nor negatives (MMDetection's ``valid_flags``).
        """
        h, w = int(img_shape[0]), int(img_shape[1])
        flags = []
        for (fh, fw), (sx, sy), num in zip(featmap_sizes, self.anchor_generator.strides,
                                           self.anchor_generator.num_base_anchors):
            fh, fw = int(fh), int(fw)
            valid = torch.zeros(fh, fw, dtype=torch.bool, device=device)
            valid[: min(-(-h // int(sy)), fh), : min(-(-w // int(sx)), fw)] = True
            flags.append(valid.reshape(-1, 1).expand(-1, num).reshape(-1))
        return torch.cat(flags)

    # ------------------------------------------------------------------ training
    def loss(
        self,
        cls_scores: Sequence[torch.Tensor],
        bbox_preds: Sequence[torch.Tensor],
        gt_bboxes: Sequence[torch.Tensor],
        img_shapes: Sequence[Sequence[int]],
        gt_bboxes_ignore: Sequence[torch.Tensor | None] | None = None,
    ) -> dict[str, torch.Tensor]:
        """``loss_rpn_cls`` and ``loss_rpn_bbox`` over the sampled anchors of every image."""
        if self.assigner is None:
            raise RuntimeError(
                "RPNHead.loss needs train_cfg.rpn (assigner, sampler); the head was built "
                "without a train_cfg. Give the detector train_cfg=dict(rpn=..., ...)."
            )
        anchors = torch.cat(self._anchors(cls_scores))
        featmap_sizes = [tuple(c.shape[-2:]) for c in cls_scores]
        cls_flat, reg_flat = self._flatten(cls_scores, bbox_preds)
        allowed_border = self.train_cfg.get("allowed_border", -1)
        pos_weight = float(self.train_cfg.get("pos_weight", -1))
        labels, label_w, targets, target_w = [], [], [], []
        num_pos = num_samples = 0
        for i, gts in enumerate(gt_bboxes):
            gts = gts.to(anchors.device, torch.float32)
            if self.ignore_padding_anchors:
                valid = self.valid_flags(featmap_sizes, img_shapes[i], anchors.device)
            else:
                valid = torch.ones(len(anchors), dtype=torch.bool, device=anchors.device)
            if allowed_border >= 0:
                h, w = img_shapes[i][0], img_shapes[i][1]
                valid &= (
                    (anchors[:, 0] >= -allowed_border)
                    & (anchors[:, 1] >= -allowed_border)
                    & (anchors[:, 2] < w + allowed_border)
                    & (anchors[:, 3] < h + allowed_border)
                )
            cand = anchors[valid]
            ignore = gt_bboxes_ignore[i] if gt_bboxes_ignore is not None else None
            assign = self.assigner.assign(cand, gts, ignore, None)
            sampling = self.sampler.sample(assign, cand, gts)
            if len(sampling.bboxes) != len(cand):
                raise ValueError(
                    "train_cfg.rpn.sampler: add_gt_as_proposals must be False for the RPN "
                    "(anchors are sampled, not proposals)."
                )
            lab = anchors.new_full((len(anchors),), 1, dtype=torch.long)  # 1 = background (MM v2)
            lw = anchors.new_zeros(len(anchors))
            tgt = anchors.new_zeros((len(anchors), 4))
            tw = anchors.new_zeros((len(anchors), 4))
            idx = torch.nonzero(valid).flatten()
            pos, neg = idx[sampling.pos_inds], idx[sampling.neg_inds]
            if len(pos):
                lab[pos] = 0
                lw[pos] = 1.0 if pos_weight <= 0 else pos_weight
                pos_gt = sampling.pos_gt_bboxes
                tgt[pos] = (
                    pos_gt if self.reg_decoded_bbox else self.bbox_coder.encode(sampling.pos_bboxes, pos_gt)
                )
                tw[pos] = 1.0
            lw[neg] = 1.0
            num_pos += len(pos)
            num_samples += len(pos) + len(neg)
            labels.append(lab)
            label_w.append(lw)
            targets.append(tgt)
            target_w.append(tw)
        labels_t, label_w_t = torch.cat(labels), torch.cat(label_w)
        targets_t, target_w_t = torch.cat(targets), torch.cat(target_w)
        cls_flat = cls_flat.reshape(-1, self.cls_out_channels)
        reg_flat = reg_flat.reshape(-1, 4)
        avg = float(max(num_samples, 1))
        if self.normalize_by_budget:
            avg = float(self.sampler.num * len(gt_bboxes))
        loss_cls = self.loss_cls(cls_flat, labels_t, label_w_t, avg_factor=avg)
        if self.reg_decoded_bbox:
            all_anchors = anchors.repeat(len(gt_bboxes), 1)
            reg_flat = self.bbox_coder.decode(all_anchors, reg_flat)
        loss_bbox = self.loss_bbox(reg_flat, targets_t, target_w_t, avg_factor=avg)
        put_scalars(rpn_num_pos_anchors=float(num_pos) / max(len(gt_bboxes), 1))
        return {"loss_rpn_cls": loss_cls, "loss_rpn_bbox": loss_bbox}

    # ------------------------------------------------------------------ proposals
    def get_proposals(
        self,
        cls_scores: Sequence[torch.Tensor],
        bbox_preds: Sequence[torch.Tensor],
        img_shapes: Sequence[Sequence[int]],
        cfg: Mapping[str, Any] | None = None,
    ) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Per image: ``(proposals K×4 XYXY in input pixels, objectness scores K)``, best first.

        ``cfg`` (v2 keys, v1 in brackets): ``nms_pre`` per level, ``min_bbox_size`` (proposals need
        w, h > max(min_bbox_size, 0): zero-area boxes are always dropped),
        ``nms=dict(type='nms', iou_threshold=0.7)`` [``nms_thr``], ``max_per_img`` [``max_num``].
        NMS runs per level (MMDetection v2 semantics), then the best ``max_per_img`` are kept.
        """
        cfg = dict(cfg if cfg is not None else self.test_cfg)
        if "nms" in cfg:
            iou = nms_iou_threshold(cfg["nms"], "rpn proposal cfg nms")
        elif "nms_thr" in cfg:
            iou = float(cfg["nms_thr"])
        else:
            raise KeyError(
                "rpn proposal cfg: no nms=dict(type='nms', iou_threshold=0.7) (v2) or nms_thr "
                "(v1); "
                "set test_cfg.rpn / train_cfg.rpn_proposal."
            )
        nms_pre = int(cfg.get("nms_pre", 1000))
        max_per_img = int(cfg.get("max_per_img", cfg.get("max_num", 1000)))
        min_size = float(cfg.get("min_bbox_size", 0))
        anchors = self._anchors(cls_scores)
        results = []
        with torch.no_grad():
            for i in range(cls_scores[0].shape[0]):
                boxes_l, scores_l, ids_l = [], [], []
                for lvl, (c, r) in enumerate(zip(cls_scores, bbox_preds)):
                    c = c[i].detach().permute(1, 2, 0).reshape(-1, self.cls_out_channels)
                    if self.rank_by_logits:
                        scores = c[:, 0]  # ranked as logits, turned into sigmoids after NMS
                    elif self.use_sigmoid_cls:
                        scores = c.sigmoid()[:, 0]
                    else:
                        scores = F.softmax(c, dim=1)[:, 0]
                    deltas = r[i].detach().permute(1, 2, 0).reshape(-1, 4)
                    a = anchors[lvl]
                    if 0 < nms_pre < scores.shape[0]:
                        scores, top = scores.topk(nms_pre)
                        deltas, a = deltas[top], a[top]
                    boxes_l.append(self.bbox_coder.decode(a, deltas, max_shape=tuple(img_shapes[i][:2])))
                    scores_l.append(scores)
                    ids_l.append(torch.full_like(scores, lvl, dtype=torch.long))
                boxes, scores, ids = torch.cat(boxes_l), torch.cat(scores_l), torch.cat(ids_l)
                # Proposals with w or h <= min_bbox_size go; zero-area ones (clipped to an image edge)
                # always do, whatever min_bbox_size says (MMDetection keeps only w, h > 0).
                w, h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
                keep = (w > max(min_size, 0.0)) & (h > max(min_size, 0.0))
                boxes, scores, ids = boxes[keep], scores[keep], ids[keep]
                if boxes.numel():
                    keep = batched_nms(boxes, scores, ids, iou)[:max_per_img]
                    boxes, scores = boxes[keep], scores[keep]
                if self.rank_by_logits:
                    scores = scores.sigmoid()
                results.append((boxes, scores))
        return results
