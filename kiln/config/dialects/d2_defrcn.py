"""DeFRCN's keys (``kiln.config.defaults.add_defrcn_config``) -> the ``DeFRCN`` detector and freezing.

* ``MODEL.RPN.ENABLE_DECOUPLE``/``BACKWARD_SCALE``, ``MODEL.ROI_HEADS.ENABLE_DECOUPLE``/``BACKWARD_SCALE``
  -> ``model.gdl`` (the Gradient Decoupled Layers; channels = what the RPN reads);
* ``MODEL.ROI_HEADS.CLS_DROPOUT``/``DROPOUT_RATIO`` -> ``model.cls_dropout``;
* ``TEST.PCB_ENABLE``/``PCB_MODELTYPE``/``PCB_MODELPATH``/``PCB_ALPHA``/``PCB_UPPER``/``PCB_LOWER`` ->
  ``model.pcb`` (support set = ``DATASETS.TRAIN[0]``; on a base+novel test set the base classes are
  left uncalibrated, as DeFRCN's ``clsid_filter``);
* ``MODEL.RPN.FREEZE`` -> ``frozen_modules`` += ``rpn_head``; ``MODEL.ROI_HEADS.FREEZE_FEAT`` freezes the
  RoI feature layers (``roi_head.shared_head``, the res5 stage, for Res5ROIHeads);
* ``MODEL.ROI_HEADS.OUTPUT_LAYER``: only ``FastRCNNOutputLayers`` (refused otherwise);
* ``MODEL.ROI_HEADS.NUM_CLASSES_NOVEL``: checked against the few-shot test set's novel classes;
* a test set registered with base/novel classes (:mod:`kiln.data.fewshot`) is evaluated with the
  ``bAP``/``nAP`` split (:mod:`kiln.evaluation.fewshot_evaluation`);
* ``MUTE_HEADER``: True accepted (DeFRCN's console banner switch; kiln prints no banner, so False is
  refused).

Any of the first three switches makes the model ``type='DeFRCN'`` (it has DeFRCN's ``affine_rpn`` and
``affine_rcnn`` layers, so DeFRCN checkpoints load).
"""

from __future__ import annotations

import functools
from typing import Any

from .d2_check import logger, refuse, value_of

__all__ = ["apply_defrcn"]


@functools.lru_cache(maxsize=1)
def _project_defaults() -> Any:
    from kiln.config.defaults import add_defrcn_config, get_default_cfg

    return add_defrcn_config(get_default_cfg())


def is_default(d2: Any, key: str) -> bool:
    """Whether ``key`` (a DeFRCN project key) holds DeFRCN's default value."""
    return value_of(d2, key) == value_of(_project_defaults(), key)


def warn_unread(d2: Any, key: str, why: str) -> None:
    """:func:`.d2_check.warn_unread` for DeFRCN's project keys (absent from Detectron2's defaults)."""
    if not is_default(d2, key):
        logger.warning("%s=%r has no effect: %s (as in DeFRCN).", key, value_of(d2, key), why)


def _fewshot_meta(name: str) -> Any:
    from kiln.data import MetadataCatalog

    return MetadataCatalog.get(name)


def _pcb(d2: Any) -> dict[str, Any]:
    t = d2.TEST
    if t.PCB_MODELTYPE != "resnet":
        raise refuse("TEST.PCB_MODELTYPE", t.PCB_MODELTYPE, "DeFRCN (and kiln) implement 'resnet'")
    if not t.PCB_MODELPATH:
        raise refuse("TEST.PCB_ENABLE", True, "TEST.PCB_MODELPATH is empty; give the local path of a "
                     "torchvision ResNet state dict (e.g. resnet101-5d3b4d8f.pth)")
    if not 0.0 <= float(t.PCB_ALPHA) <= 1.0:
        raise refuse("TEST.PCB_ALPHA", t.PCB_ALPHA, "expected a weight in [0, 1]")
    if float(t.PCB_LOWER) > float(t.PCB_UPPER):
        raise refuse("TEST.PCB_LOWER", t.PCB_LOWER, f"must not exceed TEST.PCB_UPPER ({t.PCB_UPPER})")
    if not d2.DATASETS.TRAIN:
        raise refuse("TEST.PCB_ENABLE", True, "PCB builds prototypes from DATASETS.TRAIN[0], which is empty")
    exclude: list[int] = []
    if d2.DATASETS.TEST:
        meta = _fewshot_meta(d2.DATASETS.TEST[0])
        if meta.get("fewshot_setting") == "all":
            classes = list(meta.thing_classes)
            exclude = [classes.index(c) for c in meta.base_classes]
    return dict(model_path=str(t.PCB_MODELPATH), model_type="resnet", alpha=float(t.PCB_ALPHA),
                upper=float(t.PCB_UPPER), lower=float(t.PCB_LOWER),
                support=dict(dataset_name=str(d2.DATASETS.TRAIN[0])), exclude_classes=exclude)


def _check_novel_count(d2: Any) -> None:
    key = "MODEL.ROI_HEADS.NUM_CLASSES_NOVEL"
    if is_default(d2, key) or not d2.DATASETS.TEST:
        return
    novel = _fewshot_meta(d2.DATASETS.TEST[0]).get("novel_classes")
    if novel is None:
        raise refuse(key, int(d2.MODEL.ROI_HEADS.NUM_CLASSES_NOVEL),
                     f"kiln reads it only to check a few-shot test set's novel classes, and "
                     f"'{d2.DATASETS.TEST[0]}' names none; remove the key")
    elif int(d2.MODEL.ROI_HEADS.NUM_CLASSES_NOVEL) != len(novel):
        raise refuse(key, int(d2.MODEL.ROI_HEADS.NUM_CLASSES_NOVEL),
                     f"the test set '{d2.DATASETS.TEST[0]}' has {len(novel)} novel classes {list(novel)}")


def _fewshot_evaluator(d2: Any, canonical: dict[str, Any]) -> None:
    """A few-shot test set (metadata with base/novel classes) is evaluated with the bAP/nAP split."""
    if "val_evaluator" not in canonical or not d2.DATASETS.TEST or len(d2.DATASETS.TEST) != 1:
        return
    name = d2.DATASETS.TEST[0]
    meta = _fewshot_meta(name)
    if meta.get("novel_classes") is None or meta.get("base_classes") is None:
        return
    split = dict(base_classes=list(meta.base_classes), novel_classes=list(meta.novel_classes))
    old = canonical["val_evaluator"]
    if old.get("type") == "PascalVOCDetectionEvaluator":
        new = dict(type="FewShotPascalVOCEvaluator", dataset_name=name, **split)
    elif old.get("metric") == "bbox" and "type" not in old:
        new = dict(type="FewShotCOCOEvaluator", **split)
    else:
        return
    canonical["val_evaluator"] = new
    canonical["test_evaluator"] = dict(new)


def apply_defrcn(d2: Any, canonical: dict[str, Any]) -> None:
    """Rewrite ``canonical`` (from :func:`~.detectron2.d2_to_canonical`) for DeFRCN's keys, in place."""
    _fewshot_evaluator(d2, canonical)
    if "OUTPUT_LAYER" not in d2.MODEL.ROI_HEADS:  # a node without the project keys (plain Detectron2)
        return
    rh, rpn = d2.MODEL.ROI_HEADS, d2.MODEL.RPN
    if rh.OUTPUT_LAYER != "FastRCNNOutputLayers":
        raise refuse("MODEL.ROI_HEADS.OUTPUT_LAYER", rh.OUTPUT_LAYER,
                     "kiln's box predictor is DeFRCN's FastRCNNOutputLayers (linear classifier, regressor)")
    _check_novel_count(d2)
    if not d2.MUTE_HEADER:
        raise refuse("MUTE_HEADER", False, "kiln prints no DeFRCN banner to unmute; leave it True")
    model = canonical["model"]
    two_stage = "roi_head" in model and "rpn_head" in model
    frozen = canonical.get("frozen_modules", [])
    if rpn.FREEZE:
        if "rpn_head" not in model:
            raise refuse("MODEL.RPN.FREEZE", True, "this model has no RPN")
        frozen.append("rpn_head")
    if rh.get("FREEZE_FEAT") and "shared_head" in model.get("roi_head", {}):
        # Res5ROIHeads: DeFRCN freezes roi_heads.res5, kiln's roi_head.shared_head
        frozen = [p for p in frozen if p != "roi_head.bbox_head.shared_fcs"] + ["roi_head.shared_head"]
    if frozen:
        canonical["frozen_modules"] = frozen
    gdl_on = bool(rpn.ENABLE_DECOUPLE or rh.ENABLE_DECOUPLE)
    if not rpn.ENABLE_DECOUPLE:
        warn_unread(d2, "MODEL.RPN.BACKWARD_SCALE", "read only with MODEL.RPN.ENABLE_DECOUPLE True")
    if not rh.ENABLE_DECOUPLE:
        warn_unread(d2, "MODEL.ROI_HEADS.BACKWARD_SCALE",
                    "read only with MODEL.ROI_HEADS.ENABLE_DECOUPLE True")
    if not rh.CLS_DROPOUT:
        warn_unread(d2, "MODEL.ROI_HEADS.DROPOUT_RATIO", "read only with MODEL.ROI_HEADS.CLS_DROPOUT True")
    if not d2.TEST.PCB_ENABLE:
        for key in ("MODELTYPE", "MODELPATH", "ALPHA", "UPPER", "LOWER"):
            warn_unread(d2, f"TEST.PCB_{key}", "read only with TEST.PCB_ENABLE True")
    if not (gdl_on or rh.CLS_DROPOUT or d2.TEST.PCB_ENABLE):
        return
    if not two_stage:
        switches = [("MODEL.RPN.ENABLE_DECOUPLE", rpn.ENABLE_DECOUPLE),
                    ("MODEL.ROI_HEADS.ENABLE_DECOUPLE", rh.ENABLE_DECOUPLE),
                    ("MODEL.ROI_HEADS.CLS_DROPOUT", rh.CLS_DROPOUT), ("TEST.PCB_ENABLE", d2.TEST.PCB_ENABLE)]
        key = next(k for k, on in switches if on)
        raise refuse(key, True, f"DeFRCN's pieces need a two-stage R-CNN (GeneralizedRCNN with an RPN); this "
                                f"config builds {model.get('type')}")
    if model.get("type") != "FasterRCNN":
        raise refuse("MODEL.ROI_HEADS.NAME", rh.NAME, "DeFRCN's layers go on a Faster R-CNN (Res5ROIHeads or "
                                                      "StandardROIHeads), not a cascade")
    if rh.CLS_DROPOUT and not 0.0 <= float(rh.DROPOUT_RATIO) < 1.0:
        raise refuse("MODEL.ROI_HEADS.DROPOUT_RATIO", rh.DROPOUT_RATIO, "expected a ratio in [0, 1)")
    model["type"] = "DeFRCN"
    model["gdl"] = dict(channels=int(model["rpn_head"]["in_channels"]),
                        rpn_decouple=bool(rpn.ENABLE_DECOUPLE), rpn_scale=float(rpn.BACKWARD_SCALE),
                        rcnn_decouple=bool(rh.ENABLE_DECOUPLE), rcnn_scale=float(rh.BACKWARD_SCALE))
    model["cls_dropout"] = float(rh.DROPOUT_RATIO) if rh.CLS_DROPOUT else None
    model["pcb"] = _pcb(d2) if d2.TEST.PCB_ENABLE else None
