"""Decoding dense-head outputs into detections when a quality branch (centerness) rescales the scores.

Shared by the anchor-free FCOS head and the anchor-based ATSS head: per level, keep the class scores
above ``score_thr`` and the ``nms_pre`` best of them, decode their boxes from the priors, multiply the
scores by the quality factor, then class-wise NMS over all levels (MMDetection 3.x's order of steps).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torchvision.ops import batched_nms

from kiln.utils.dist import get_world_size

from ..utils import cfg_get, nms_iou_threshold

__all__ = ["filter_scores_and_topk", "predict_dense", "reduce_mean"]

Decoder = Callable[[torch.Tensor, torch.Tensor, Sequence[int]], torch.Tensor]


def reduce_mean(tensor: torch.Tensor) -> torch.Tensor:
    """The mean of ``tensor`` over all ranks (itself when not distributed), so that every rank divides its
    losses by the same count of positives, as MMDetection does."""
    world = get_world_size()
    if world == 1:
        return tensor
    import torch.distributed as dist

    out = tensor.clone()
    dist.all_reduce(out.div_(world))
    return out


def filter_scores_and_topk(
    scores: torch.Tensor, score_thr: float, topk: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """From P×C ``scores``, those ``> score_thr``, best first, at most ``topk`` (``topk <= 0``: all).

    Returns the kept scores, their class labels and their row (prior) indices.
    """
    valid = scores > score_thr
    kept = scores[valid]
    idx = torch.nonzero(valid)
    kept, order = kept.sort(descending=True)
    if topk > 0:
        kept, order = kept[:topk], order[:topk]
    rows, labels = idx[order].unbind(dim=1)
    return kept, labels, rows


def predict_dense(
    cls_scores: Sequence[torch.Tensor],
    bbox_preds: Sequence[torch.Tensor],
    score_factors: Sequence[torch.Tensor] | None,
    priors: Sequence[torch.Tensor],
    decode: Decoder,
    metas: Sequence[Mapping[str, Any]],
    cfg: Any,
    use_sigmoid: bool = True,
) -> list[dict[str, torch.Tensor]]:
    """Per-image ``{'boxes', 'scores', 'labels'}`` in input-image pixels.

    Args:
        cls_scores: per level, N×(A·C)×H×W class logits (``C`` foreground classes with sigmoid,
            ``C + 1`` with softmax, the last being background).
        bbox_preds: per level, N×(A·4)×H×W box regressions (whatever ``decode`` reads).
        score_factors: per level, N×A×H×W quality logits (centerness), or ``None``.
        priors: per level, (H·W·A)×D priors (points or anchors), ordered as the permuted outputs.
        decode: ``decode(priors, preds, img_shape) -> boxes`` (boxes clipped to the image).
        metas: per image, ``img_shape``.
        cfg: ``score_thr``, ``nms_pre`` (per level), ``min_bbox_size``, ``nms``, ``max_per_img``.
    """
    score_thr = float(cfg_get(cfg, "score_thr", 0.05))
    nms_pre = int(cfg_get(cfg, "nms_pre", -1))
    min_size = float(cfg_get(cfg, "min_bbox_size", 0))
    max_per_img = int(cfg_get(cfg, "max_per_img", 100))
    iou = nms_iou_threshold(cfg_get(cfg, "nms"))
    n = cls_scores[0].shape[0]
    results = []
    for i in range(n):
        boxes_l, scores_l, labels_l = [], [], []
        for lvl, (c, b) in enumerate(zip(cls_scores, bbox_preds)):
            channels = c.shape[1] // (b.shape[1] // 4)
            logits = c[i].permute(1, 2, 0).reshape(-1, channels)
            probs = logits.sigmoid() if use_sigmoid else logits.softmax(-1)[:, :-1]
            deltas = b[i].permute(1, 2, 0).reshape(-1, 4)
            scores, labels, rows = filter_scores_and_topk(probs, score_thr, nms_pre)
            boxes = decode(priors[lvl][rows], deltas[rows], metas[i]["img_shape"][:2])
            if score_factors is not None:
                factor = score_factors[lvl][i].permute(1, 2, 0).reshape(-1).sigmoid()
                scores = scores * factor[rows]
            boxes_l.append(boxes)
            scores_l.append(scores)
            labels_l.append(labels)
        boxes, scores, labels = torch.cat(boxes_l), torch.cat(scores_l), torch.cat(labels_l)
        if min_size >= 0:
            wh = boxes[:, 2:] - boxes[:, :2]
            ok = (wh[:, 0] > min_size) & (wh[:, 1] > min_size)
            boxes, scores, labels = boxes[ok], scores[ok], labels[ok]
        keep = batched_nms(boxes.float(), scores.float(), labels, iou)
        if max_per_img > 0:
            keep = keep[:max_per_img]
        results.append({"boxes": boxes[keep], "scores": scores[keep], "labels": labels[keep]})
    return results
