"""Building models from config dicts: ``build_detector`` (seed-001 layout or nested cfgs) and friends."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch.nn as nn

from kiln.config.dialects.mmdet_v1_heads import translate_head, translate_model
from kiln.registry import MODELS

__all__ = ["build_backbone", "build_neck", "build_head", "build_loss", "build_detector"]


def _plain(cfg: Any) -> Any:
    """Recursively turn Config/ConfigDict mappings into plain dicts."""
    if isinstance(cfg, Mapping):
        return {k: _plain(v) for k, v in cfg.items()}
    if isinstance(cfg, list):
        return [_plain(v) for v in cfg]
    return cfg


def build_backbone(cfg: Mapping[str, Any]) -> nn.Module:
    """Build a backbone from ``dict(type='ResNet', ...)``."""
    return MODELS.build(_plain(cfg), cfg_path="model.backbone")


def build_neck(cfg: Mapping[str, Any]) -> nn.Module:
    """Build a neck from ``dict(type='FPN', ...)``."""
    return MODELS.build(_plain(cfg), cfg_path="model.neck")


def build_head(cfg: Mapping[str, Any]) -> nn.Module:
    """Build a head from ``dict(type='RetinaHead', ...)`` (MMDetection v1 head keys are translated)."""
    return MODELS.build(translate_head(_plain(cfg)), cfg_path="model.bbox_head")


def build_loss(cfg: Mapping[str, Any]) -> nn.Module:
    """Build a loss from ``dict(type='FocalLoss', ...)``."""
    return MODELS.build(_plain(cfg), cfg_path="loss")


def _merge_cfg(cfg: dict, key: str, top: Any) -> None:
    nested = cfg.get(key)
    if top is not None and nested is not None and _plain(top) != nested:
        raise ValueError(
            f"{key} is given both at the top level of the config and inside model "
            f"(model.{key}); they differ. "
            f"Keep one: the top-level {key}=... (MMDetection v1 layout) or model.{key} (v2 layout)."
        )
    if top is not None:
        cfg[key] = _plain(top)


def build_detector(cfg: Any, train_cfg: Any = None, test_cfg: Any = None) -> nn.Module:
    """Build a detector from ``cfg`` (the config's ``model`` dict).

    ``train_cfg``/``test_cfg`` may come as arguments (seed-001: top-level keys of the config file) or
    inside ``cfg``; giving different values in both places is an error. A **list** of model configs builds
    a :class:`~kiln.models.detectors.DetectorEnsemble` that merges the members' predictions. MMDetection v1
    head keys (``anchor_strides``, ``target_means``, ...) are translated first
    (:mod:`kiln.config.dialects.mmdet_v1_heads`), so seed 001's ``build_detector(cfg.model, ...)`` works.

    Example::

        >>> cfg = Config.fromfile('retinanet_r101_fpn_1x.py')
        >>> model = build_detector(cfg.model, train_cfg=cfg.train_cfg, test_cfg=cfg.test_cfg)
    """
    if isinstance(cfg, (list, tuple)):
        from .detectors.ensemble import DetectorEnsemble

        if not cfg:
            raise ValueError("build_detector got an empty list of model configs.")
        return DetectorEnsemble([build_detector(c, train_cfg, test_cfg) for c in cfg])
    if not isinstance(cfg, Mapping):
        raise TypeError(
            f"build_detector expects the model config dict (or a list of them), got {type(cfg).__name__}."
        )
    cfg = translate_model(_plain(cfg))
    _merge_cfg(cfg, "train_cfg", train_cfg)
    _merge_cfg(cfg, "test_cfg", test_cfg)
    _check_nms(cfg.get("test_cfg"), "model.test_cfg")
    _check_nms(cfg.get("train_cfg"), "model.train_cfg")
    return MODELS.build(cfg, cfg_path="model")


def _check_nms(node: Any, where: str) -> None:
    """Every ``nms=dict(...)`` of the detector's train/test settings is one kiln runs (torchvision NMS with an
    IoU threshold), checked when the model is built rather than at the first evaluation."""
    from .utils import nms_iou_threshold

    if isinstance(node, Mapping):
        for key, value in node.items():
            if key == "nms" and value is not None:
                nms_iou_threshold(value, f"{where}.nms")
            else:
                _check_nms(value, f"{where}.{key}")
    elif isinstance(node, (list, tuple)):
        for i, value in enumerate(node):
            _check_nms(value, f"{where}.{i}")
