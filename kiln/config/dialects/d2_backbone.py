"""Detectron2 ``MODEL.BACKBONE``/``RESNETS``/``FPN``/``ANCHOR_GENERATOR`` -> backbone, neck and anchors.

``build_resnet_backbone`` is a ResNet (or ResNeXt) whose outputs are ``RESNETS.OUT_FEATURES`` (C4:
``res4``; DC5: ``res5`` with ``RES5_DILATION: 2``); ``build_resnet_fpn_backbone`` and
``build_retinanet_resnet_fpn_backbone`` add an FPN on ``FPN.IN_FEATURES`` (P6 by max-pooling, or P6/P7
from res5 for RetinaNet). Every function returns the feature levels it makes (name -> channels, stride)
so the heads can check the features they read (:func:`feature_levels`).
"""

from __future__ import annotations

from typing import Any

from .d2_check import refuse, require_default, value_of

__all__ = [
    "NORMS",
    "norm_cfg",
    "resnet_dict",
    "fpn_dicts",
    "feature_levels",
    "anchor_generator",
    "backbone_layout",
]

NORMS = {
    "FrozenBN": dict(type="FrozenBN", requires_grad=False),
    "BN": dict(type="BN", requires_grad=True),
    "SyncBN": dict(type="SyncBN", requires_grad=True),
    "GN": dict(type="GN", num_groups=32, requires_grad=True),
}
_FPN_BACKBONES = ("build_resnet_fpn_backbone", "build_retinanet_resnet_fpn_backbone")
_RES = ("res2", "res3", "res4", "res5")


def norm_cfg(key: str, value: str, allow_empty: bool) -> dict | None:
    """The ``norm_cfg`` for a Detectron2 norm name at ``key`` (``""`` -> ``None`` where allowed)."""
    if value == "" and allow_empty:
        return None
    if value not in NORMS:
        choices = ", ".join(([repr("")] if allow_empty else []) + list(NORMS))
        raise refuse(key, value, f"expected one of {choices}")
    return dict(NORMS[value])


def resnet_dict(d2: Any, out_features: list[str], where: str) -> tuple[dict, dict[str, tuple[int, int]]]:
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
            raise refuse(
                "MODEL.RESNETS.RES2_OUT_CHANNELS",
                res2,
                f"R{depth} has 64 res2 channels; set MODEL.RESNETS.RES2_OUT_CHANNELS 64 "
                "(Detectron2 requires it too)",
            )
        if int(r.NUM_GROUPS) != 1 or dilation != 1:
            raise refuse(
                "MODEL.RESNETS.NUM_GROUPS" if int(r.NUM_GROUPS) != 1 else "MODEL.RESNETS.RES5_DILATION",
                int(r.NUM_GROUPS) if int(r.NUM_GROUPS) != 1 else dilation,
                "must be 1 for R18/R34 (basic blocks), as in Detectron2",
            )
    elif res2 != 4 * int(r.WIDTH_PER_GROUP) * (1 if int(r.NUM_GROUPS) == 1 else 0) and res2 != 256:
        raise refuse(
            "MODEL.RESNETS.RES2_OUT_CHANNELS",
            res2,
            "kiln's bottleneck ResNets have 4x the bottleneck width in res2: 256 for the standard width "
            "(WIDTH_PER_GROUP 64), 4 x WIDTH_PER_GROUP for a narrower or wider ResNet with NUM_GROUPS 1",
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
        norm_cfg=norm_cfg("MODEL.RESNETS.NORM", r.NORM, allow_empty=False),
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
            if res2 != 4 * width:
                raise refuse(
                    "MODEL.RESNETS.WIDTH_PER_GROUP",
                    width,
                    f"a ResNet of another width needs RES2_OUT_CHANNELS = 4 x WIDTH_PER_GROUP "
                    f"({4 * width}), got {res2}",
                )
            bb["base_channels"] = width  # every stage scaled: res2 = 4 x width, res3 = 8 x width ...
        else:
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
        channels[name] = ((64 if small else res2) * 2**i, stride)
    return bb, {f: channels[f] for f in out_features}


def fpn_dicts(d2: Any, retina: bool) -> tuple[dict, dict, dict[str, tuple[int, int]]]:
    """(backbone, FPN neck, ``{p-level: (channels, stride)}``) of an FPN backbone."""
    fpn = d2.MODEL.FPN
    in_features = list(fpn.IN_FEATURES)
    if not in_features:
        raise refuse(
            "MODEL.FPN.IN_FEATURES",
            in_features,
            "an FPN backbone needs its inputs: Detectron2's Base-RCNN-FPN.yaml sets "
            "MODEL.RESNETS.OUT_FEATURES and MODEL.FPN.IN_FEATURES to ['res2', 'res3', 'res4', 'res5'] "
            "(with RPN.IN_FEATURES p2..p6, ROI_HEADS.NAME StandardROIHeads, IN_FEATURES p2..p5), "
            "Base-RetinaNet.yaml to ['res3', 'res4', 'res5']; start from those files with _BASE_",
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
    bb, feats = resnet_dict(d2, in_features, "MODEL.RESNETS.OUT_FEATURES")
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
    norm = norm_cfg("MODEL.FPN.NORM", fpn.NORM, allow_empty=True)
    if norm is not None:
        neck["norm_cfg"] = norm
    levels = {f"p{_RES.index(f) + 2}": (out, feats[f][1]) for f in in_features}
    top = _RES.index(in_features[-1]) + 2
    for k in range(1, extra + 1):
        levels[f"p{top + k}"] = (out, feats[in_features[-1]][1] * 2**k)
    return bb, neck, levels


def feature_levels(
    d2: Any, key: str, available: dict[str, tuple[int, int]], whole: bool
) -> list[tuple[int, int]]:
    """(channels, stride) of the levels a head reads (``key``): all of ``available`` (``whole``) or
    its finest ones, in order; anything else is refused naming ``key``."""
    names = list(value_of(d2, key))
    keys = list(available)
    if whole and names != keys or not whole and names != keys[: len(names)] or not names:
        need = f"all of {keys}" if whole else f"the first levels of {keys}"
        raise refuse(key, names, f"kiln's heads read {need} (the features the backbone gives, in order)")
    return [available[n] for n in names]


def anchor_generator(d2: Any, strides: list[int]) -> dict:
    """``DefaultAnchorGenerator`` from ``MODEL.ANCHOR_GENERATOR`` for the levels at ``strides``."""
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


def backbone_layout(d2: Any) -> str:
    """``'fpn'`` or ``'single'`` (one ResNet output, C4/DC5) for ``MODEL.BACKBONE.NAME``."""
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
