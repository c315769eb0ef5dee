"""torchvision detector state dicts (``retinanet_resnet50_fpn``, ``fasterrcnn_resnet50_fpn``,
``fcos_resnet50_fpn``, ``maskrcnn_resnet50_fpn``) → kiln names.

Beyond renaming, two layouts differ:

* **classes**: torchvision's COCO detectors predict 91 slots indexed by COCO category id, slot 0 being the
  background (Faster R-CNN's softmax) or unused (RetinaNet's sigmoid). kiln puts the background last
  (Faster R-CNN) or has none (RetinaNet) and numbers the 80 COCO classes contiguously. Slot 0 is moved or
  dropped, and a 91-slot head keeps only the 80 ids COCO uses.
* **anchor order**: torchvision enumerates a location's anchors ratio-major, as kiln's default
  (MMDetection's ``scale_major=True``) does; a target model ordering them otherwise gets the RetinaNet
  predictor's channels permuted (see :mod:`.anchors`).
"""

from __future__ import annotations

import re

import torch

from .anchors import publisher_permutation

__all__ = ["torchvision_detection_to_kiln", "COCO91_TO_80"]

#: The 80 COCO category ids among torchvision's 91 slots (0 = background; 12, 26, 29, 30, 45, 66, 68, 69,
#: 71, 83 are ids COCO never uses).
COCO91_TO_80: tuple[int, ...] = tuple(
    i for i in range(1, 91) if i not in (12, 26, 29, 30, 45, 66, 68, 69, 71, 83))


def _keep_classes(num_slots: int) -> list[int]:
    """Slots kept, in kiln order, out of torchvision's ``num_slots`` (slot 0 always goes)."""
    return list(COCO91_TO_80) if num_slots == 91 else list(range(1, num_slots))


def _conv_index(rest: str) -> tuple[int, str]:
    # torchvision >= 0.13 wraps each head conv in Conv2dNormActivation (conv.j.0.weight); older releases
    # stored Sequential(conv, relu, conv, relu, ...) (conv.{2j}.weight).
    m = re.match(r"^(\d+)\.0\.(weight|bias)$", rest)
    if m:
        return int(m.group(1)), m.group(2)
    m = re.match(r"^(\d+)\.(weight|bias)$", rest)
    if not m:
        raise ValueError(f"torchvision head key '{rest}' has an unknown layout")
    return int(m.group(1)) // 2, m.group(2)


def torchvision_detection_to_kiln(
    state: dict[str, torch.Tensor], anchor_slots: dict[str, list[tuple[float, float]]] | None = None
) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Rename and re-lay a torchvision detector's state dict for kiln; return ``(state, notes)``.

    ``anchor_slots`` (:func:`~kiln.checkpoint_convert.anchors.anchor_slots` of the target model) lets the
    RetinaNet head follow a target that orders its anchors other than kiln's default; without it the
    default (ratio-major, torchvision's own order) is assumed.
    """
    notes: list[str] = []
    # FCOS's towers are Sequential(conv, GroupNorm, ReLU) per layer and it predicts a centerness.
    fcos = "head.regression_head.bbox_ctrness.weight" in state
    inner = sorted({int(m.group(1)) for k in state
                    if (m := re.match(r"backbone\.fpn\.inner_blocks\.(\d+)", k))})
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        k = key
        if k.startswith("backbone.body."):
            sub = k[len("backbone.body."):]
            if sub.startswith("fc."):
                continue
            k = "backbone." + sub
        elif m := re.match(r"^backbone\.fpn\.(inner|layer)_blocks\.(\d+)\.(?:0\.)?(weight|bias)$", k):
            kind, idx, leaf = m.groups()
            k = f"neck.{'lateral_convs' if kind == 'inner' else 'fpn_convs'}.{idx}.conv.{leaf}"
        elif m := re.match(r"^backbone\.fpn\.extra_blocks\.p([67])\.(weight|bias)$", k):
            k = f"neck.fpn_convs.{len(inner) + int(m.group(1)) - 6}.conv.{m.group(2)}"
        elif fcos and (m := re.match(r"^head\.(classification|regression)_head\.conv\.(\d+)\.(\w+)$", k)):
            idx = int(m.group(2))
            part = "conv" if idx % 3 == 0 else "gn"
            tower = "cls" if m.group(1) == "classification" else "reg"
            k = f"bbox_head.{tower}_convs.{idx // 3}.{part}.{m.group(3)}"
        elif fcos and k.startswith("head.regression_head.bbox_ctrness."):
            k = "bbox_head.conv_centerness." + k.rsplit(".", 1)[1]
        elif m := re.match(r"^head\.(classification|regression)_head\.conv\.(.+)$", k):
            idx, leaf = _conv_index(m.group(2))
            k = f"bbox_head.{'cls' if m.group(1) == 'classification' else 'reg'}_convs.{idx}.conv.{leaf}"
        elif k.startswith("head.classification_head.cls_logits.") or k.startswith(
                "head.regression_head.bbox_reg."):
            continue  # re-laid out below
        elif m := re.match(r"^rpn\.head\.conv\.(?:0\.)?(?:0\.)?(weight|bias)$", k):
            k = f"rpn_head.rpn_conv.{m.group(1)}"
        elif k.startswith("rpn.head.cls_logits."):
            k = "rpn_head.rpn_cls." + k.rsplit(".", 1)[1]
        elif k.startswith("rpn.head.bbox_pred."):
            k = "rpn_head.rpn_reg." + k.rsplit(".", 1)[1]
        elif m := re.match(r"^roi_heads\.box_head\.fc([67])\.(weight|bias)$", k):
            k = f"roi_head.bbox_head.shared_fcs.{int(m.group(1)) - 6}.{m.group(2)}"
        elif k.startswith("roi_heads.box_predictor.cls_score."):
            keep = _keep_classes(value.shape[0])
            value = torch.cat([value[keep], value[:1]])
            k = "roi_head.bbox_head.fc_cls." + k.rsplit(".", 1)[1]
        elif m := re.match(r"^roi_heads\.mask_head\.(?:(\d+)\.0|mask_fcn(\d+))\.(weight|bias)$", k):
            # MaskRCNNHeads: Conv2dNormActivation j (>= 0.13) or mask_fcn{j+1} (older releases)
            idx = int(m.group(1)) if m.group(1) is not None else int(m.group(2)) - 1
            k = f"roi_head.mask_head.convs.{idx}.conv.{m.group(3)}"
        elif k.startswith("roi_heads.mask_predictor.conv5_mask."):
            k = "roi_head.mask_head.upsample." + k.rsplit(".", 1)[1]
        elif k.startswith("roi_heads.mask_predictor.mask_fcn_logits."):
            value = value[_keep_classes(value.shape[0])]  # slot 0 (background) has no mask
            k = "roi_head.mask_head.conv_logits." + k.rsplit(".", 1)[1]
        elif k.startswith("roi_heads.box_predictor.bbox_pred."):
            keep = _keep_classes(value.shape[0] // 4)
            value = value.reshape(-1, 4, *value.shape[1:])[keep].flatten(0, 1)
            k = "roi_head.bbox_head.fc_reg." + k.rsplit(".", 1)[1]
        out[k] = value
    if "roi_heads.box_predictor.cls_score.weight" in state:
        n = state["roi_heads.box_predictor.cls_score.weight"].shape[0]
        notes.append(f"box predictor: background slot 0 moved last, {n} slots -> "
                     f"{len(_keep_classes(n))} classes")
    if "roi_heads.mask_predictor.mask_fcn_logits.weight" in state:
        n = state["roi_heads.mask_predictor.mask_fcn_logits.weight"].shape[0]
        notes.append(f"mask predictor: background slot 0 dropped, {n} slots -> "
                     f"{len(_keep_classes(n))} classes")
    reg_w = state.get("head.regression_head.bbox_reg.weight")
    cls_w = state.get("head.classification_head.cls_logits.weight")
    if fcos and reg_w is not None and cls_w is not None:
        keep = _keep_classes(cls_w.shape[0])
        for leaf in ("weight", "bias"):
            out[f"bbox_head.conv_cls.{leaf}"] = state[f"head.classification_head.cls_logits.{leaf}"][keep]
            out[f"bbox_head.conv_reg.{leaf}"] = state[f"head.regression_head.bbox_reg.{leaf}"]
        notes.append(f"FCOS head: {cls_w.shape[0]} class slots -> {len(keep)} classes; torchvision's points "
                     "sit at the cell corner and it has no per-level Scale: build FCOSHead with "
                     "prior_offset=0 (scales start at 1)")
    elif reg_w is not None and cls_w is not None:
        num_anchors = reg_w.shape[0] // 4
        num_slots = cls_w.shape[0] // num_anchors
        keep = _keep_classes(num_slots)
        slots = (anchor_slots or {}).get("bbox_head")
        perm = publisher_permutation(slots, "ratio_major") if slots and len(slots) == num_anchors else None
        order = perm if perm is not None else list(range(num_anchors))
        for leaf in ("weight", "bias"):
            cls = state[f"head.classification_head.cls_logits.{leaf}"]
            cls = cls.reshape(num_anchors, num_slots, *cls.shape[1:])[order][:, keep].flatten(0, 1)
            reg = state[f"head.regression_head.bbox_reg.{leaf}"]
            reg = reg.reshape(num_anchors, 4, *reg.shape[1:])[order].flatten(0, 1)
            out[f"bbox_head.retina_cls.{leaf}"] = cls
            out[f"bbox_head.retina_reg.{leaf}"] = reg
        notes.append(f"RetinaNet head: {num_slots} class slots -> {len(keep)} classes"
                     + (", anchors reordered to the model's order" if perm is not None else ""))
    return out, notes
