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

from typing import Any

from .d2_backbone import backbone_layout, fpn_dicts, resnet_dict
from .d2_check import refuse, warn_unread
from .d2_dense import DENSE_META_ARCHITECTURES, dense_dicts
from .d2_heads import retina_dicts, roi_head_dicts, rpn_dicts

__all__ = ["build_model_dict", "unread_subtrees"]


def unread_subtrees(d2: Any) -> list[str]:
    """Schema nodes Detectron2 does not read for this meta-architecture (so neither does kiln)."""
    arch = d2.MODEL.META_ARCHITECTURE
    if arch == "RetinaNet" or arch in DENSE_META_ARCHITECTURES:
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
    layout = backbone_layout(d2)
    retina = arch == "RetinaNet" or arch in DENSE_META_ARCHITECTURES
    if layout == "fpn":
        backbone, neck, levels = fpn_dicts(
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
        backbone, levels = resnet_dict(d2, list(d2.MODEL.RESNETS.OUT_FEATURES), "MODEL.RESNETS.OUT_FEATURES")
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
    if arch in DENSE_META_ARCHITECTURES:
        head, train, test = dense_dicts(d2, levels, neck)
        model.update(type=arch, bbox_head=head, train_cfg=train, test_cfg=test)
        return model
    if retina:
        head, train, test = retina_dicts(d2, levels)
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
        rpn_head, rpn_train, rpn_proposal, rpn_test = rpn_dicts(d2, levels)
        model["rpn_head"] = rpn_head
    if arch == "ProposalNetwork":
        model.update(type="RPN", train_cfg=dict(rpn=rpn_train), test_cfg=dict(rpn=rpn_test))
        return model
    roi_head, rcnn_train, rcnn_test = roi_head_dicts(d2, levels, c4)
    model["roi_head"] = roi_head
    if d2.MODEL.LOAD_PROPOSALS:
        model.update(type="FastRCNN", train_cfg=dict(rcnn=rcnn_train), test_cfg=dict(rcnn=rcnn_test))
    else:
        kind = "MaskRCNN" if "mask_head" in roi_head else "FasterRCNN"
        model.update(
            type="CascadeRCNN" if roi_head["type"] == "CascadeRoIHead" else kind,
            train_cfg=dict(rpn=rpn_train, rpn_proposal=rpn_proposal, rcnn=rcnn_train),
            test_cfg=dict(rpn=rpn_test, rcnn=rcnn_test),
        )
    return model
