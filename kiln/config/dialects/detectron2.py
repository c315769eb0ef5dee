"""Detectron2 yaml configs (a merged ``CfgNode``) -> the canonical run schema.

Loading (framework defaults < project defaults < the yaml's ``_BASE_`` chain < ``--opts``) happens in
:mod:`kiln.cli.d2_config`; this module maps the frozen result onto kiln's components. Every key of the
schema (:func:`kiln.config.get_cfg`) is either mapped or, when set to a value kiln cannot honour,
refused with one message naming the key and value (a :class:`~.d2_check.D2KeyError`). The parts:

* :mod:`.d2_check` - refusals; configs needing mask/keypoint/segmentation heads stop up front.
* :mod:`.d2_model` - ``MODEL.*``: ResNet/ResNeXt (C4, DC5, FPN; :mod:`.d2_backbone`), RPN, ROI heads
  (standard, Res5, cascade), RetinaNet (:mod:`.d2_heads`), RPN-only and Fast R-CNN from precomputed
  proposals.
* :mod:`.d2_data` - ``INPUT.*``, ``DATASETS.*``, ``DATALOADER.*``, ``TEST.AUG.*``.
* :mod:`.d2_solver` - ``SOLVER.*``.

Keys read here: ``MODEL.WEIGHTS`` (ImageNet URLs -> ``model.pretrained``, a file -> ``load_from``),
``MODEL.DEVICE`` -> ``device``, ``TEST.EVAL_PERIOD``/``DETECTIONS_PER_IMAGE``, ``TEST.EXPECTED_RESULTS``,
``TEST.PRECISE_BN``, ``OUTPUT_DIR`` -> ``work_dir``, ``SEED``, ``CUDNN_BENCHMARK``, ``FLOAT32_PRECISION``,
``VIS_PERIOD`` -> ``ProposalVisualizationHook``, and DeFRCN's ``MODEL.BACKBONE.FREEZE``,
``MODEL.PROPOSAL_GENERATOR.FREEZE``, ``MODEL.ROI_HEADS.FREEZE_FEAT`` -> ``frozen_modules``. The full
table is docs/from_detectron2.md. Resolving dataset names needs the dataset catalog, imported when a
translation runs.
"""

from __future__ import annotations

import logging
from typing import Any

from .canonical import FREEZE_GROUPS
from .d2_check import (
    D2KeyError,
    check_supported_heads,
    is_default,
    refuse,
    require_default,
    value_of,
    warn_unread,
)
from .d2_data import catalog_dataset, evaluator_for, loader_settings, pipelines, tta_settings
from .d2_defrcn import apply_defrcn
from .d2_model import build_model_dict, unread_subtrees
from .d2_solver import scaled_solver, solver_settings
from .mmcv import mmcv_to_canonical

__all__ = ["d2_to_canonical", "D2KeyError"]

logger = logging.getLogger("kiln.config")

_IMAGENET_PREFIXES = ("detectron2://ImageNetPretrained/", "catalog://ImageNetPretrained/")


def _weights(d2: Any, model: dict) -> str | None:
    """Set ``model['pretrained']`` (ImageNet backbones); return ``load_from`` (any other checkpoint)."""
    weights = d2.MODEL.WEIGHTS or ""
    if not weights:
        model["pretrained"] = None
        return None
    if weights.startswith(_IMAGENET_PREFIXES) or weights.startswith("torchvision://"):
        # ImageNet weights initialise the backbone (Detectron2 loads them into the whole model, where only
        # the backbone's names match). detectron2://ImageNetPretrained/MSRA/R-50.pkl and friends download
        # into kiln's cache and are converted from Caffe2 names (kiln.checkpoint_convert); they are the
        # caffe-style weights Detectron2's defaults (BGR, PIXEL_STD 1, STRIDE_IN_1X1) are made for.
        model["pretrained"] = weights
        return None
    model["pretrained"] = None
    return weights


def _warn_unread(d2: Any) -> None:
    from kiln.config.defaults import get_default_cfg

    defaults = get_default_cfg()
    changed = []
    for node in unread_subtrees(d2):
        for key, value in value_of(d2, node).items():
            if f"{node}.{key}" in ("MODEL.PROPOSAL_GENERATOR.FREEZE",):
                continue
            full = f"{node}.{key}"
            try:
                if not is_default(d2, full):
                    changed.append(full)
            except KeyError:  # project keys without a framework default
                if value != value_of(defaults, node).get(key, value):
                    changed.append(full)
    if changed:
        logger.warning(
            "%s does not read %s (set in this config); as in Detectron2 they have no effect.",
            d2.MODEL.META_ARCHITECTURE if not d2.MODEL.LOAD_PROPOSALS else "Fast R-CNN (LOAD_PROPOSALS)",
            ", ".join(changed),
        )


def _misc_checks(d2: Any) -> None:
    if d2.TEST.EXPECTED_RESULTS:
        raise refuse(
            "TEST.EXPECTED_RESULTS",
            list(d2.TEST.EXPECTED_RESULTS),
            "kiln does not check results against expected values after evaluation; remove the key",
        )
    if d2.TEST.PRECISE_BN.ENABLED:
        raise refuse(
            "TEST.PRECISE_BN.ENABLED",
            True,
            "kiln has no PreciseBN hook (recomputing BN statistics before evaluation)",
        )
    require_default(d2, "TEST.PRECISE_BN.NUM_ITER", "only read with TEST.PRECISE_BN.ENABLED True")
    if d2.FLOAT32_PRECISION:
        raise refuse(
            "FLOAT32_PRECISION",
            d2.FLOAT32_PRECISION,
            "kiln does not set torch's float32 matmul precision from the config; leave it ''",
        )
    if not d2.MODEL.LOAD_PROPOSALS:
        for key in (
            "PROPOSAL_FILES_TRAIN",
            "PROPOSAL_FILES_TEST",
            "PRECOMPUTED_PROPOSAL_TOPK_TRAIN",
            "PRECOMPUTED_PROPOSAL_TOPK_TEST",
        ):
            warn_unread(d2, f"DATASETS.{key}", "only read with MODEL.LOAD_PROPOSALS True")
    if int(d2.VIS_PERIOD) < 0:
        raise refuse("VIS_PERIOD", int(d2.VIS_PERIOD), "expected 0 (off) or a positive period")


def d2_to_canonical(d2: Any, num_gpus: int = 1) -> dict[str, Any]:
    """Map a merged Detectron2-style ``CfgNode`` onto the canonical run schema (a plain dict).

    The solver, data and hook settings are first written the MMCV way and translated by
    :func:`~.mmcv.mmcv_to_canonical`; the rest (device, cuDNN, SyncBN, seed, samplers, TTA, hooks)
    are canonical keys directly. Raises :class:`~.d2_check.D2KeyError` (a ``ValueError``) naming the
    key for a value kiln cannot honour.
    """
    check_supported_heads(d2)
    _misc_checks(d2)
    model = build_model_dict(d2)
    _warn_unread(d2)
    load_from = _weights(d2, model)
    v = scaled_solver(d2, num_gpus)
    proposals = bool(d2.MODEL.LOAD_PROPOSALS)
    train_pipeline, test_pipeline = pipelines(d2, proposals)
    data: dict[str, Any] = dict(
        samples_per_gpu=v["IMS_PER_BATCH"] // num_gpus, workers_per_gpu=int(d2.DATALOADER.NUM_WORKERS)
    )
    data["train"] = catalog_dataset(
        d2, "DATASETS.TRAIN", train_pipeline, False, "DATASETS.PROPOSAL_FILES_TRAIN" if proposals else None
    )
    if d2.DATASETS.TEST:
        test = catalog_dataset(
            d2, "DATASETS.TEST", test_pipeline, True, "DATASETS.PROPOSAL_FILES_TEST" if proposals else None
        )
        data["val"] = test
        data["test"] = dict(test)
    out: dict[str, Any] = dict(
        model=model,
        data=data,
        **solver_settings(d2, v),
        log_config=dict(interval=20, hooks=[dict(type="TextLoggerHook"), dict(type="TensorboardLoggerHook")]),
        work_dir=d2.OUTPUT_DIR,
        load_from=load_from,
        workflow=[("train", 1)],
    )
    if "test" in data:
        out["evaluation"] = dict(interval=v["EVAL_PERIOD"] or v["MAX_ITER"], by_epoch=False, metric="bbox")
    elif int(d2.TEST.EVAL_PERIOD):
        warn_unread(d2, "TEST.EVAL_PERIOD", "DATASETS.TEST is empty, there is nothing to evaluate")
    if d2.SEED >= 0:
        out["seed"] = int(d2.SEED)
    if d2.CUDNN_BENCHMARK:
        out["cudnn_benchmark"] = True
    frozen = []
    if d2.MODEL.BACKBONE.get("FREEZE"):
        frozen += FREEZE_GROUPS["backbone"]
    if d2.MODEL.PROPOSAL_GENERATOR.get("FREEZE"):
        frozen += FREEZE_GROUPS["rpn"]
    if d2.MODEL.ROI_HEADS.get("FREEZE_FEAT"):
        frozen += FREEZE_GROUPS["roi_feat"]
    canonical = mmcv_to_canonical(out)
    if "test" in data:
        canonical["val_evaluator"] = evaluator_for(d2)
        canonical["test_evaluator"] = dict(canonical["val_evaluator"])
    loader_settings(d2, canonical)
    # Detectron2's output names: model_0004999.pth ... model_final.pth, metrics.json
    hooks = canonical.setdefault("default_hooks", {})
    hooks["checkpoint"] = dict(hooks.get("checkpoint") or dict(type="CheckpointHook"),
                               filename_tmpl="model_{:07d}.pth", final_filename="model_final.pth")
    hooks["logger"] = dict(hooks.get("logger") or dict(type="LoggerHook"), json_file="metrics.json")
    canonical.update(tta_settings(d2, test_pipeline))
    if int(d2.VIS_PERIOD) > 0:
        canonical.setdefault("custom_hooks", []).append(
            dict(type="ProposalVisualizationHook", interval=int(d2.VIS_PERIOD))
        )
    if frozen:
        canonical["frozen_modules"] = frozen
    canonical["device"] = str(d2.MODEL.DEVICE)
    apply_defrcn(d2, canonical)  # DeFRCN's keys: GDL, CLS_DROPOUT, PCB, RPN.FREEZE (d2_defrcn)
    if (
        d2.MODEL.RESNETS.NORM == "SyncBN"
        or d2.MODEL.FPN.NORM == "SyncBN"
        or d2.MODEL.ROI_BOX_HEAD.NORM == "SyncBN"
    ):
        canonical["sync_bn"] = "torch"
    return canonical
