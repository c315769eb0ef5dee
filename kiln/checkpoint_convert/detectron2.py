"""Detectron2 names → kiln (MMDetection) names.

Detectron2 and MMDetection lay a detector's classes out the same way (background last, class-specific box
deltas), so converting is renaming, plus the order of a location's anchors (see :mod:`.anchors`):

============================================  ============================================
Detectron2                                    kiln / MMDetection
============================================  ============================================
``[backbone.[bottom_up.]]stem.conv1[.norm]``  ``[backbone.]conv1`` / ``bn1``
``resN.i.convK[.norm]``                       ``layer{N-1}.i.convK`` / ``bnK``
``resN.i.shortcut[.norm]``                    ``layer{N-1}.i.downsample.0`` / ``.1``
``backbone.fpn_lateralN`` / ``fpn_outputN``   ``neck.lateral_convs.j.conv`` / ``neck.fpn_convs.j.conv``
``backbone.top_block.p6`` / ``p7``            the extra ``neck.fpn_convs`` after the outputs
``proposal_generator.rpn_head.conv``          ``rpn_head.rpn_conv``
``...objectness_logits`` / ``anchor_deltas``  ``rpn_head.rpn_cls`` / ``rpn_head.rpn_reg``
``roi_heads.box_head.fcK`` / ``convK``        ``roi_head.bbox_head.shared_fcs.{K-1}`` / ``shared_convs``
``roi_heads.box_predictor.cls_score``         ``roi_head.bbox_head.fc_cls`` (``bbox_pred``: ``fc_reg``)
``roi_heads.res5.i...``                       ``roi_head.shared_head.layer4.i...`` (C4)
``roi_heads.box_head.S`` / ``box_predictor.S``  ``roi_head.bbox_head.S...`` (cascade stage S)
``head.cls_subnet.2j`` / ``bbox_subnet.2j``   ``bbox_head.cls_convs.j.conv`` / ``reg_convs.j.conv``
``head.cls_score`` / ``head.bbox_pred``       ``bbox_head.retina_cls`` / ``bbox_head.retina_reg``
``roi_heads.mask_head.mask_fcnK[.norm]``      ``roi_head.mask_head.convs.{K-1}.conv`` / ``bn``
``roi_heads.mask_head.deconv`` / ``predictor``  ``roi_head.mask_head.upsample`` / ``conv_logits``
============================================  ============================================

FPN levels are numbered from the first lateral present (``fpn_lateral3`` is ``lateral_convs.0`` in a
RetinaNet that starts at res3, ``fpn_lateral2`` in a Faster R-CNN).
"""

from __future__ import annotations

import re

import torch

from .anchors import grid_permutation, permute_anchor_channels, publisher_permutation

__all__ = ["detectron2_to_kiln", "resnet_names_to_kiln"]

_BLOCK = re.compile(r"^res([2-5])\.(\d+)\.(conv\d|shortcut)(\.norm)?\.(.+)$")


def resnet_names_to_kiln(key: str) -> str:
    """One Detectron2 ResNet key without prefix (``stem.conv1.norm.weight``, ``res3.0.shortcut.weight``)
    in kiln's (torchvision's) spelling; other keys come back unchanged."""
    if key.startswith("stem.conv1.norm."):
        return "bn1." + key[len("stem.conv1.norm."):]
    if key.startswith("stem.conv1."):
        return "conv1." + key[len("stem.conv1."):]
    m = _BLOCK.match(key)
    if not m:
        return key
    stage, block, conv, norm, rest = m.groups()
    layer = f"layer{int(stage) - 1}.{block}"
    if conv == "shortcut":
        return f"{layer}.downsample.{1 if norm else 0}.{rest}"
    return f"{layer}.bn{conv[4:]}.{rest}" if norm else f"{layer}.{conv}.{rest}"


def _conv_module(norm: str | None, rest: str) -> str:
    # kiln's ConvModule names its norm after the type; BN is the common case, GN is tried when aligning.
    return f"bn.{rest}" if norm else f"conv.{rest}"


def _anchor_perm(num_anchors: int, slots: list[tuple[float, float]] | None, what: str,
                 notes: list[str]) -> list[int] | None:
    if slots and len(slots) == num_anchors:
        perm = publisher_permutation(slots, "size_major")
    elif num_anchors == 9:  # Detectron2's RetinaNet: 3 sizes x 3 ratios, into kiln's default order
        perm = grid_permutation(3, 3, "size_major")
    elif num_anchors <= 3:
        perm = None
    else:
        notes.append(f"{what}: {num_anchors} anchors per location kept in Detectron2's size-major order "
                     "(load into the model to reorder them for its anchor generator)")
        return None
    if perm is not None:
        notes.append(f"{what}: anchors reordered from Detectron2's size-major order to the model's")
    return perm


def detectron2_to_kiln(
    state: dict[str, torch.Tensor], anchor_slots: dict[str, list[tuple[float, float]]] | None = None
) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Rename a Detectron2 state dict into kiln names; return ``(state, notes)``.

    Per-anchor outputs (RetinaNet ``head.cls_score``/``bbox_pred``, RPN ``objectness_logits``/
    ``anchor_deltas``) are reordered from Detectron2's size-major anchor order into the target's:
    ``anchor_slots`` (:func:`~kiln.checkpoint_convert.anchors.anchor_slots` of the model) says which;
    without it kiln's default (ratio-major) is assumed.
    """
    anchor_slots = anchor_slots or {}
    notes: list[str] = []
    perms: dict[str, tuple[int, list[int] | None]] = {}
    for head, src, what in (("bbox_head", "head.bbox_pred.weight", "RetinaNet head"),
                            ("rpn_head", "proposal_generator.rpn_head.anchor_deltas.weight", "RPN head")):
        if src in state:
            num = state[src].shape[0] // 4
            perms[head] = (num, _anchor_perm(num, anchor_slots.get(head), what, notes))
    laterals = sorted({int(m.group(1)) for k in state if (m := re.match(r"backbone\.fpn_lateral(\d)", k))})
    first = laterals[0] if laterals else 2
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        k = key
        if k.startswith(("pixel_mean", "pixel_std")) or ".cell_anchors." in k:
            continue  # buffers of Detectron2's meta-architecture, not weights
        if m := re.match(r"^backbone\.fpn_(lateral|output)(\d)(\.norm)?\.(.+)$", k):
            kind, level, norm, rest = m.groups()
            group = "lateral_convs" if kind == "lateral" else "fpn_convs"
            k = f"neck.{group}.{int(level) - first}.{_conv_module(norm, rest)}"
        elif m := re.match(r"^backbone\.top_block\.p([67])\.(.+)$", k):
            k = f"neck.fpn_convs.{len(laterals) + int(m.group(1)) - 6}.conv.{m.group(2)}"
        elif k.startswith("backbone."):
            sub = k[len("backbone."):]
            sub = sub[len("bottom_up."):] if sub.startswith("bottom_up.") else sub
            k = "backbone." + resnet_names_to_kiln(sub)
        elif k.startswith("proposal_generator.rpn_head."):
            sub = k[len("proposal_generator.rpn_head."):]
            for src, dst in (("conv.", "rpn_conv."), ("objectness_logits.", "rpn_cls."),
                             ("anchor_deltas.", "rpn_reg.")):
                if sub.startswith(src):
                    sub = dst + sub[len(src):]
            k = "rpn_head." + sub
            if sub.startswith(("rpn_cls.", "rpn_reg.")):
                value = permute_anchor_channels(value, *perms["rpn_head"])
        elif k.startswith("roi_heads.res5."):
            k = "roi_head.shared_head." + resnet_names_to_kiln("res5." + k[len("roi_heads.res5."):])
        elif m := re.match(r"^roi_heads\.box_head\.(\d+\.)?(fc|conv)(\d+)(\.norm)?\.(.+)$", k):
            stage, kind, idx, norm, rest = m.groups()
            stage = stage or ""
            if kind == "fc":
                k = f"roi_head.bbox_head.{stage}shared_fcs.{int(idx) - 1}.{rest}"
            else:
                k = f"roi_head.bbox_head.{stage}shared_convs.{int(idx) - 1}.{_conv_module(norm, rest)}"
        elif m := re.match(r"^roi_heads\.box_predictor\.(\d+\.)?(cls_score|bbox_pred)\.(.+)$", k):
            stage, kind, rest = m.groups()
            k = f"roi_head.bbox_head.{stage or ''}{'fc_cls' if kind == 'cls_score' else 'fc_reg'}.{rest}"
        elif m := re.match(r"^roi_heads\.mask_head\.mask_fcn(\d+)(\.norm)?\.(.+)$", k):
            idx, norm, rest = m.groups()
            k = f"roi_head.mask_head.convs.{int(idx) - 1}.{_conv_module(norm, rest)}"
        elif m := re.match(r"^roi_heads\.mask_head\.(deconv|predictor)\.(.+)$", k):
            k = f"roi_head.mask_head.{'upsample' if m.group(1) == 'deconv' else 'conv_logits'}.{m.group(2)}"
        elif m := re.match(r"^head\.(cls|bbox)_subnet\.(\d+)\.(.+)$", k):
            kind, idx, rest = m.groups()
            k = f"bbox_head.{'cls' if kind == 'cls' else 'reg'}_convs.{int(idx) // 2}.conv.{rest}"
        elif k.startswith("head.cls_score."):
            k = "bbox_head.retina_cls." + k[len("head.cls_score."):]
            value = permute_anchor_channels(value, *perms["bbox_head"])
        elif k.startswith("head.bbox_pred."):
            k = "bbox_head.retina_reg." + k[len("head.bbox_pred."):]
            value = permute_anchor_channels(value, *perms["bbox_head"])
        else:
            k = resnet_names_to_kiln(k)  # a bare backbone (ImageNet weights renamed from Caffe2)
        out[k] = value
    if laterals:
        notes.append(f"FPN levels numbered from fpn_lateral{first} (= neck.lateral_convs.0)")
    return out, notes
