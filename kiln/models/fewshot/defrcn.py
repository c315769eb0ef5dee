"""The DeFRCN detector: a two-stage detector with a Gradient Decoupled Layer in front of the RPN and of
the R-CNN head, optional dropout before the box classifier, and optional PCB re-scoring at test time.

Config (MMDetection-style; the Detectron2 keys ``MODEL.RPN.ENABLE_DECOUPLE`` ... translate into it, see
:mod:`kiln.config.dialects.d2_defrcn`)::

    model = dict(type='DeFRCN', backbone=..., rpn_head=..., roi_head=..., train_cfg=..., test_cfg=...,
                 gdl=dict(channels=1024, rpn_decouple=True, rpn_scale=0.0,
                          rcnn_decouple=True, rcnn_scale=0.75),
                 cls_dropout=0.8,       # None: no dropout (MODEL.ROI_HEADS.CLS_DROPOUT False)
                 pcb=dict(model_path='resnet101.pth', alpha=0.5, upper=1.0, lower=0.05,
                          support=dict(dataset_name='voc_2007_trainval_novel1_1shot_seed0'),
                          exclude_classes=[]))

The two :class:`~.gdl.AffineLayer` modules exist whether or not decoupling is on (as in DeFRCN), so
checkpoints have the same keys (``affine_rpn.*``, ``affine_rcnn.*``) either way.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from kiln.registry import MODELS

from ..detectors.base import DetInputs
from ..detectors.two_stage import TwoStageDetector
from .gdl import AffineLayer, decouple_layer
from .pcb import PrototypicalCalibrationBlock, SupportImage

__all__ = ["DeFRCN", "support_loader"]

_GDL_KEYS = {"channels", "rpn_decouple", "rpn_scale", "rcnn_decouple", "rcnn_scale"}
_PCB_KEYS = {"model_path", "model_type", "alpha", "upper", "lower", "support", "exclude_classes"}


def _check_keys(given: Mapping[str, Any], known: set[str], where: str) -> None:
    extra = sorted(set(given) - known)
    if extra:
        raise KeyError(f"{where} has unknown keys {extra}; expected some of {sorted(known)}")


def support_loader(support: Mapping[str, Any]) -> Any:
    """A callable returning the PCB support set for ``dict(dataset_name=...)`` (a catalog name) or
    ``dict(ann_file=..., img_prefix=..., classes=[...])`` (a COCO json; ``classes`` order = labels)."""
    support = dict(support)
    if "dataset_name" in support:
        name = support["dataset_name"]

        def from_catalog() -> list[SupportImage]:
            from kiln.data import DatasetCatalog
            from kiln.structures.boxes import BoxMode

            out = []
            for d in DatasetCatalog.get(name):
                anns = [a for a in d.get("annotations", []) if not a.get("iscrowd", 0)]
                boxes = np.array([BoxMode.convert(a["bbox"], BoxMode(a.get("bbox_mode", 1)), BoxMode.XYXY_ABS)
                                  for a in anns], dtype=np.float32).reshape(-1, 4)
                labels = np.array([a["category_id"] for a in anns], dtype=np.int64)
                out.append((d["file_name"], boxes, labels))
            return out

        return from_catalog
    if "ann_file" in support:
        import json
        import os

        def from_coco() -> list[SupportImage]:
            with open(support["ann_file"]) as f:
                coco = json.load(f)
            cats = sorted(coco["categories"], key=lambda c: c["id"])
            classes = list(support.get("classes") or [c["name"] for c in cats])
            label = {c["id"]: classes.index(c["name"]) for c in cats if c["name"] in classes}
            per_img: dict[Any, list[dict]] = {}
            for a in coco["annotations"]:
                if not a.get("iscrowd", 0) and a["category_id"] in label:
                    per_img.setdefault(a["image_id"], []).append(a)
            out = []
            for im in coco["images"]:
                anns = per_img.get(im["id"], [])
                boxes = np.array([[x, y, x + w, y + h] for x, y, w, h in (a["bbox"] for a in anns)],
                                 dtype=np.float32).reshape(-1, 4)
                path = os.path.join(support.get("img_prefix") or "", im["file_name"])
                out.append((path, boxes, np.array([label[a["category_id"]] for a in anns], dtype=np.int64)))
            return out

        return from_coco
    raise KeyError(f"pcb.support={support!r}: give dataset_name (a registered dataset) or ann_file + "
                   f"img_prefix (a COCO json) of the few-shot training set")


@MODELS.register_module()
class DeFRCN(TwoStageDetector):
    """Decoupled Faster R-CNN (DeFRCN, Qiao et al. 2021) for few-shot detection.

    Args:
        gdl: ``dict(channels, rpn_decouple, rpn_scale, rcnn_decouple, rcnn_scale)``: channels of the
            feature maps the heads read (res4 for C4, the FPN width otherwise); a branch with
            ``*_decouple`` True gets ``affine(decouple_layer(x, scale))`` instead of ``x``.
        cls_dropout: dropout ratio applied (in training) to the box classifier's input only, as
            DeFRCN's ``CLS_DROPOUT``/``DROPOUT_RATIO``; ``None`` for none.
        pcb: Prototypical Calibration Block settings (see :class:`~.pcb.PrototypicalCalibrationBlock`
            and :func:`support_loader`); ``None`` for none.
        other arguments: as :class:`~kiln.models.detectors.two_stage.TwoStageDetector`.
    """

    def __init__(self, *args: Any, gdl: Mapping[str, Any] | None = None, cls_dropout: float | None = None,
                 pcb: Mapping[str, Any] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if gdl is None or "channels" not in gdl:
            raise KeyError("model.gdl=dict(channels=C, ...) is required by DeFRCN: C is the channel count "
                           "of the feature maps the RPN and RoI head read (1024 for a C4 ResNet-50/101)")
        _check_keys(gdl, _GDL_KEYS, "model.gdl")
        self.rpn_decouple = bool(gdl.get("rpn_decouple", False))
        self.rpn_scale = float(gdl.get("rpn_scale", 1.0))
        self.rcnn_decouple = bool(gdl.get("rcnn_decouple", False))
        self.rcnn_scale = float(gdl.get("rcnn_scale", 1.0))
        self.affine_rpn = AffineLayer(int(gdl["channels"]), bias=True)
        self.affine_rcnn = AffineLayer(int(gdl["channels"]), bias=True)
        self.cls_dropout = None if cls_dropout is None else float(cls_dropout)
        if self.cls_dropout is not None:
            if not 0.0 <= self.cls_dropout < 1.0:
                raise ValueError(f"model.cls_dropout must be in [0, 1), got {cls_dropout}")
            fc_cls = getattr(getattr(self.roi_head, "bbox_head", None), "fc_cls", None)
            if fc_cls is None:
                raise ValueError("model.cls_dropout needs a RoI head with a box classifier bbox_head.fc_cls")
            # Dropout on the classifier's input only (the regressor reads the same features undropped), as
            # a forward pre-hook so the layer keeps its name and checkpoints keep their keys.
            fc_cls.register_forward_pre_hook(self._dropout_hook)
        self.pcb: PrototypicalCalibrationBlock | None = None
        if pcb is not None:
            _check_keys(pcb, _PCB_KEYS, "model.pcb")
            if "support" not in pcb:
                raise KeyError("model.pcb needs support=dict(dataset_name=...) or dict(ann_file=..., "
                               "img_prefix=...): the few-shot training set the prototypes come from")
            self.pcb = PrototypicalCalibrationBlock(
                str(pcb.get("model_path") or ""), support_loader(pcb["support"]),
                model_type=str(pcb.get("model_type", "resnet")), alpha=pcb.get("alpha", 0.5),
                upper=pcb.get("upper", 1.0), lower=pcb.get("lower", 0.05),
                exclude_classes=pcb.get("exclude_classes", ()))

    def _dropout_hook(self, module: torch.nn.Module, args: tuple[Any, ...]) -> tuple[Any, ...]:
        return (F.dropout(args[0], self.cls_dropout, training=module.training), *args[1:])

    def _branch(self, feats: tuple[torch.Tensor, ...], rpn: bool) -> tuple[torch.Tensor, ...]:
        on, scale, affine = ((self.rpn_decouple, self.rpn_scale, self.affine_rpn) if rpn
                             else (self.rcnn_decouple, self.rcnn_scale, self.affine_rcnn))
        return tuple(affine(decouple_layer(f, scale)) for f in feats) if on else feats

    def loss(self, inputs: DetInputs) -> dict[str, torch.Tensor]:
        """As :meth:`TwoStageDetector.loss`; the RPN and the RoI head each read their decoupled features."""
        feats = self.extract_feat(inputs.images.tensor)
        ignore = inputs.gt_bboxes_ignore or None
        proposals, losses = self.train_proposals(self._branch(feats, rpn=True), inputs)
        roi_losses = self.roi_head.forward_train(self._branch(feats, rpn=False), proposals, inputs.gt_bboxes,
                                                 inputs.gt_labels, ignore)
        for key, value in roi_losses.items():
            if key in losses:
                raise KeyError(f"loss name '{key}' is produced by both the RPN and the RoI head.")
            losses[key] = value
        return losses

    def predict(self, inputs: DetInputs) -> list[dict[str, torch.Tensor]]:
        """Proposals from the RPN branch, detections from the R-CNN branch (input-image pixels)."""
        feats = self.extract_feat(inputs.images.tensor)
        img_shapes = [m["img_shape"] for m in inputs.metas]
        proposals = self.test_proposals(self._branch(feats, rpn=True), inputs)
        dets = self.roi_head.simple_test(self._branch(feats, rpn=False), proposals, img_shapes)
        return [{"boxes": b, "scores": s, "labels": lab} for b, s, lab in dets]

    def postprocess(self, results: list[dict[str, torch.Tensor]], inputs: DetInputs
                    ) -> list[dict[str, torch.Tensor]]:
        """Original-pixel detections, then PCB re-scoring (when configured) on each image's file."""
        out = super().postprocess(results, inputs)
        if self.pcb is None:
            return out
        paths: dict[int, str] = {}
        for idx, meta in zip(inputs.sample_index, inputs.metas):
            paths.setdefault(idx, meta.get("img_path") or "")
        return [self.pcb.calibrate(paths.get(i, ""), r) for i, r in enumerate(out)]
