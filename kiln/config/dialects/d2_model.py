"""Detectron2 ``MODEL.*`` -> a kiln model dict (MMDetection 3.x names; layouts in the agreed interfaces).

Meta-architectures: ``GeneralizedRCNN`` (FPN with ``StandardROIHeads`` or ``CascadeROIHeads``, C4 with
``Res5ROIHeads``, DC5 / plain C5 with ``StandardROIHeads`` on one ``res5`` level), ``RetinaNet``,
``ProposalNetwork`` (RPN only), and Fast R-CNN when ``MODEL.LOAD_PROPOSALS`` (precomputed proposals).
Backbone and heads read the keys Detectron2 reads for them; a value kiln cannot honour is refused
naming the key (:mod:`.d2_check`). Sub-trees the chosen meta-architecture never reads (``RETINANET``
for an R-CNN, ``ROI_*`` for RetinaNet or an RPN-only model, ``RPN``/``ANCHOR_GENERATOR`` with
precomputed proposals) are not read, as in Detectron2; :func:`unread_subtrees` lists them so the
translator can say so.
"""

from __future__ import annotations

import logging
from typing import Any

from .d2_check import refuse, require_default, value_of, warn_unread

__all__ = ["build_model_dict", "unread_subtrees", "NORMS"]

logger = logging.getLogger("kiln.config")

NORMS = {
    "FrozenBN": dict(type="FrozenBN", requires_grad=False),
    "BN": dict(type="BN", requires_grad=True),
    "SyncBN": dict(type="SyncBN", requires_grad=True),
    "GN": dict(type="GN", num_groups=32, requires_grad=True),
}
_FPN_BACKBONES = ("build_resnet_fpn_backbone", "build_retinanet_resnet_fpn_backbone")
_RES = ("res2", "res3", "res4", "res5")


def _norm_cfg(key: str, value: str, allow_empty: bool) -> dict | None:
    if value == "" and allow_empty:
        return None
    if value not in NORMS:
        choices = ", ".join(([repr("")] if allow_empty else []) + list(NORMS))
        raise refuse(key, value, f"expected one of {choices}")
    return dict(NORMS[value])


def _box_coder(key: str, weights: Any) -> dict:
    weights = [float(w) for w in weights]
    if len(weights) != 4 or any(w <= 0 for w in weights):
        raise refuse(key, tuple(weights), "expected four positive weights (dx, dy, dw, dh)")
    # Detectron2 multiplies the deltas by the weights; MMDetection divides them by target_stds.
    return dict(type="DeltaXYWHBBoxCoder", target_means=[0.0] * 4, target_stds=[1.0 / w for w in weights])


def _reg_loss(prefix: str, loss_type: str, beta_key: str, beta: float, weight: float) -> tuple[dict, bool]:
    """(loss_bbox, reg_decoded_bbox) for ``<prefix>.BBOX_REG_LOSS_TYPE``."""
    if loss_type == "smooth_l1":
        # Detectron2's smooth_l1 with beta 0 is exactly L1.
        if float(beta) == 0.0:
            return dict(type="L1Loss", loss_weight=weight), False
        return dict(type="SmoothL1Loss", beta=float(beta), loss_weight=weight), False
    if loss_type == "giou":
        if float(beta) != 0.0:
            logger.warning(
                "%s=%r has no effect: only read with %s.BBOX_REG_LOSS_TYPE smooth_l1 (as in Detectron2).",
                beta_key,
                beta,
                prefix,
            )
        return dict(type="GIoULoss", loss_weight=weight), True
    raise refuse(
        f"{prefix}.BBOX_REG_LOSS_TYPE",
        loss_type,
        "kiln implements 'smooth_l1' and 'giou' box losses ('diou'/'ciou' are not implemented)",
    )


# ----------------------------------------------------------------------------------------- backbone
def _resnet(d2: Any, out_features: list[str], where: str) -> tuple[dict, dict[str, tuple[int, int]]]:
    """The ResNet/ResNeXt dict and ``{feature: (channels, stride)}`` for ``out_features``."""
    r = d2.MODEL.RESNETS
    depth = int(r.DEPTH)
    if depth not in (18, 34, 50, 101, 152):
        raise refuse("MODEL.RESNETS.DEPTH", depth, "expected 18, 34, 50, 101 or 152")
    bad = [f for f in out_features if f not in _RES]
    if bad or not out_features:
        raise refuse(
            where, out_features, f"kiln's ResNet outputs some of {list(_RES)} (the stem is not an output)"
        )
    if any(value_of(d2, "MODEL.RESNETS.DEFORM_ON_PER_STAGE")):
        raise refuse(
            "MODEL.RESNETS.DEFORM_ON_PER_STAGE",
            list(r.DEFORM_ON_PER_STAGE),
            "kiln's ResNet has no deformable convolutions",
        )
    for key in ("DEFORM_MODULATED", "DEFORM_NUM_GROUPS"):
        require_default(
            d2,
            f"MODEL.RESNETS.{key}",
            "only read with deformable convolutions "
            "(MODEL.RESNETS.DEFORM_ON_PER_STAGE), which kiln does not have",
        )
    dilation = int(r.RES5_DILATION)
    if dilation not in (1, 2):
        raise refuse("MODEL.RESNETS.RES5_DILATION", dilation, "expected 1 or 2 (as Detectron2)")
    last = max(_RES.index(f) for f in out_features) + 1  # stages res2..res{last+1}
    if dilation != 1 and last < 4:
        raise refuse(
            "MODEL.RESNETS.RES5_DILATION",
            dilation,
            f"res5 is not built (OUT_FEATURES {out_features}); it only applies when res5 is an output (DC5)",
        )
    res2 = int(r.RES2_OUT_CHANNELS)
    small = depth < 50
    if small:
        if res2 != 64:
            raise refuse("MODEL.RESNETS.RES2_OUT_CHANNELS", res2, "must be 64 for R18/R34 (as Detectron2)")
        if int(r.NUM_GROUPS) != 1 or dilation != 1:
            raise refuse(
                "MODEL.RESNETS.NUM_GROUPS" if int(r.NUM_GROUPS) != 1 else "MODEL.RESNETS.RES5_DILATION",
                int(r.NUM_GROUPS) if int(r.NUM_GROUPS) != 1 else dilation,
                "must be 1 for R18/R34 (basic blocks), as in Detectron2",
            )
    elif res2 != 256:
        raise refuse(
            "MODEL.RESNETS.RES2_OUT_CHANNELS",
            res2,
            "kiln's bottleneck ResNets have 256 res2 channels (4x the 64-channel stem width)",
        )
    stem = int(r.STEM_OUT_CHANNELS)
    strides = [1, 2, 2, 1 if dilation == 2 else 2][:last]
    dilations = [1, 1, 1, dilation][:last]
    bb: dict[str, Any] = dict(
        type="ResNet",
        depth=depth,
        num_stages=last,
        strides=tuple(strides),
        dilations=tuple(dilations),
        out_indices=tuple(_RES.index(f) for f in out_features),
        frozen_stages=int(d2.MODEL.BACKBONE.FREEZE_AT) - 1,
        norm_cfg=_norm_cfg("MODEL.RESNETS.NORM", r.NORM, allow_empty=False),
        norm_eval=True,
        style="caffe" if r.STRIDE_IN_1X1 else "pytorch",
    )
    if stem != 64:
        bb["stem_channels"] = stem
    groups, width = int(r.NUM_GROUPS), int(r.WIDTH_PER_GROUP)
    if groups != 1 or width != 64:
        if small:
            raise refuse("MODEL.RESNETS.WIDTH_PER_GROUP", width, "must be 64 for R18/R34 (basic blocks)")
        if groups == 1:
            raise refuse(
                "MODEL.RESNETS.WIDTH_PER_GROUP",
                width,
                "a wide ResNet without groups is not "
                "implemented; kiln's ResNeXt needs MODEL.RESNETS.NUM_GROUPS > 1",
            )
        bb.update(type="ResNeXt", groups=groups, base_width=width)
    if int(d2.MODEL.BACKBONE.FREEZE_AT) < 0 or int(d2.MODEL.BACKBONE.FREEZE_AT) > last + 1:
        raise refuse(
            "MODEL.BACKBONE.FREEZE_AT",
            int(d2.MODEL.BACKBONE.FREEZE_AT),
            f"expected 0 (nothing frozen) to {last + 1} (the stem and res2..res{last + 1})",
        )
    channels, stride = {}, 4
    for i, name in enumerate(_RES[:last]):
        stride = stride * strides[i]
        channels[name] = ((64 if small else 256) * 2**i, stride)
    return bb, {f: channels[f] for f in out_features}


def _fpn(d2: Any, retina: bool) -> tuple[dict, dict, dict[str, tuple[int, int]]]:
    fpn = d2.MODEL.FPN
    in_features = list(fpn.IN_FEATURES)
    if not in_features:
        raise refuse(
            "MODEL.FPN.IN_FEATURES",
            in_features,
            "an FPN backbone needs its inputs, e.g. ['res2', 'res3', 'res4', 'res5']",
        )
    if list(d2.MODEL.RESNETS.OUT_FEATURES) != in_features:
        raise refuse(
            "MODEL.RESNETS.OUT_FEATURES",
            list(d2.MODEL.RESNETS.OUT_FEATURES),
            f"with an FPN backbone it must name the FPN inputs (MODEL.FPN.IN_FEATURES={in_features})",
        )
    idx = [_RES.index(f) if f in _RES else -1 for f in in_features]
    if -1 in idx or idx != list(range(idx[0], idx[0] + len(idx))):
        raise refuse(
            "MODEL.FPN.IN_FEATURES",
            in_features,
            f"expected consecutive stages among {list(_RES)}, finest first",
        )
    if int(d2.MODEL.RESNETS.RES5_DILATION) != 1:
        raise refuse(
            "MODEL.RESNETS.RES5_DILATION",
            int(d2.MODEL.RESNETS.RES5_DILATION),
            "an FPN needs strides that double per level (Detectron2 refuses it too)",
        )
    if retina and in_features[-1] != "res5":
        raise refuse(
            "MODEL.FPN.IN_FEATURES", in_features, "the RetinaNet FPN builds P6/P7 from res5; include res5"
        )
    if fpn.FUSE_TYPE != "sum":
        raise refuse(
            "MODEL.FPN.FUSE_TYPE",
            fpn.FUSE_TYPE,
            "kiln's FPN sums the top-down and lateral features ('sum'); 'avg' is not implemented",
        )
    bb, feats = _resnet(d2, in_features, "MODEL.RESNETS.OUT_FEATURES")
    out = int(fpn.OUT_CHANNELS)
    extra = 2 if retina else 1
    neck: dict[str, Any] = dict(
        type="FPN",
        in_channels=[feats[f][0] for f in in_features],
        out_channels=out,
        num_outs=len(in_features) + extra,
    )
    if retina:
        # Detectron2's LastLevelP6P7: P6 from C5 (a stride-2 conv), P7 from ReLU(P6).
        neck.update(add_extra_convs="on_input", relu_before_extra_convs=True)
    norm = _norm_cfg("MODEL.FPN.NORM", fpn.NORM, allow_empty=True)
    if norm is not None:
        neck["norm_cfg"] = norm
    levels = {f"p{_RES.index(f) + 2}": (out, feats[f][1]) for f in in_features}
    top = _RES.index(in_features[-1]) + 2
    for k in range(1, extra + 1):
        levels[f"p{top + k}"] = (out, feats[in_features[-1]][1] * 2**k)
    return bb, neck, levels


def _features(d2: Any, key: str, available: dict[str, tuple[int, int]], whole: bool) -> list[tuple[int, int]]:
    names = list(value_of(d2, key))
    keys = list(available)
    if whole and names != keys or not whole and names != keys[: len(names)] or not names:
        need = f"all of {keys}" if whole else f"the first levels of {keys}"
        raise refuse(key, names, f"kiln's heads read {need} (the features the backbone gives, in order)")
    return [available[n] for n in names]


# ---------------------------------------------------------------------------------------- anchors
def _anchors(d2: Any, strides: list[int]) -> dict:
    a = d2.MODEL.ANCHOR_GENERATOR
    if a.NAME != "DefaultAnchorGenerator":
        raise refuse(
            "MODEL.ANCHOR_GENERATOR.NAME",
            a.NAME,
            "kiln implements DefaultAnchorGenerator (RotatedAnchorGenerator is not implemented)",
        )
    require_default(
        d2,
        "MODEL.ANCHOR_GENERATOR.ANGLES",
        "only read by RotatedAnchorGenerator, which kiln does not implement",
    )
    n = len(strides)
    sizes = [list(s) if isinstance(s, (list, tuple)) else [s] for s in a.SIZES]
    if len(sizes) not in (1, n):
        raise refuse(
            "MODEL.ANCHOR_GENERATOR.SIZES",
            a.SIZES,
            f"give one list of sizes per feature level ({n}) or one list for all",
        )
    sizes = sizes * n if len(sizes) == 1 else sizes
    ratios = [list(r) if isinstance(r, (list, tuple)) else [r] for r in a.ASPECT_RATIOS]
    if len(ratios) not in (1, n) or any(r != ratios[0] for r in ratios):
        raise refuse(
            "MODEL.ANCHOR_GENERATOR.ASPECT_RATIOS",
            a.ASPECT_RATIOS,
            "kiln's anchor generator shares one list of aspect ratios across levels",
        )
    if len({len(s) for s in sizes}) != 1:
        raise refuse(
            "MODEL.ANCHOR_GENERATOR.SIZES",
            a.SIZES,
            "every level needs the same number of sizes (one head predicts for all levels)",
        )
    return dict(
        type="DefaultAnchorGenerator",
        sizes=[[float(x) for x in s] for s in sizes],
        aspect_ratios=[float(x) for x in ratios[0]],
        strides=list(strides),
        offset=float(a.OFFSET),
    )


def _two_level_thresholds(prefix: str, thresholds: Any, labels: Any) -> tuple[float, float]:
    """(negative-below, positive-from) IoUs from Detectron2's Matcher thresholds/labels."""
    t, lab = [float(x) for x in thresholds], [int(x) for x in labels]
    if lab not in ([0, 1], [0, -1, 1]):
        raise refuse(
            f"{prefix}.IOU_LABELS",
            lab,
            "kiln's assigner takes labels [0, 1] (one threshold) or [0, -1, 1] (negative, ignored, positive)",
        )
    if len(t) == 1 and lab == [0, 1]:
        return t[0], t[0]
    if len(t) == 2 and lab == [0, -1, 1] and t[0] <= t[1]:
        return t[0], t[1]
    raise refuse(
        f"{prefix}.IOU_THRESHOLDS",
        list(thresholds),
        f"with IOU_LABELS {lab} give {len(lab) - 1} increasing threshold(s)",
    )


# -------------------------------------------------------------------------------------------- heads
def _rpn(d2: Any, levels: dict[str, tuple[int, int]]) -> tuple[dict, dict, dict, dict]:
    """(rpn_head, train_cfg.rpn, train_cfg.rpn_proposal, test_cfg.rpn)."""
    rpn = d2.MODEL.RPN
    if rpn.HEAD_NAME != "StandardRPNHead":
        raise refuse("MODEL.RPN.HEAD_NAME", rpn.HEAD_NAME, "kiln implements StandardRPNHead")
    feats = _features(d2, "MODEL.RPN.IN_FEATURES", levels, whole=True)
    in_ch = feats[0][0]
    dims = [int(x) for x in rpn.CONV_DIMS]
    if len(dims) == 1:
        feat_ch, num_convs = (in_ch if dims[0] == -1 else dims[0]), 1
    elif len(set(dims)) == 1 and dims[0] > 0:
        feat_ch, num_convs = dims[0], len(dims)
    else:
        raise refuse(
            "MODEL.RPN.CONV_DIMS", dims, "kiln's RPN head stacks convs of one width: [-1], [d] or [d, d, ...]"
        )
    loss_bbox, decoded = _reg_loss(
        "MODEL.RPN",
        rpn.BBOX_REG_LOSS_TYPE,
        "MODEL.RPN.SMOOTH_L1_BETA",
        rpn.SMOOTH_L1_BETA,
        float(rpn.BBOX_REG_LOSS_WEIGHT) * float(rpn.LOSS_WEIGHT),
    )
    head = dict(
        type="RPNHead",
        in_channels=in_ch,
        feat_channels=feat_ch,
        num_convs=num_convs,
        anchor_generator=_anchors(d2, [s for _, s in feats]),
        bbox_coder=_box_coder("MODEL.RPN.BBOX_REG_WEIGHTS", rpn.BBOX_REG_WEIGHTS),
        loss_cls=dict(type="CrossEntropyLoss", use_sigmoid=True, loss_weight=float(rpn.LOSS_WEIGHT)),
        loss_bbox=loss_bbox,
        reg_decoded_bbox=decoded,
    )
    neg, pos = _two_level_thresholds("MODEL.RPN", rpn.IOU_THRESHOLDS, rpn.IOU_LABELS)
    if pos == neg:
        raise refuse("MODEL.RPN.IOU_THRESHOLDS", list(rpn.IOU_THRESHOLDS), "the RPN needs [low, high]")
    train = dict(
        assigner=dict(
            type="MaxIoUAssigner", pos_iou_thr=pos, neg_iou_thr=neg, min_pos_iou=neg, ignore_iof_thr=-1
        ),
        sampler=dict(
            type="RandomSampler",
            num=int(rpn.BATCH_SIZE_PER_IMAGE),
            pos_fraction=float(rpn.POSITIVE_FRACTION),
            neg_pos_ub=-1,
            add_gt_as_proposals=False,
        ),
        allowed_border=int(rpn.BOUNDARY_THRESH),
        pos_weight=-1,
        debug=False,
    )
    min_size = float(d2.MODEL.PROPOSAL_GENERATOR.MIN_SIZE)
    nms = dict(type="nms", iou_thr=float(rpn.NMS_THRESH))
    proposal = dict(
        nms_pre=int(rpn.PRE_NMS_TOPK_TRAIN),
        max_per_img=int(rpn.POST_NMS_TOPK_TRAIN),
        nms=nms,
        min_bbox_size=min_size,
    )
    test = dict(
        nms_pre=int(rpn.PRE_NMS_TOPK_TEST),
        max_per_img=int(rpn.POST_NMS_TOPK_TEST),
        nms=dict(nms),
        min_bbox_size=min_size,
    )
    return head, train, proposal, test


def _roi_extractor(d2: Any, feats: list[tuple[int, int]], resolution: int) -> dict:
    bh = d2.MODEL.ROI_BOX_HEAD
    if bh.POOLER_TYPE not in ("ROIAlignV2", "ROIAlign"):
        raise refuse(
            "MODEL.ROI_BOX_HEAD.POOLER_TYPE",
            bh.POOLER_TYPE,
            "kiln pools with RoIAlign: 'ROIAlignV2' (aligned) or 'ROIAlign'; ROIPool is not implemented",
        )
    ext = dict(
        type="SingleRoIExtractor",
        roi_layer=dict(
            type="RoIAlign",
            output_size=resolution,
            sampling_ratio=int(bh.POOLER_SAMPLING_RATIO),
            aligned=bh.POOLER_TYPE == "ROIAlignV2",
        ),
        out_channels=feats[0][0],
        featmap_strides=[s for _, s in feats],
    )
    if len(feats) > 1:
        # Detectron2's ROIPooler level rule: canonical box size 224 on level 4.
        ext.update(canonical_box_size=224, canonical_level=4)
    return ext


def _box_head_common(d2: Any, reg_weights: Any, key: str) -> dict:
    bh = d2.MODEL.ROI_BOX_HEAD
    for flag in ("TRAIN_ON_PRED_BOXES", "USE_FED_LOSS", "USE_SIGMOID_CE"):
        if value_of(d2, f"MODEL.ROI_BOX_HEAD.{flag}"):
            raise refuse(f"MODEL.ROI_BOX_HEAD.{flag}", True, "not implemented in kiln's box head")
    for k in ("FED_LOSS_FREQ_WEIGHT_POWER", "FED_LOSS_NUM_CLASSES"):
        require_default(
            d2,
            f"MODEL.ROI_BOX_HEAD.{k}",
            "only read with MODEL.ROI_BOX_HEAD.USE_FED_LOSS, which kiln does not implement",
        )
    loss_bbox, decoded = _reg_loss(
        "MODEL.ROI_BOX_HEAD",
        bh.BBOX_REG_LOSS_TYPE,
        "MODEL.ROI_BOX_HEAD.SMOOTH_L1_BETA",
        bh.SMOOTH_L1_BETA,
        float(bh.BBOX_REG_LOSS_WEIGHT),
    )
    return dict(
        num_classes=int(d2.MODEL.ROI_HEADS.NUM_CLASSES),
        bbox_coder=_box_coder(key, reg_weights),
        reg_class_agnostic=bool(bh.CLS_AGNOSTIC_BBOX_REG),
        reg_decoded_bbox=decoded,
        loss_cls=dict(type="CrossEntropyLoss", use_sigmoid=False, loss_weight=1.0),
        loss_bbox=loss_bbox,
    )


def _conv_fc_head(d2: Any, in_ch: int, reg_weights: Any, key: str) -> dict:
    bh = d2.MODEL.ROI_BOX_HEAD
    if bh.NAME != "FastRCNNConvFCHead":
        raise refuse(
            "MODEL.ROI_BOX_HEAD.NAME",
            bh.NAME,
            "kiln implements FastRCNNConvFCHead (set it, with "
            "NUM_CONV/NUM_FC, for StandardROIHeads/CascadeROIHeads)",
        )
    head = dict(
        type="ConvFCBBoxHead",
        num_shared_convs=int(bh.NUM_CONV),
        num_shared_fcs=int(bh.NUM_FC),
        conv_out_channels=int(bh.CONV_DIM),
        fc_out_channels=int(bh.FC_DIM),
        in_channels=in_ch,
        roi_feat_size=int(bh.POOLER_RESOLUTION),
        **_box_head_common(d2, reg_weights, key),
    )
    norm = _norm_cfg("MODEL.ROI_BOX_HEAD.NORM", bh.NORM, allow_empty=True)
    if norm is not None:
        head["norm_cfg"] = norm
    return head


def _rcnn_train(d2: Any, neg: float, pos: float) -> dict:
    rh = d2.MODEL.ROI_HEADS
    return dict(
        assigner=dict(
            type="MaxIoUAssigner", pos_iou_thr=pos, neg_iou_thr=neg, min_pos_iou=pos, ignore_iof_thr=-1
        ),
        sampler=dict(
            type="RandomSampler",
            num=int(rh.BATCH_SIZE_PER_IMAGE),
            pos_fraction=float(rh.POSITIVE_FRACTION),
            neg_pos_ub=-1,
            add_gt_as_proposals=bool(rh.PROPOSAL_APPEND_GT),
        ),
        pos_weight=-1,
        debug=False,
    )


def _roi_head(d2: Any, levels: dict[str, tuple[int, int]], c4: bool) -> tuple[dict, Any, dict]:
    """(roi_head, train_cfg.rcnn, test_cfg.rcnn)."""
    rh, bh = d2.MODEL.ROI_HEADS, d2.MODEL.ROI_BOX_HEAD
    name = rh.NAME
    test = dict(
        score_thr=float(rh.SCORE_THRESH_TEST),
        nms=dict(type="nms", iou_thr=float(rh.NMS_THRESH_TEST)),
        max_per_img=int(d2.TEST.DETECTIONS_PER_IMAGE),
    )
    feats = _features(d2, "MODEL.ROI_HEADS.IN_FEATURES", levels, whole=False)
    res = int(bh.POOLER_RESOLUTION)
    if name == "Res5ROIHeads":
        if not c4:
            raise refuse(
                "MODEL.ROI_HEADS.NAME",
                name,
                "Res5ROIHeads runs res5 on res4 features: use "
                "MODEL.BACKBONE.NAME build_resnet_backbone with MODEL.RESNETS.OUT_FEATURES ['res4']",
            )
        for k in ("NAME", "NUM_FC", "FC_DIM", "NUM_CONV", "CONV_DIM", "NORM"):
            warn_unread(
                d2,
                f"MODEL.ROI_BOX_HEAD.{k}",
                "Res5ROIHeads uses res5 as its box head; this key "
                "is read by StandardROIHeads/CascadeROIHeads only",
            )
        r = d2.MODEL.RESNETS
        if int(r.NUM_GROUPS) != 1 or int(r.WIDTH_PER_GROUP) != 64:
            raise refuse(
                "MODEL.RESNETS.NUM_GROUPS",
                int(r.NUM_GROUPS),
                "the C4 res5 head (ResLayer) is a plain ResNet stage; ResNeXt C4 models are not implemented",
            )
        if int(d2.MODEL.RESNETS.DEPTH) < 50:
            raise refuse(
                "MODEL.RESNETS.DEPTH",
                int(d2.MODEL.RESNETS.DEPTH),
                "Res5ROIHeads needs a bottleneck ResNet (50, 101 or 152)",
            )
        style = "caffe" if r.STRIDE_IN_1X1 else "pytorch"
        norm = _norm_cfg("MODEL.RESNETS.NORM", r.NORM, allow_empty=False)
        head = dict(
            type="StandardRoIHead",
            shared_head=dict(
                type="ResLayer",
                depth=int(r.DEPTH),
                stage=3,
                stride=2,
                dilation=1,
                style=style,
                norm_cfg=norm,
                norm_eval=True,
            ),
            bbox_roi_extractor=_roi_extractor(d2, feats, res),
            bbox_head=dict(
                type="BBoxHead",
                with_avg_pool=True,
                roi_feat_size=res // 2,
                in_channels=feats[0][0] * 2,
                **_box_head_common(d2, bh.BBOX_REG_WEIGHTS, "MODEL.ROI_BOX_HEAD.BBOX_REG_WEIGHTS"),
            ),
        )
    elif name == "StandardROIHeads":
        head = dict(
            type="StandardRoIHead",
            bbox_roi_extractor=_roi_extractor(d2, feats, res),
            bbox_head=_conv_fc_head(
                d2, feats[0][0], bh.BBOX_REG_WEIGHTS, "MODEL.ROI_BOX_HEAD.BBOX_REG_WEIGHTS"
            ),
        )
    elif name == "CascadeROIHeads":
        return _cascade(d2, feats, res, test)
    else:
        raise refuse(
            "MODEL.ROI_HEADS.NAME", name, "kiln implements StandardROIHeads, Res5ROIHeads and CascadeROIHeads"
        )
    for key in ("MODEL.ROI_BOX_CASCADE_HEAD.BBOX_REG_WEIGHTS", "MODEL.ROI_BOX_CASCADE_HEAD.IOUS"):
        warn_unread(d2, key, "only read by MODEL.ROI_HEADS.NAME CascadeROIHeads")
    neg, pos = _two_level_thresholds("MODEL.ROI_HEADS", rh.IOU_THRESHOLDS, rh.IOU_LABELS)
    return head, _rcnn_train(d2, neg, pos), test


def _cascade(d2: Any, feats: list[tuple[int, int]], res: int, test: dict) -> tuple[dict, Any, dict]:
    c = d2.MODEL.ROI_BOX_CASCADE_HEAD
    ious = [float(x) for x in c.IOUS]
    weights = [list(w) for w in c.BBOX_REG_WEIGHTS]
    if not ious or len(weights) != len(ious):
        raise refuse(
            "MODEL.ROI_BOX_CASCADE_HEAD.BBOX_REG_WEIGHTS",
            c.BBOX_REG_WEIGHTS,
            f"give one weight tuple per stage (IOUS has {len(ious)} stages)",
        )
    for key in ("IOU_THRESHOLDS", "IOU_LABELS"):
        warn_unread(
            d2,
            f"MODEL.ROI_HEADS.{key}",
            "CascadeROIHeads matches each stage at MODEL.ROI_BOX_CASCADE_HEAD.IOUS instead",
        )
    heads = [
        _conv_fc_head(d2, feats[0][0], w, "MODEL.ROI_BOX_CASCADE_HEAD.BBOX_REG_WEIGHTS") for w in weights
    ]
    head = dict(
        type="CascadeRoIHead",
        num_stages=len(ious),
        stage_loss_weights=[1.0] * len(ious),
        bbox_roi_extractor=_roi_extractor(d2, feats, res),
        bbox_head=heads,
    )
    return head, [_rcnn_train(d2, iou, iou) for iou in ious], test


def _retina_head(d2: Any, levels: dict[str, tuple[int, int]]) -> tuple[dict, dict, dict]:
    r = d2.MODEL.RETINANET
    feats = _features(d2, "MODEL.RETINANET.IN_FEATURES", levels, whole=True)
    if r.NORM not in ("", "GN"):
        raise refuse(
            "MODEL.RETINANET.NORM",
            r.NORM,
            "kiln's RetinaNet head takes '' or 'GN' (a BN shared across levels is not implemented)",
        )
    loss_bbox, decoded = _reg_loss(
        "MODEL.RETINANET",
        r.BBOX_REG_LOSS_TYPE,
        "MODEL.RETINANET.SMOOTH_L1_LOSS_BETA",
        r.SMOOTH_L1_LOSS_BETA if r.BBOX_REG_LOSS_TYPE == "smooth_l1" else 0.0,
        1.0,
    )
    if r.BBOX_REG_LOSS_TYPE != "smooth_l1":
        warn_unread(d2, "MODEL.RETINANET.SMOOTH_L1_LOSS_BETA", "only read with BBOX_REG_LOSS_TYPE smooth_l1")
    head = dict(
        type="RetinaHead",
        num_classes=int(r.NUM_CLASSES),
        in_channels=feats[0][0],
        feat_channels=feats[0][0],
        stacked_convs=int(r.NUM_CONVS),
        prior_prob=float(r.PRIOR_PROB),
        anchor_generator=_anchors(d2, [s for _, s in feats]),
        bbox_coder=_box_coder("MODEL.RETINANET.BBOX_REG_WEIGHTS", r.BBOX_REG_WEIGHTS),
        loss_cls=dict(
            type="FocalLoss",
            use_sigmoid=True,
            gamma=float(r.FOCAL_LOSS_GAMMA),
            alpha=float(r.FOCAL_LOSS_ALPHA),
            loss_weight=1.0,
        ),
        loss_bbox=loss_bbox,
        reg_decoded_bbox=decoded,
    )
    if r.NORM == "GN":
        head["norm_cfg"] = dict(type="GN", num_groups=32, requires_grad=True)
    neg, pos = _two_level_thresholds("MODEL.RETINANET", r.IOU_THRESHOLDS, r.IOU_LABELS)
    train = dict(
        assigner=dict(
            type="MaxIoUAssigner", pos_iou_thr=pos, neg_iou_thr=neg, min_pos_iou=0, ignore_iof_thr=-1
        ),
        allowed_border=-1,
        pos_weight=-1,
        debug=False,
    )
    test = dict(
        nms_pre=int(r.TOPK_CANDIDATES_TEST),
        min_bbox_size=0,
        score_thr=float(r.SCORE_THRESH_TEST),
        nms=dict(type="nms", iou_thr=float(r.NMS_THRESH_TEST)),
        max_per_img=int(d2.TEST.DETECTIONS_PER_IMAGE),
    )
    return head, train, test


# -------------------------------------------------------------------------------------------- model
def _layout(d2: Any) -> str:
    name = d2.MODEL.BACKBONE.NAME
    if name in _FPN_BACKBONES:
        return "fpn"
    if name == "build_resnet_backbone":
        return "single"
    raise refuse(
        "MODEL.BACKBONE.NAME",
        name,
        "kiln maps build_resnet_backbone (C4/DC5), "
        "build_resnet_fpn_backbone and build_retinanet_resnet_fpn_backbone",
    )


def unread_subtrees(d2: Any) -> list[str]:
    """Schema nodes Detectron2 does not read for this meta-architecture (so neither does kiln)."""
    arch = d2.MODEL.META_ARCHITECTURE
    if arch == "RetinaNet":
        return [
            "MODEL.RPN",
            "MODEL.PROPOSAL_GENERATOR",
            "MODEL.ROI_HEADS",
            "MODEL.ROI_BOX_HEAD",
            "MODEL.ROI_BOX_CASCADE_HEAD",
        ]
    out = ["MODEL.RETINANET"]
    if arch == "ProposalNetwork":
        out += ["MODEL.ROI_HEADS", "MODEL.ROI_BOX_HEAD", "MODEL.ROI_BOX_CASCADE_HEAD"]
    elif d2.MODEL.LOAD_PROPOSALS:
        out += ["MODEL.RPN", "MODEL.ANCHOR_GENERATOR"]
    return out


def build_model_dict(d2: Any) -> dict:
    """The kiln model dict (without weights) for a merged Detectron2 node whose heads are supported."""
    arch = d2.MODEL.META_ARCHITECTURE
    layout = _layout(d2)
    retina = arch == "RetinaNet"
    if layout == "fpn":
        backbone, neck, levels = _fpn(
            d2, retina=d2.MODEL.BACKBONE.NAME == "build_retinanet_resnet_fpn_backbone"
        )
    else:
        warn_unread(
            d2,
            "MODEL.FPN.IN_FEATURES",
            "only read by FPN backbones (MODEL.BACKBONE.NAME build_resnet_fpn_backbone)",
        )
        for key in ("OUT_CHANNELS", "NORM", "FUSE_TYPE"):
            warn_unread(d2, f"MODEL.FPN.{key}", "only read by FPN backbones")
        backbone, levels = _resnet(d2, list(d2.MODEL.RESNETS.OUT_FEATURES), "MODEL.RESNETS.OUT_FEATURES")
        neck = None
        if len(levels) != 1:
            raise refuse(
                "MODEL.RESNETS.OUT_FEATURES",
                list(d2.MODEL.RESNETS.OUT_FEATURES),
                "without an FPN kiln's heads read one feature map: ['res4'] (C4) or ['res5'] (DC5)",
            )
    model: dict[str, Any] = dict(backbone=backbone)
    if neck is not None:
        model["neck"] = neck
    if retina:
        head, train, test = _retina_head(d2, levels)
        model.update(type="RetinaNet", bbox_head=head, train_cfg=train, test_cfg=test)
        return model
    gen = d2.MODEL.PROPOSAL_GENERATOR.NAME
    if d2.MODEL.LOAD_PROPOSALS:
        if gen != "PrecomputedProposals":
            raise refuse(
                "MODEL.PROPOSAL_GENERATOR.NAME",
                gen,
                "with MODEL.LOAD_PROPOSALS True the "
                "proposals come from files: set it to PrecomputedProposals",
            )
        if arch == "ProposalNetwork":
            raise refuse(
                "MODEL.LOAD_PROPOSALS", True, "a ProposalNetwork makes proposals; it cannot load them"
            )
        warn_unread(
            d2, "MODEL.PROPOSAL_GENERATOR.MIN_SIZE", "only read by the RPN (not with PrecomputedProposals)"
        )
    elif gen != "RPN":
        raise refuse(
            "MODEL.PROPOSAL_GENERATOR.NAME",
            gen,
            "kiln implements 'RPN', and 'PrecomputedProposals' with MODEL.LOAD_PROPOSALS True",
        )
    c4 = layout == "single" and list(d2.MODEL.RESNETS.OUT_FEATURES) == ["res4"]
    if not d2.MODEL.LOAD_PROPOSALS:
        rpn_head, rpn_train, rpn_proposal, rpn_test = _rpn(d2, levels)
        model["rpn_head"] = rpn_head
    if arch == "ProposalNetwork":
        model.update(type="RPN", train_cfg=dict(rpn=rpn_train), test_cfg=dict(rpn=rpn_test))
        return model
    roi_head, rcnn_train, rcnn_test = _roi_head(d2, levels, c4)
    model["roi_head"] = roi_head
    if d2.MODEL.LOAD_PROPOSALS:
        model.update(type="FastRCNN", train_cfg=dict(rcnn=rcnn_train), test_cfg=dict(rcnn=rcnn_test))
    else:
        model.update(
            type="CascadeRCNN" if roi_head["type"] == "CascadeRoIHead" else "FasterRCNN",
            train_cfg=dict(rpn=rpn_train, rpn_proposal=rpn_proposal, rcnn=rcnn_train),
            test_cfg=dict(rpn=rpn_test, rcnn=rcnn_test),
        )
    return model
