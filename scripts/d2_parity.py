"""Side-by-side training losses: Detectron2 (the reference) and kiln, same yaml, weights and batches.

Detectron2 is never a kiln dependency: it lives in its own virtual environment (``--d2-python``, default
``/work/d2venv/bin/python``; see benchmarks/RESULTS.md for how it was installed), and this file runs twice:

* ``python scripts/d2_parity.py reference --model retinanet --out ref.pt`` (Detectron2's Python) loads the
  model yaml from Detectron2's config tree with a few ``--opts`` that make it small (R18, few classes,
  narrow FPN, CPU), fills its weights deterministically (:func:`fill_value`, by Detectron2 parameter
  name), makes seeded batches (:func:`make_batches`), trains ``--iters`` SGD steps and saves the merged
  config, the weights, the preprocessed batches and every step's losses;
* ``python scripts/d2_parity.py compare`` (kiln's Python, the default command) runs the reference for each
  model in a subprocess, builds kiln's model from the *same merged config* with Detectron2's training
  semantics switched on (:func:`kiln_model_cfg`), loads the same weights (:func:`d2_to_kiln_name`), trains on
  the same batches under the same seeds and prints both loss columns and the largest relative difference.

``compare --write-fixture DIR`` also writes the small fixed cases that ``tests/models/test_d2_parity.py``
replays without Detectron2 (the weights are rebuilt there from :func:`fill_value`, the batches from
:func:`make_batches`, so only the reference losses are stored).

Only model-side training semantics are compared: both sides use the same plain SGD
(lr, momentum 0.9, weight decay 1e-4, no warm-up) and feed the same normalised, padded image tensors, so
a difference in a loss column is a difference in a head, loss, assigner or sampler.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import subprocess
import sys
import tempfile
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
D2_CONFIGS = Path(os.environ.get("D2_CONFIGS", "/work/d2src/configs"))
D2_PYTHON = os.environ.get("D2_PYTHON", "/work/d2venv/bin/python")
D2_MIRROR = os.environ.get("D2_MIRROR", "/work/.mirror/facebookresearch+detectron2/repo")

# The yaml each model starts from (Detectron2's own files) and the opts that shrink it for 2 CPU cores.
MODELS = {
    "retinanet": "COCO-Detection/retinanet_R_50_FPN_1x.yaml",
    "faster_rcnn": "COCO-Detection/faster_rcnn_R_50_FPN_1x.yaml",
    "faster_rcnn_c4": "COCO-Detection/faster_rcnn_R_50_C4_1x.yaml",
    "mask_rcnn": "COCO-InstanceSegmentation/mask_rcnn_R_50_FPN_1x.yaml",
}
DEFAULT_MODELS = ["faster_rcnn", "retinanet"]
# C4 needs its R50 bottlenecks (the res5 head), shrunk 4x in width; only read by that model's yaml.
MODEL_OPTS = {"faster_rcnn_c4": ["MODEL.RESNETS.DEPTH", "50", "MODEL.RESNETS.STEM_OUT_CHANNELS", "16",
                                 "MODEL.RESNETS.RES2_OUT_CHANNELS", "64",
                                 "MODEL.RESNETS.WIDTH_PER_GROUP", "16",
                                 "MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE", "32"],
              "mask_rcnn": ["MODEL.ROI_MASK_HEAD.CONV_DIM", "32"]}
NUM_CLASSES = 3
SMALL_OPTS = [
    "MODEL.WEIGHTS", "", "MODEL.DEVICE", "cpu",
    "MODEL.RESNETS.DEPTH", "18", "MODEL.RESNETS.RES2_OUT_CHANNELS", "64",
    "MODEL.FPN.OUT_CHANNELS", "32",
    "MODEL.RETINANET.NUM_CLASSES", str(NUM_CLASSES), "MODEL.ROI_HEADS.NUM_CLASSES", str(NUM_CLASSES),
    "MODEL.ROI_BOX_HEAD.FC_DIM", "64", "MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE", "128",
]
LOSS_NAMES = {  # Detectron2 name -> kiln name
    "loss_cls": "loss_cls", "loss_box_reg": "loss_bbox",
    "loss_rpn_cls": "loss_rpn_cls", "loss_rpn_loc": "loss_rpn_bbox", "loss_mask": "loss_mask",
}
SOLVER = dict(lr=0.002, momentum=0.9, weight_decay=1e-4)
# Two images of different sizes per batch, so padding (and anchors over it) is exercised.
IMAGE_SIZES = [(96, 128), (128, 96)]


# ---------------------------------------------------------------------------------------- shared recipes
def fill_value(name: str, shape: tuple[int, ...], seed: int = 0) -> torch.Tensor:
    """A deterministic value for the Detectron2 parameter/buffer ``name`` (seeded by the name's CRC32).

    Convs and linears get LeCun-scaled weights and the frozen norms shrink a little (so activations stay
    of order one through the residual stages), the last predictor layers get small weights, and
    RetinaNet's class bias starts at its prior (0.01).
    """
    g = torch.Generator().manual_seed(seed * 1_000_003 + zlib.crc32(name.encode()))
    leaf = name.rsplit(".", 1)[-1]
    if ".norm." in name:
        if leaf == "weight":
            return 0.3 + 0.4 * torch.rand(shape, generator=g)
        if leaf == "running_var":
            return 0.5 + torch.rand(shape, generator=g)
        return 0.1 * torch.randn(shape, generator=g)
    predictor = any(k in name for k in ("cls_score", "bbox_pred", "objectness_logits", "anchor_deltas"))
    if leaf == "bias":
        if "head.cls_score" in name:
            return torch.full(shape, -math.log((1 - 0.01) / 0.01))
        return 0.01 * torch.randn(shape, generator=g)
    fan_in = max(1, math.prod(shape[1:]))
    if predictor:
        std = 0.001 if "box_predictor.bbox_pred" in name else 0.01
    else:
        std = math.sqrt(1.0 / fan_in)
    if name.endswith("stem.conv1.weight"):
        std /= 64.0  # MSRA weights take BGR minus the mean, unscaled (PIXEL_STD 1): inputs are ~±100
    return std * torch.randn(shape, generator=g)


def make_batches(iters: int, seed: int = 0) -> list[dict[str, Any]]:
    """Seeded raw batches: per image a BGR float image (0..255, HxWx3 as CHW) and 1-4 boxes with classes."""
    g = torch.Generator().manual_seed(seed)
    batches = []
    for _ in range(iters):
        images, boxes, classes = [], [], []
        for h, w in IMAGE_SIZES:
            images.append(torch.rand((3, h, w), generator=g) * 255.0)
            n = int(torch.randint(1, 5, (1,), generator=g))
            wh = torch.rand((n, 2), generator=g) * torch.tensor([w * 0.5, h * 0.5]) + 12.0
            xy = torch.rand((n, 2), generator=g) * (torch.tensor([w, h]) - wh)
            boxes.append(torch.cat([xy, xy + wh], dim=1))
            classes.append(torch.randint(0, NUM_CLASSES, (n,), generator=g))
        batches.append(dict(images=images, boxes=boxes, classes=classes))
    return batches


def batch_polygons(boxes: torch.Tensor) -> list[list[list[float]]]:
    """One instance polygon per box (no random draws, so the boxes' batches stay as they were): the
    diamond through the midpoints of the box's sides."""
    out = []
    for x0, y0, x1, y1 in boxes.tolist():
        cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
        out.append([[cx, y0, x1, cy, cx, y1, x0, cy]])
    return out


def preprocess(images: list[torch.Tensor], mean: list[float], std: list[float],
               divisor: int = 32) -> torch.Tensor:
    """Normalise and zero-pad to a multiple of ``divisor`` (what Detectron2's preprocess_image does)."""
    m = torch.tensor(mean).view(-1, 1, 1)
    s = torch.tensor(std).view(-1, 1, 1)
    h = max(i.shape[1] for i in images)
    w = max(i.shape[2] for i in images)
    h, w = -(-h // divisor) * divisor, -(-w // divisor) * divisor
    out = torch.zeros((len(images), 3, h, w))
    for k, img in enumerate(images):
        out[k, :, : img.shape[1], : img.shape[2]] = (img - m) / s
    return out


def step_seed(seed: int, it: int) -> int:
    """The global torch seed set before training step ``it`` (the samplers draw from it)."""
    return seed * 1000 + it


# ------------------------------------------------------------------------------------------ name mapping
def d2_to_kiln_name(name: str, d2: dict) -> str | None:
    """kiln's state-dict name for Detectron2's ``name`` (``None``: no counterpart needed, e.g. the pixel
    mean/std buffers and cached anchors)."""
    p = name.split(".")
    if name in ("pixel_mean", "pixel_std") or "anchor_generator" in name:
        return None
    if name.startswith("backbone.bottom_up."):  # FPN models wrap the ResNet; C4 models do not
        p = ["backbone", *p[2:]]
    if p[0] == "backbone" and p[1] == "stem":
        return "backbone.conv1.weight" if p[3] == "weight" else "backbone.bn1." + p[-1]
    if p[0] == "backbone" and p[1].startswith("res") or p[:2] == ["roi_heads", "res5"]:
        stage, block, layer = int(p[1][3:]) - 1, p[2], p[3]
        owner = f"backbone.layer{stage}" if p[0] == "backbone" else "roi_head.shared_head.layer4"
        base = f"{owner}.{block}."
        if layer == "shortcut":
            return base + ("downsample.0.weight" if p[4] == "weight" else "downsample.1." + p[-1])
        k = layer[4:]
        return base + (f"conv{k}.weight" if p[4] == "weight" else f"bn{k}.{p[-1]}")
    min_stage = min(int(f[3:]) for f in d2["MODEL"]["FPN"]["IN_FEATURES"]) if p[0] == "backbone" else 0
    for prefix, kind in (("fpn_lateral", "lateral_convs"), ("fpn_output", "fpn_convs")):
        if p[1].startswith(prefix):
            return f"neck.{kind}.{int(p[1][len(prefix):]) - min_stage}.conv.{p[-1]}"
    if p[1] == "top_block":
        n_in = len(d2["MODEL"]["FPN"]["IN_FEATURES"])
        return f"neck.fpn_convs.{n_in + int(p[2][1:]) - 6}.conv.{p[-1]}"
    if p[0] == "head":  # RetinaNet
        if p[1] in ("cls_subnet", "bbox_subnet"):
            tower = "cls_convs" if p[1] == "cls_subnet" else "reg_convs"
            return f"bbox_head.{tower}.{int(p[2]) // 2}.conv.{p[-1]}"
        return {"cls_score": "bbox_head.retina_cls", "bbox_pred": "bbox_head.retina_reg"}[p[1]] + "." + p[-1]
    if p[0] == "proposal_generator":
        return {"conv": "rpn_head.rpn_conv", "objectness_logits": "rpn_head.rpn_cls",
                "anchor_deltas": "rpn_head.rpn_reg"}[p[2]] + "." + p[-1]
    if p[:2] == ["roi_heads", "mask_head"]:
        if p[2].startswith("mask_fcn"):
            return f"roi_head.mask_head.convs.{int(p[2][8:]) - 1}.conv.{p[-1]}"
        part = {"deconv": "upsample", "predictor": "conv_logits"}[p[2]]
        return f"roi_head.mask_head.{part}.{p[-1]}"
    if p[0] == "roi_heads":
        if p[1] == "box_head":
            return f"roi_head.bbox_head.shared_fcs.{int(p[2][2:]) - 1}.{p[-1]}"
        return {"cls_score": "roi_head.bbox_head.fc_cls", "bbox_pred": "roi_head.bbox_head.fc_reg"}[p[2]] + \
            "." + p[-1]
    raise KeyError(f"d2_to_kiln_name: no kiln counterpart known for Detectron2's {name!r}")


# ------------------------------------------------------------------------------------- kiln model config
def _box_loss(kind: str, beta: float, weight: float = 1.0) -> tuple[dict, bool]:
    """kiln loss config and ``reg_decoded_bbox`` for Detectron2's ``BBOX_REG_LOSS_TYPE``/beta."""
    if kind == "smooth_l1":
        return dict(type="SmoothL1Loss", beta=float(beta), loss_weight=weight), False
    names = {"giou": "GIoULoss", "diou": "DIoULoss", "ciou": "CIoULoss"}
    if kind not in names:
        raise ValueError(f"BBOX_REG_LOSS_TYPE={kind!r}: expected smooth_l1, giou, diou or ciou")
    return dict(type=names[kind], eps=1e-7, loss_weight=weight), True


def _coder(weights: list[float]) -> dict:
    # Detectron2 multiplies deltas by weights; kiln divides by stds. Its clamp is one-sided.
    return dict(type="DeltaXYWHBBoxCoder", target_means=[0.0] * 4, target_stds=[1.0 / w for w in weights],
                symmetric_wh_clamp=False)


def _is_c4(d2: dict) -> bool:
    # ROI_HEADS.NAME defaults to Res5ROIHeads even in RetinaNet configs, which have no ROI heads.
    m = d2["MODEL"]
    return m["META_ARCHITECTURE"] == "GeneralizedRCNN" and m["ROI_HEADS"]["NAME"] == "Res5ROIHeads"


def _c4_roi_head(cfg: dict, d2: dict) -> dict:
    """Turn an FPN two-stage config into Detectron2's C4 layout: no neck, 14x14 RoIAlign at stride 16,
    the res5 stage as shared head, mean pooling and the two predictors (``Res5ROIHeads``)."""
    m = d2["MODEL"]
    res, bh, rh = m["RESNETS"], m["ROI_BOX_HEAD"], m["ROI_HEADS"]
    base = int(res["NUM_GROUPS"]) * int(res["WIDTH_PER_GROUP"])
    cfg.pop("neck")
    head = cfg["roi_head"]
    head["bbox_roi_extractor"] = dict(
        type="SingleRoIExtractor",
        roi_layer=dict(type="RoIAlign", output_size=int(bh["POOLER_RESOLUTION"]),
                       sampling_ratio=int(bh["POOLER_SAMPLING_RATIO"]), aligned=True),
        out_channels=base * 16, featmap_strides=[16])
    head["shared_head"] = dict(type="ResLayer", depth=int(res["DEPTH"]), stage=3, stride=2,
                               dilation=int(res["RES5_DILATION"]), style=cfg["backbone"]["style"],
                               norm_cfg=dict(type="FrozenBN", requires_grad=False), norm_eval=True,
                               base_channels=base)
    box = head["bbox_head"]
    head["bbox_head"] = dict(type="BBoxHead", with_avg_pool=True, in_channels=base * 32,
                             roi_feat_size=int(bh["POOLER_RESOLUTION"]) // 2,
                             num_classes=int(rh["NUM_CLASSES"]),
                             bbox_coder=box["bbox_coder"], reg_decoded_bbox=box["reg_decoded_bbox"],
                             reg_class_agnostic=box["reg_class_agnostic"], loss_cls=box["loss_cls"],
                             loss_bbox=box["loss_bbox"])
    return cfg


def kiln_model_cfg(d2: dict) -> dict:
    """kiln's model config for a merged Detectron2 config (``cfg`` as a dict) with Detectron2's training
    semantics: this is the mapping the Detectron2 translator needs, keyword by keyword."""
    m = d2["MODEL"]
    res, fpn = m["RESNETS"], m["FPN"]
    depth = int(res["DEPTH"])
    stages = [int(f[3:]) for f in fpn["IN_FEATURES"]]
    widths = {2: 64, 3: 128, 4: 256, 5: 512} if depth < 50 else {2: 256, 3: 512, 4: 1024, 5: 2048}
    if res["NORM"] != "FrozenBN":
        raise ValueError("kiln_model_cfg covers RESNETS.NORM FrozenBN (the parity models)")
    c4 = _is_c4(d2)
    if c4:  # build_resnet_backbone: res2..res4 (stride 16), res5 runs per RoI in the head
        stages = [int(f[3:]) for f in m["RPN"]["IN_FEATURES"]]
        base = int(res["NUM_GROUPS"]) * int(res["WIDTH_PER_GROUP"])
        widths = {s: base * 4 * 2 ** (s - 2) for s in (2, 3, 4, 5)}
    style = "caffe" if res["STRIDE_IN_1X1"] else "pytorch"
    frozen = dict(type="FrozenBN", requires_grad=False)
    backbone = dict(type="ResNet", depth=depth, num_stages=3 if c4 else 4,
                    out_indices=tuple(s - 2 for s in stages),
                    frozen_stages=int(m["BACKBONE"]["FREEZE_AT"]) - 1, norm_cfg=frozen, norm_eval=True,
                    style=style)
    if c4:
        backbone.update(strides=(1, 2, 2), dilations=(1, 1, 1), base_channels=widths[2] // 4,
                        stem_channels=int(res["STEM_OUT_CHANNELS"]))
    out = widths[stages[-1]] if c4 else int(fpn["OUT_CHANNELS"])
    ag = m["ANCHOR_GENERATOR"]
    anchors = dict(type="AnchorGenerator", sizes=[list(s) for s in ag["SIZES"]],
                   ratios=list(ag["ASPECT_RATIOS"][0]), center_offset=float(ag["OFFSET"]))
    if m["META_ARCHITECTURE"] == "RetinaNet":
        r = m["RETINANET"]
        anchors["strides"] = [2 ** s for s in stages] + [2 ** (stages[-1] + 1), 2 ** (stages[-1] + 2)]
        loss_bbox, decoded = _box_loss(r["BBOX_REG_LOSS_TYPE"], r["SMOOTH_L1_LOSS_BETA"])
        neg, pos = r["IOU_THRESHOLDS"]
        return dict(
            type="RetinaNet", pretrained=None, backbone=backbone,
            neck=dict(type="FPN", in_channels=[widths[s] for s in stages], out_channels=out, start_level=0,
                      add_extra_convs="on_input", relu_before_extra_convs=True, num_outs=5),
            bbox_head=dict(
                type="RetinaHead", num_classes=int(r["NUM_CLASSES"]), in_channels=out, feat_channels=out,
                stacked_convs=int(r["NUM_CONVS"]), prior_prob=float(r["PRIOR_PROB"]),
                anchor_generator=anchors,
                bbox_coder=_coder(r["BBOX_REG_WEIGHTS"]), reg_decoded_bbox=decoded,
                loss_cls=dict(type="FocalLoss", use_sigmoid=True, gamma=float(r["FOCAL_LOSS_GAMMA"]),
                              alpha=float(r["FOCAL_LOSS_ALPHA"])),
                loss_bbox=loss_bbox, loss_normalizer_momentum=0.9, loss_normalizer_init=100.0),
            train_cfg=dict(assigner=dict(type="MaxIoUAssigner", pos_iou_thr=float(pos),
                                         neg_iou_thr=float(neg), min_pos_iou=0.0,
                                         low_quality_keeps_argmax=True),
                           allowed_border=-1, pos_weight=-1),
            test_cfg=dict(nms_pre=1000, score_thr=0.05, nms=dict(type="nms", iou_threshold=0.5),
                          max_per_img=100),
        )
    rpn, rh, bh = m["RPN"], m["ROI_HEADS"], m["ROI_BOX_HEAD"]
    anchors["strides"] = [2 ** s for s in stages] + ([] if c4 else [2 ** (stages[-1] + 1)])
    rpn_w = float(rpn["LOSS_WEIGHT"])
    rpn_bbox, rpn_decoded = _box_loss(rpn["BBOX_REG_LOSS_TYPE"], rpn["SMOOTH_L1_BETA"],
                                      rpn_w * float(rpn["BBOX_REG_LOSS_WEIGHT"]))
    roi_bbox, roi_decoded = _box_loss(bh["BBOX_REG_LOSS_TYPE"], bh["SMOOTH_L1_BETA"],
                                      float(bh["BBOX_REG_LOSS_WEIGHT"]))
    if bh["POOLER_TYPE"] != "ROIAlignV2" or (int(bh["NUM_CONV"]) != 0 and not c4):
        raise ValueError("kiln_model_cfg covers ROIAlignV2 pooling and FC-only box heads (the parity models)")
    neg, pos = rpn["IOU_THRESHOLDS"]
    iou = float(rh["IOU_THRESHOLDS"][0])
    proposal = dict(nms_pre=int(rpn["PRE_NMS_TOPK_TRAIN"]), max_per_img=int(rpn["POST_NMS_TOPK_TRAIN"]),
                    nms=dict(type="nms", iou_threshold=float(rpn["NMS_THRESH"])), min_bbox_size=0)
    cfg = dict(
        type="FasterRCNN", pretrained=None, backbone=backbone,
        neck=dict(type="FPN", in_channels=[widths[s] for s in stages], out_channels=out, num_outs=5),
        rpn_head=dict(type="RPNHead", in_channels=out, feat_channels=out, anchor_generator=anchors,
                      bbox_coder=_coder(rpn["BBOX_REG_WEIGHTS"]), reg_decoded_bbox=rpn_decoded,
                      loss_cls=dict(type="CrossEntropyLoss", use_sigmoid=True, loss_weight=rpn_w),
                      loss_bbox=rpn_bbox, normalize_by_budget=True, ignore_padding_anchors=False,
                      rank_by_logits=True),
        roi_head=dict(
            type="StandardRoIHead",
            bbox_roi_extractor=dict(
                type="SingleRoIExtractor",
                roi_layer=dict(type="RoIAlign", output_size=int(bh["POOLER_RESOLUTION"]),
                               sampling_ratio=int(bh["POOLER_SAMPLING_RATIO"]), aligned=True),
                out_channels=out, featmap_strides=[2 ** s for s in stages], canonical_box_size=224,
                canonical_level=4),
            bbox_head=dict(type="ConvFCBBoxHead", num_shared_convs=0, num_shared_fcs=int(bh["NUM_FC"]),
                           in_channels=out, fc_out_channels=int(bh["FC_DIM"]),
                           roi_feat_size=int(bh["POOLER_RESOLUTION"]), num_classes=int(rh["NUM_CLASSES"]),
                           bbox_coder=_coder(bh["BBOX_REG_WEIGHTS"]), reg_decoded_bbox=roi_decoded,
                           reg_class_agnostic=bool(bh["CLS_AGNOSTIC_BBOX_REG"]),
                           loss_cls=dict(type="CrossEntropyLoss", use_sigmoid=False, loss_weight=1.0),
                           loss_bbox=roi_bbox, init_style="detectron2")),
        train_cfg=dict(
            rpn=dict(assigner=dict(type="MaxIoUAssigner", pos_iou_thr=float(pos), neg_iou_thr=float(neg),
                                   min_pos_iou=0.0, low_quality_keeps_argmax=True),
                     sampler=dict(type="RandomSampler", num=int(rpn["BATCH_SIZE_PER_IMAGE"]),
                                  pos_fraction=float(rpn["POSITIVE_FRACTION"]), add_gt_as_proposals=False,
                                  permute_all=True),
                     allowed_border=float(rpn["BOUNDARY_THRESH"]), pos_weight=-1),
            rpn_proposal=proposal,
            rcnn=dict(assigner=dict(type="MaxIoUAssigner", pos_iou_thr=iou, neg_iou_thr=iou, min_pos_iou=iou,
                                    match_low_quality=False),
                      sampler=dict(type="RandomSampler", num=int(rh["BATCH_SIZE_PER_IMAGE"]),
                                   pos_fraction=float(rh["POSITIVE_FRACTION"]),
                                   add_gt_as_proposals=bool(rh["PROPOSAL_APPEND_GT"]), append_gt=True,
                                   permute_all=True),
                      pos_weight=-1)),
        test_cfg=dict(rpn=dict(proposal), rcnn=dict(score_thr=0.05, nms=dict(type="nms", iou_threshold=0.5),
                                                     max_per_img=100)),
    )
    if m["MASK_ON"] and not c4:
        mh = m["ROI_MASK_HEAD"]
        cfg["type"] = "MaskRCNN"
        cfg["roi_head"]["mask_roi_extractor"] = dict(
            type="SingleRoIExtractor",
            roi_layer=dict(type="RoIAlign", output_size=int(mh["POOLER_RESOLUTION"]),
                           sampling_ratio=int(mh["POOLER_SAMPLING_RATIO"]), aligned=True),
            out_channels=out, featmap_strides=[2 ** s for s in stages], canonical_box_size=224,
            canonical_level=4)
        cfg["roi_head"]["mask_head"] = dict(
            type="FCNMaskHead", num_convs=int(mh["NUM_CONV"]), in_channels=out,
            conv_out_channels=int(mh["CONV_DIM"]), roi_feat_size=int(mh["POOLER_RESOLUTION"]),
            num_classes=int(rh["NUM_CLASSES"]), class_agnostic=bool(mh["CLS_AGNOSTIC_MASK"]),
            init_style="detectron2")
        cfg["train_cfg"]["rcnn"]["mask_size"] = 2 * int(mh["POOLER_RESOLUTION"])
        cfg["test_cfg"]["rcnn"]["mask_thr_binary"] = 0.5
    return _c4_roi_head(cfg, d2) if c4 else cfg


# ------------------------------------------------------------------------------------------- kiln side
def _set(path: str, value: Any) -> Any:
    """An edit of the kiln model config that sets the dotted ``path`` to ``value``."""
    def edit(cfg: dict) -> None:
        *parents, leaf = path.split(".")
        node = cfg
        for p in parents:
            node = node[p]
        if value is _DROP:
            node.pop(leaf)
        else:
            node[leaf] = value
    return edit


_DROP = object()
# Each Detectron2 semantic switched back to kiln's (MMDetection's) default, one at a time: how much of
# the parity each option carries on these models.
ABLATIONS = {
    "retinanet": {
        "loss_normalizer_momentum=None": _set("bbox_head.loss_normalizer_momentum", None),
        "low_quality_keeps_argmax=False": _set("train_cfg.assigner.low_quality_keeps_argmax", False),
        "MMDetection anchors order": _set("bbox_head.anchor_generator", dict(
            type="AnchorGenerator", octave_base_scale=4, scales_per_octave=3, ratios=[0.5, 1.0, 2.0],
            strides=[8, 16, 32, 64, 128])),
    },
    "faster_rcnn": {
        "rpn normalize_by_budget=False": _set("rpn_head.normalize_by_budget", False),
        "rpn ignore_padding_anchors=True": _set("rpn_head.ignore_padding_anchors", True),
        "rpn rank_by_logits=False": _set("rpn_head.rank_by_logits", False),
        "rpn low_quality_keeps_argmax=False": _set("train_cfg.rpn.assigner.low_quality_keeps_argmax", False),
        "rpn min_pos_iou=0.3": _set("train_cfg.rpn.assigner.min_pos_iou", 0.3),
        "samplers permute_all=False": lambda c: (_set("train_cfg.rpn.sampler.permute_all", False)(c),
                                                 _set("train_cfg.rcnn.sampler.permute_all", False)(c)),
        "rcnn append_gt=False": _set("train_cfg.rcnn.sampler.append_gt", False),
        "MMDetection RoI levels": lambda c: (_set("roi_head.bbox_roi_extractor.canonical_box_size", _DROP)(c),
                                             _set("roi_head.bbox_roi_extractor.canonical_level", _DROP)(c)),
    },
}


def translator_model_cfg(d2: dict) -> dict:
    """kiln's model config for the merged Detectron2 config ``d2`` as the product builds it: the Detectron2
    translator (kiln.config.dialects.d2_model), the path of ``kiln train x.yaml`` and ``DefaultTrainer``."""
    from kiln.config import CfgNode, get_cfg
    from kiln.config.dialects.d2_model import build_model_dict

    cfg = get_cfg()
    cfg.merge_from_other_cfg(CfgNode(copy.deepcopy(d2)))
    cfg.MODEL.DEVICE = "cpu"
    return build_model_dict(cfg)


def kiln_run(d2: dict, batches: list[dict], iters: int, seed: int,
             state: dict[str, torch.Tensor] | None = None,
             edit: Any = None, model_cfg: Any = None) -> list[dict[str, float]]:
    """Train kiln's model ``iters`` steps on ``batches``; weights from ``state`` (Detectron2 names) or,
    without it, from :func:`fill_value`. ``edit(cfg)`` may change the model config first (ablations);
    ``model_cfg(d2)`` makes it (default :func:`kiln_model_cfg`, the hand mapping;
    :func:`translator_model_cfg` is the product's). Returns each step's losses under kiln's names."""
    from kiln.models.builder import build_detector
    from kiln.models.detectors.base import DetInputs
    from kiln.structures.image_list import ImageList

    torch.manual_seed(seed)
    cfg = (model_cfg or kiln_model_cfg)(d2)
    if edit is not None:
        edit(cfg)
    model = build_detector(cfg)
    own = model.state_dict()
    inverse = {}
    names = list(state) if state is not None else None
    if names is None:
        names = d2_parameter_names(d2, own)
    for n in names:
        k = d2_to_kiln_name(n, d2)
        if k is not None:
            inverse[k] = n
    missing = [k for k in own if k not in inverse and not k.endswith("loss_normalizer")]
    if missing:
        raise KeyError(f"kiln parameters with no Detectron2 counterpart: {missing[:8]}")
    new = {}
    for k, v in own.items():
        if k in inverse:
            src = state[inverse[k]] if state is not None else fill_value(inverse[k], tuple(v.shape), seed)
            if tuple(src.shape) != tuple(v.shape):
                raise ValueError(f"{inverse[k]} {tuple(src.shape)} -> {k} {tuple(v.shape)}: shapes differ")
            new[k] = src.to(v.dtype)
        else:
            new[k] = v
    model.load_state_dict(new)
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.SGD(params, **SOLVER)
    history = []
    for it in range(iters):
        b = batches[it]
        images = b["tensor"] if "tensor" in b else preprocess(
            b["images"], d2["MODEL"]["PIXEL_MEAN"], d2["MODEL"]["PIXEL_STD"])
        sizes = [tuple(i.shape[1:]) for i in b["images"]] if "images" in b else b["image_sizes"]
        metas = [dict(img_shape=s, ori_shape=s, pad_shape=tuple(images.shape[2:])) for s in sizes]
        inputs = DetInputs(images=ImageList(images, list(sizes)), metas=metas,
                           gt_bboxes=[x.float() for x in b["boxes"]],
                           gt_labels=[x.long() for x in b["classes"]],
                           gt_bboxes_ignore=[None] * len(sizes))
        if d2["MODEL"]["MASK_ON"]:
            from kiln.structures.masks import PolygonMasks

            inputs.gt_masks = [PolygonMasks([[np.array(p, dtype=np.float64) for p in obj]
                                             for obj in batch_polygons(x)], h, w)
                               for x, (h, w) in zip(b["boxes"], sizes)]
        torch.manual_seed(step_seed(seed, it))
        losses = {k: v for k, v in model.loss(inputs).items() if k.startswith("loss")}
        total = sum(losses.values())
        opt.zero_grad()
        total.backward()
        opt.step()
        history.append({k: v.item() for k, v in losses.items()})
    return history


def d2_parameter_names(d2: dict, kiln_state: dict[str, torch.Tensor]) -> list[str]:
    """Detectron2's names for kiln's parameters, by trying the inverse of :func:`d2_to_kiln_name` over the
    names Detectron2's model would have (generated from the config)."""
    m = d2["MODEL"]
    stages = [int(f[3:]) for f in m["FPN"]["IN_FEATURES"]]
    bb = "backbone." if _is_c4(d2) else "backbone.bottom_up."
    cand = [f"{bb}stem.conv1.weight"] + [
        f"{bb}stem.conv1.norm.{x}" for x in ("weight", "bias", "running_mean", "running_var")]
    for k in kiln_state:
        p = k.split(".")
        if k.startswith("roi_head.shared_head.layer4."):
            p = ["backbone", "layer4", *p[3:]]
        if p[0] == "backbone" and p[1].startswith("layer"):
            s, b = int(p[1][5:]) + 1, p[2]
            base = f"{bb}res{s}.{b}." if k.startswith("backbone.") else f"roi_heads.res5.{b}."
            if p[3] == "downsample":
                cand.append(base + ("shortcut.weight" if p[4] == "0" else f"shortcut.norm.{p[-1]}"))
            else:
                n = p[3][-1]
                leaf = "weight" if p[3].startswith("conv") else f"norm.{p[-1]}"
                cand.append(base + f"conv{n}.{leaf}")
    for s in stages:
        for kind in ("lateral", "output"):
            cand += [f"backbone.fpn_{kind}{s}.weight", f"backbone.fpn_{kind}{s}.bias"]
    if m["META_ARCHITECTURE"] == "RetinaNet":
        cand += [f"backbone.top_block.p{j}.{x}" for j in (6, 7) for x in ("weight", "bias")]
        for t in ("cls_subnet", "bbox_subnet"):
            cand += [f"head.{t}.{2 * i}.{x}" for i in range(int(m["RETINANET"]["NUM_CONVS"]))
                     for x in ("weight", "bias")]
        cand += [f"head.{h}.{x}" for h in ("cls_score", "bbox_pred") for x in ("weight", "bias")]
    else:
        cand += [f"proposal_generator.rpn_head.{h}.{x}" for x in ("weight", "bias")
                 for h in ("conv", "objectness_logits", "anchor_deltas")]
        cand += [f"roi_heads.box_head.fc{i + 1}.{x}" for i in range(int(m["ROI_BOX_HEAD"]["NUM_FC"]))
                 for x in ("weight", "bias")]
        cand += [f"roi_heads.box_predictor.{h}.{x}" for h in ("cls_score", "bbox_pred")
                 for x in ("weight", "bias")]
        if m["MASK_ON"]:
            cand += [f"roi_heads.mask_head.{h}.{x}" for x in ("weight", "bias")
                     for h in [f"mask_fcn{i + 1}" for i in range(int(m["ROI_MASK_HEAD"]["NUM_CONV"]))]
                     + ["deconv", "predictor"]]
    return cand


# -------------------------------------------------------------------------------------- Detectron2 side
def reference(model: str, iters: int, seed: int, out: str, opts: list[str] | None = None) -> None:
    """Run Detectron2 (import only here): build, fill, train ``iters`` steps, save everything."""
    import yaml
    from detectron2.config import get_cfg
    from detectron2.modeling import build_model
    from detectron2.structures import Boxes, Instances, PolygonMasks
    from detectron2.utils.events import EventStorage

    cfg = get_cfg()
    cfg.merge_from_file(str(D2_CONFIGS / MODELS[model]))
    opts = SMALL_OPTS + MODEL_OPTS.get(model, []) + list(opts or [])
    cfg.merge_from_list(opts)
    cfg.freeze()
    d2 = yaml.safe_load(cfg.dump())
    torch.manual_seed(seed)
    net = build_model(cfg)
    with torch.no_grad():
        for name, t in net.state_dict().items():
            if d2_to_kiln_name(name, d2) is not None:
                t.copy_(fill_value(name, tuple(t.shape), seed))
    state = {k: v.clone() for k, v in net.state_dict().items()}
    net.train()
    opt = torch.optim.SGD([p for p in net.parameters() if p.requires_grad], **SOLVER)
    batches = make_batches(iters, seed)
    history, saved = [], []
    for it, b in enumerate(batches):
        inputs = []
        for img, boxes, classes in zip(b["images"], b["boxes"], b["classes"]):
            inst = Instances(tuple(img.shape[1:]), gt_boxes=Boxes(boxes), gt_classes=classes)
            if cfg.MODEL.MASK_ON:
                inst.gt_masks = PolygonMasks(batch_polygons(boxes))
            inputs.append(dict(image=img, instances=inst))
        images = net.preprocess_image(inputs)
        saved.append(dict(tensor=images.tensor.clone(), image_sizes=list(images.image_sizes),
                          boxes=b["boxes"], classes=b["classes"]))
        torch.manual_seed(step_seed(seed, it))
        with EventStorage(it):
            losses = net(inputs)
        total = sum(losses.values())
        opt.zero_grad()
        total.backward()
        opt.step()
        history.append({LOSS_NAMES[k]: v.item() for k, v in losses.items()})
    import detectron2

    torch.save(dict(model=model, d2=d2, d2_version=detectron2.__version__, state=state, batches=saved,
                    losses=history, seed=seed, yaml=MODELS[model], opts=opts), out)


# --------------------------------------------------------------------------------------------- compare
def _max_rel(ref: list[dict[str, float]], got: list[dict[str, float]]) -> float:
    return max(abs(a[k] - b[k]) / max(abs(a[k]), 1e-6) for a, b in zip(ref, got) for k in a)


def compare(models: list[str], iters: int, seed: int, d2_python: str, fixture_dir: str | None,
            fixture_iters: int | None = None, opts: list[str] | None = None) -> int:
    """Run both sides per model and print the side-by-side losses; 1 if any step differs by > 1e-3."""
    worst_all = 0.0
    for name in models:
        with tempfile.TemporaryDirectory() as tmp:
            ref_file = os.path.join(tmp, "ref.pt")
            subprocess.run([d2_python, __file__, "reference", "--model", name, "--iters", str(iters),
                            "--seed", str(seed), "--out", ref_file, "--opts", *(opts or [])], check=True)
            ref = torch.load(ref_file, weights_only=False)
        kiln_transfer = kiln_run(ref["d2"], ref["batches"], iters, seed, state=ref["state"])
        kiln_filled = kiln_run(ref["d2"], make_batches(iters, seed), iters, seed)
        print(f"\n{name}: {ref['yaml']} + {' '.join(repr(o) if o == '' else o for o in ref['opts'])}")
        keys = list(ref["losses"][0])
        header = "  ".join(f"{k + ' d2':>17} {k + ' kiln':>19}" for k in keys)
        print(f"{'iter':>4}  {header}   max rel diff")
        worst = 0.0
        for it, (a, b) in enumerate(zip(ref["losses"], kiln_transfer)):
            rel = max(abs(a[k] - b[k]) / max(abs(a[k]), 1e-6) for k in keys)
            worst = max(worst, rel)
            print(f"{it:>4}  " + "  ".join(f"{a[k]:>17.6f} {b[k]:>19.6f}" for k in keys) + f"   {rel:.2e}")
        same = max(abs(a[k] - b[k]) for a, b in zip(kiln_transfer, kiln_filled) for k in keys)
        print(f"max relative difference over {iters} steps: {worst:.2e} "
              f"(kiln from the transferred weights vs from fill_value: max abs {same:.1e})")
        worst_all = max(worst_all, worst)
        for label, edit in ABLATIONS.get(name, {}).items():
            other = kiln_run(ref["d2"], ref["batches"], iters, seed, state=ref["state"], edit=edit)
            rel = _max_rel(ref["losses"], other)
            first = _max_rel(ref["losses"][:1], other[:1])
            print(f"  without Detectron2 semantics, {label:<36} max rel diff {rel:.2e} (step 0: {first:.2e})")
        if fixture_dir:
            Path(fixture_dir).mkdir(parents=True, exist_ok=True)
            path = Path(fixture_dir) / f"{name}.json"
            n = min(fixture_iters or iters, iters)  # the first n steps of a longer run are an n-step run
            path.write_text(json.dumps(dict(
                produced_by=f"python scripts/d2_parity.py compare --models {name} --iters {n} "
                            f"--seed {seed} --write-fixture {fixture_dir}",
                reference=f"Detectron2 {ref['d2_version']} built from its source at commit {_d2_commit()}",
                yaml=ref["yaml"], opts=ref["opts"], seed=seed, iters=n, d2_config=ref["d2"],
                losses=ref["losses"][:n]), indent=1) + "\n")
            print(f"wrote {path}")
    return 0 if worst_all <= 1e-3 else 1


def _d2_commit() -> str:
    try:
        return subprocess.run(["git", "-C", D2_MIRROR, "rev-parse", "HEAD"], capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown (set D2_MIRROR to the git directory it was exported from)"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd")
    r = sub.add_parser("reference", help="run Detectron2 (in its own venv) and save the reference run")
    r.add_argument("--model", choices=sorted(MODELS), required=True)
    r.add_argument("--iters", type=int, default=10)
    r.add_argument("--seed", type=int, default=0)
    r.add_argument("--out", required=True)
    r.add_argument("--opts", nargs="*", default=[], help="more Detectron2 KEY VALUE pairs")
    c = sub.add_parser("compare", help="reference + kiln side by side (default)")
    c.add_argument("--models", nargs="+", choices=sorted(MODELS), default=DEFAULT_MODELS,
                   help="faster_rcnn_c4 needs the ResLayer shared head and BBoxHead in kiln")
    c.add_argument("--iters", type=int, default=10)
    c.add_argument("--seed", type=int, default=0)
    c.add_argument("--d2-python", default=D2_PYTHON)
    c.add_argument("--write-fixture", default=None, metavar="DIR")
    c.add_argument("--fixture-iters", type=int, default=None, help="steps kept in the fixture (default: all)")
    c.add_argument("--opts", nargs="*", default=[],
                   help="more Detectron2 KEY VALUE pairs for both sides, "
                        "e.g. MODEL.RETINANET.BBOX_REG_LOSS_TYPE giou")
    args = ap.parse_args(argv)
    if args.cmd == "reference":
        reference(args.model, args.iters, args.seed, args.out, args.opts)
        return 0
    if args.cmd is None:
        args = ap.parse_args(["compare", *(argv or sys.argv[1:])])
    sys.path.insert(0, str(ROOT))
    return compare(args.models, args.iters, args.seed, args.d2_python, args.write_fixture, args.fixture_iters,
                   args.opts)


if __name__ == "__main__":
    sys.exit(main())
