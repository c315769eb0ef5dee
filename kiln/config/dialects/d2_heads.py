"""Detectron2 ``MODEL.RPN``/``ROI_HEADS``/``ROI_BOX_HEAD``/``ROI_BOX_CASCADE_HEAD``/``RETINANET`` -> heads.

Each function returns the head dict and its ``train_cfg``/``test_cfg`` parts in MMDetection's names:
``RPNHead``; ``StandardRoIHead`` with ``ConvFCBBoxHead`` (``FastRCNNConvFCHead``) or, for
``Res5ROIHeads``, a ``ResLayer`` shared head and ``BBoxHead(with_avg_pool=True)``; ``CascadeRoIHead``;
``RetinaHead``; with ``MODEL.MASK_ON`` an ``FCNMaskHead`` (``MaskRCNNConvUpsampleHead``) on the RoI head.
Box-regression weights become ``target_stds = 1 / weight``; Detectron2's
``smooth_l1`` with beta 0 is ``L1Loss``.
"""

from __future__ import annotations

import logging
from typing import Any

from .d2_backbone import anchor_generator, feature_levels, norm_cfg
from .d2_check import refuse, require_default, value_of, warn_unread

__all__ = ["rpn_dicts", "roi_head_dicts", "retina_dicts", "mask_head_dicts"]

logger = logging.getLogger("kiln.config")


def _box_coder(key: str, weights: Any) -> dict:
    weights = [float(w) for w in weights]
    if len(weights) != 4 or any(w <= 0 for w in weights):
        raise refuse(key, tuple(weights), "expected four positive weights (dx, dy, dw, dh)")
    # Detectron2 multiplies the deltas by the weights; MMDetection divides them by target_stds.
    # Box2BoxTransform clamps dw/dh from above only (log(1000/16)); MMDetection clamps both ways.
    return dict(type="DeltaXYWHBBoxCoder", target_means=[0.0] * 4, target_stds=[1.0 / w for w in weights],
                symmetric_wh_clamp=False)


_IOU_LOSSES = {"giou": "GIoULoss", "diou": "DIoULoss", "ciou": "CIoULoss"}


def _reg_loss(prefix: str, loss_type: str, beta_key: str, beta: float, weight: float) -> tuple[dict, bool]:
    """(loss_bbox, reg_decoded_bbox) for ``<prefix>.BBOX_REG_LOSS_TYPE``."""
    if loss_type == "smooth_l1":
        # Detectron2's smooth_l1 with beta 0 is exactly L1.
        if float(beta) == 0.0:
            return dict(type="L1Loss", loss_weight=weight), False
        return dict(type="SmoothL1Loss", beta=float(beta), loss_weight=weight), False
    if loss_type in _IOU_LOSSES:
        if float(beta) != 0.0:
            logger.warning(
                "%s=%r has no effect: only read with %s.BBOX_REG_LOSS_TYPE smooth_l1 (as in Detectron2).",
                beta_key,
                beta,
                prefix,
            )
        return dict(type=_IOU_LOSSES[loss_type], eps=1e-7, loss_weight=weight), True
    raise refuse(
        f"{prefix}.BBOX_REG_LOSS_TYPE",
        loss_type,
        "kiln implements Detectron2's 'smooth_l1', 'giou', 'diou' and 'ciou' box losses",
    )


def two_level_thresholds(prefix: str, thresholds: Any, labels: Any) -> tuple[float, float]:
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


def rpn_dicts(d2: Any, levels: dict[str, tuple[int, int]]) -> tuple[dict, dict, dict, dict]:
    """(rpn_head, train_cfg.rpn, train_cfg.rpn_proposal, test_cfg.rpn)."""
    rpn = d2.MODEL.RPN
    if rpn.HEAD_NAME != "StandardRPNHead":
        raise refuse("MODEL.RPN.HEAD_NAME", rpn.HEAD_NAME, "kiln implements StandardRPNHead")
    feats = feature_levels(d2, "MODEL.RPN.IN_FEATURES", levels, whole=True)
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
        anchor_generator=anchor_generator(d2, [s for _, s in feats]),
        bbox_coder=_box_coder("MODEL.RPN.BBOX_REG_WEIGHTS", rpn.BBOX_REG_WEIGHTS),
        loss_cls=dict(type="CrossEntropyLoss", use_sigmoid=True, loss_weight=float(rpn.LOSS_WEIGHT)),
        loss_bbox=loss_bbox,
        reg_decoded_bbox=decoded,
        # Detectron2's RPN: losses over (anchors sampled per image x images), padding anchors matched
        # like any other, proposals ranked by logits.
        normalize_by_budget=True,
        ignore_padding_anchors=False,
        rank_by_logits=True,
    )
    neg, pos = two_level_thresholds("MODEL.RPN", rpn.IOU_THRESHOLDS, rpn.IOU_LABELS)
    if pos == neg:
        raise refuse("MODEL.RPN.IOU_THRESHOLDS", list(rpn.IOU_THRESHOLDS), "the RPN needs [low, high]")
    train = dict(
        # Matcher(allow_low_quality_matches=True): an object's best anchors are positive whatever their
        # IoU, and learn from the object they overlap most.
        assigner=dict(
            type="MaxIoUAssigner", pos_iou_thr=pos, neg_iou_thr=neg, min_pos_iou=0.0, ignore_iof_thr=-1,
            low_quality_keeps_argmax=True,
        ),
        sampler=dict(
            type="RandomSampler",
            num=int(rpn.BATCH_SIZE_PER_IMAGE),
            pos_fraction=float(rpn.POSITIVE_FRACTION),
            neg_pos_ub=-1,
            add_gt_as_proposals=False,
            permute_all=True,
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


def _roi_extractor(d2: Any, feats: list[tuple[int, int]], resolution: int,
                   node: str = "MODEL.ROI_BOX_HEAD") -> dict:
    bh = value_of(d2, node)
    if bh.POOLER_TYPE not in ("ROIAlignV2", "ROIAlign"):
        raise refuse(
            f"{node}.POOLER_TYPE",
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
        init_style="detectron2",  # Caffe2 Xavier FCs, MSRA convs
        **_box_head_common(d2, reg_weights, key),
    )
    norm = norm_cfg("MODEL.ROI_BOX_HEAD.NORM", bh.NORM, allow_empty=True)
    if norm is not None:
        head["norm_cfg"] = norm
    return head


def _rcnn_train(d2: Any, neg: float, pos: float) -> dict:
    rh = d2.MODEL.ROI_HEADS
    return dict(
        # Matcher(allow_low_quality_matches=False); ground truth appended after the proposals.
        assigner=dict(
            type="MaxIoUAssigner", pos_iou_thr=pos, neg_iou_thr=neg, min_pos_iou=pos, ignore_iof_thr=-1,
            match_low_quality=False,
        ),
        sampler=dict(
            type="RandomSampler",
            num=int(rh.BATCH_SIZE_PER_IMAGE),
            pos_fraction=float(rh.POSITIVE_FRACTION),
            neg_pos_ub=-1,
            add_gt_as_proposals=bool(rh.PROPOSAL_APPEND_GT),
            append_gt=True,
            permute_all=True,
        ),
        pos_weight=-1,
        debug=False,
    )


def _res5_width(r: Any) -> dict:
    """The shared res5 head's width arguments, as the backbone's (see d2_backbone.resnet_dict)."""
    groups, width = int(r.NUM_GROUPS), int(r.WIDTH_PER_GROUP)
    if groups > 1:
        return dict(groups=groups, base_width=width)
    return dict(base_channels=width) if width != 64 else {}


def roi_head_dicts(d2: Any, levels: dict[str, tuple[int, int]], c4: bool) -> tuple[dict, Any, dict]:
    """(roi_head, train_cfg.rcnn, test_cfg.rcnn)."""
    rh, bh = d2.MODEL.ROI_HEADS, d2.MODEL.ROI_BOX_HEAD
    name = rh.NAME
    test = dict(
        score_thr=float(rh.SCORE_THRESH_TEST),
        nms=dict(type="nms", iou_thr=float(rh.NMS_THRESH_TEST)),
        max_per_img=int(d2.TEST.DETECTIONS_PER_IMAGE),
    )
    feats = feature_levels(d2, "MODEL.ROI_HEADS.IN_FEATURES", levels, whole=False)
    res = int(bh.POOLER_RESOLUTION)
    if name == "Res5ROIHeads":
        if not c4:
            raise refuse(
                "MODEL.ROI_HEADS.NAME",
                name,
                "Res5ROIHeads (Detectron2's default) runs res5 on res4 features: with an FPN backbone set "
                "MODEL.ROI_HEADS.NAME StandardROIHeads (and ROI_BOX_HEAD.NAME FastRCNNConvFCHead), or use "
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
        if int(d2.MODEL.RESNETS.DEPTH) < 50:
            raise refuse(
                "MODEL.RESNETS.DEPTH",
                int(d2.MODEL.RESNETS.DEPTH),
                "Res5ROIHeads needs a bottleneck ResNet (50, 101 or 152)",
            )
        style = "caffe" if r.STRIDE_IN_1X1 else "pytorch"
        norm = norm_cfg("MODEL.RESNETS.NORM", r.NORM, allow_empty=False)
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
                **_res5_width(r),
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
    neg, pos = two_level_thresholds("MODEL.ROI_HEADS", rh.IOU_THRESHOLDS, rh.IOU_LABELS)
    train = _rcnn_train(d2, neg, pos)
    if d2.MODEL.MASK_ON:
        mask_head, mask_extractor, mask_size = mask_head_dicts(d2, levels, name == "Res5ROIHeads")
        head["mask_head"] = mask_head
        if mask_extractor is not None:
            head["mask_roi_extractor"] = mask_extractor
        train["mask_size"] = mask_size
        test["mask_thr_binary"] = 0.5  # detector_postprocess(mask_threshold=0.5)
    return head, train, test


def mask_head_dicts(d2: Any, levels: dict[str, tuple[int, int]], c4: bool,
                    feats: list[tuple[int, int]] | None = None) -> tuple[dict, dict | None, int]:
    """(``mask_head``, ``mask_roi_extractor`` or ``None``, ``mask_size``) from ``MODEL.ROI_MASK_HEAD``.

    FPN (``StandardROIHeads``): its own 14×14 RoIAlign over ``ROI_HEADS.IN_FEATURES`` and ``NUM_CONV``
    3×3 convs; C4 (``Res5ROIHeads``): the box head's pooled res5 features (7×7) and no extractor of its
    own. ``MaskRCNNConvUpsampleHead`` is MMDetection's ``FCNMaskHead`` (transposed-conv 2× upsampling).
    """
    mh = d2.MODEL.ROI_MASK_HEAD
    if mh.NAME != "MaskRCNNConvUpsampleHead":
        raise refuse("MODEL.ROI_MASK_HEAD.NAME", mh.NAME, "kiln implements MaskRCNNConvUpsampleHead")
    if feats is None:
        feats = feature_levels(d2, "MODEL.ROI_HEADS.IN_FEATURES", levels, whole=False)
    head = dict(
        type="FCNMaskHead",
        num_convs=int(mh.NUM_CONV),
        conv_out_channels=int(mh.CONV_DIM),
        num_classes=int(d2.MODEL.ROI_HEADS.NUM_CLASSES),
        class_agnostic=bool(mh.CLS_AGNOSTIC_MASK),
        upsample_cfg=dict(type="deconv", scale_factor=2),
        loss_mask=dict(type="CrossEntropyLoss", use_mask=True, loss_weight=1.0),
        init_style="detectron2",  # MSRA convs and deconv, predictor N(0, 0.001)
    )
    norm = norm_cfg("MODEL.ROI_MASK_HEAD.NORM", mh.NORM, allow_empty=True)
    if norm is not None:
        head["norm_cfg"] = norm
    if c4:
        # Res5ROIHeads runs the mask head on the res5 output of the box head's pooled features.
        for k in ("POOLER_RESOLUTION", "POOLER_SAMPLING_RATIO", "POOLER_TYPE"):
            warn_unread(d2, f"MODEL.ROI_MASK_HEAD.{k}",
                        "Res5ROIHeads pools mask features with the box head's pooler (MODEL.ROI_BOX_HEAD)")
        res = int(d2.MODEL.ROI_BOX_HEAD.POOLER_RESOLUTION) // 2
        head.update(roi_feat_size=res, in_channels=feats[0][0] * 2)
        return head, None, res * 2
    res = int(mh.POOLER_RESOLUTION)
    head.update(roi_feat_size=res, in_channels=feats[0][0])
    return head, _roi_extractor(d2, feats, res, "MODEL.ROI_MASK_HEAD"), res * 2


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
    train = [_rcnn_train(d2, iou, iou) for iou in ious]
    if d2.MODEL.MASK_ON:
        # Detectron2's CascadeROIHeads: one mask head, trained on the first stage's sample.
        mask_head, mask_extractor, mask_size = mask_head_dicts(d2, {}, c4=False, feats=feats)
        head.update(mask_head=mask_head, mask_roi_extractor=mask_extractor, mask_head_per_stage=False)
        for t in train:
            t["mask_size"] = mask_size
        test["mask_thr_binary"] = 0.5
    return head, train, test


def retina_dicts(d2: Any, levels: dict[str, tuple[int, int]]) -> tuple[dict, dict, dict]:
    """(``RetinaHead``, train_cfg, test_cfg) from ``MODEL.RETINANET`` and the anchors."""
    r = d2.MODEL.RETINANET
    feats = feature_levels(d2, "MODEL.RETINANET.IN_FEATURES", levels, whole=True)
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
        anchor_generator=anchor_generator(d2, [s for _, s in feats]),
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
        # Detectron2 divides RetinaNet's losses by a moving average of the foreground count (from 100).
        loss_normalizer_momentum=0.9,
        loss_normalizer_init=100.0,
    )
    if r.NORM == "GN":
        head["norm_cfg"] = dict(type="GN", num_groups=32, requires_grad=True)
    neg, pos = two_level_thresholds("MODEL.RETINANET", r.IOU_THRESHOLDS, r.IOU_LABELS)
    train = dict(
        assigner=dict(
            type="MaxIoUAssigner", pos_iou_thr=pos, neg_iou_thr=neg, min_pos_iou=0, ignore_iof_thr=-1,
            low_quality_keeps_argmax=True,
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
