"""Helpers shared by heads and detectors: test_cfg parsing, NMS merging, EventStorage stats."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torchvision.ops import batched_nms

from kiln.utils.config_access import cfg_get

__all__ = ["nms_iou_threshold", "merge_detections", "put_scalars", "cfg_get", "refuse_init_cfg", "build_neck"]


def nms_iou_threshold(nms_cfg: Any, where: str = "test_cfg.nms") -> float:
    """IoU threshold of an ``nms=dict(type='nms', iou_thr=...)`` (v1) or ``iou_threshold=`` (v2)."""
    if nms_cfg is None:
        return 0.5
    if isinstance(nms_cfg, (int, float)):
        return float(nms_cfg)
    nms_type = cfg_get(nms_cfg, "type", "nms")
    if nms_type not in ("nms", "batched_nms"):
        raise ValueError(
            f"{where}: type={nms_type!r} is not supported; kiln uses torchvision nms, "
            "so write nms=dict(type='nms', iou_threshold=0.5)."
        )
    for key in ("iou_threshold", "iou_thr"):
        value = cfg_get(nms_cfg, key)
        if value is not None:
            return float(value)
    raise KeyError(
        f"{where}={dict(nms_cfg)!r} has no IoU threshold; add iou_threshold=0.5 (or v1 iou_thr=0.5)."
    )


def merge_detections(
    dets: Sequence[Mapping[str, torch.Tensor]], iou_threshold: float, max_per_img: int | None
) -> dict[str, torch.Tensor]:
    """Merge several detection sets of the same image (TTA, ensembles) by per-class NMS."""
    boxes = torch.cat([d["boxes"] for d in dets])
    scores = torch.cat([d["scores"] for d in dets])
    labels = torch.cat([d["labels"] for d in dets])
    keep = batched_nms(boxes.float(), scores.float(), labels, iou_threshold)
    if max_per_img is not None and max_per_img > 0:
        keep = keep[:max_per_img]
    merged = {"boxes": boxes[keep], "scores": scores[keep], "labels": labels[keep]}
    if any("masks" in d for d in dets):  # instance masks (original-image sized) follow their boxes
        if not all("masks" in d for d in dets):
            raise ValueError("merge_detections: some detection sets have masks and others not.")
        merged["masks"] = torch.cat([d["masks"] for d in dets])[keep]
    return merged


def put_scalars(**scalars: float | torch.Tensor) -> None:
    """Record scalars in the active EventStorage (engine's ``get_event_storage``); no-op when none is open.

    Models call this in training so stats such as the number of positive anchors reach the writers
    without the model knowing about the runner.
    """
    try:
        from kiln.engine.events import get_event_storage, has_event_storage
    except ImportError:  # models used without the engine package
        return
    if not has_event_storage():  # a bare forward outside training (notebook, test)
        return
    get_event_storage().put_scalars(**scalars)


def refuse_init_cfg(init_cfg: Any, owner: str) -> None:
    """Refuse a module-level ``init_cfg`` kiln does not apply.

    kiln's heads and necks initialise their weights as MMDetection's defaults for those classes do (normal
    std 0.01 convolutions, prior-probability classification bias, Xavier FPN convolutions...); an
    ``init_cfg`` asking for something else would otherwise be ignored.
    """
    if init_cfg is not None:
        raise ValueError(
            f"{owner}(init_cfg={init_cfg!r}): kiln initialises {owner} as MMDetection's default init_cfg for "
            f"it does, and does not implement other initialisations; remove init_cfg (pretrained weights: "
            f"backbone init_cfg=dict(type='Pretrained', ...) or load_from=...).")


def build_neck(neck: Mapping[str, Any] | None, backbone: torch.nn.Module) -> torch.nn.Module | None:
    """Build ``model.neck`` and check that its ``in_channels`` are what ``backbone`` outputs.

    Backbone and neck widths depend on each other (``backbone.depth`` 18/34 vs 50+, ``base_channels``,
    ``out_indices``); a mismatch would otherwise surface as a raw convolution shape error at the first
    forward pass, naming neither key.
    """
    from kiln.registry import MODELS

    if neck is None:
        return None
    module = MODELS.build(neck, cfg_path="model.neck")
    expected = getattr(module, "in_channels", None)
    shape = getattr(backbone, "output_shape", None)
    if not isinstance(expected, (list, tuple)) or not callable(shape):
        return module
    produced = [spec.channels for spec in shape().values()]  # finest first
    if getattr(module, "in_channels_order", "finest_first") == "coarsest_first":  # e.g. YOLOV3Neck
        produced = produced[::-1]
    if list(expected) != produced:
        what = type(backbone).__name__
        depth = getattr(backbone, "depth", None)
        if depth is not None:
            what += f", depth={depth}"
        raise ValueError(
            f"model.neck.in_channels={list(expected)} does not match what model.backbone ({what}) "
            f"outputs: {produced} channels. These keys depend on each other: changing backbone.depth "
            f"(18/34 use basic blocks, 50+ bottlenecks 4x wider), base_channels or out_indices changes the "
            f"backbone's outputs, so set the neck to match, e.g. --cfg-options model.neck.in_channels="
            f"[{','.join(map(str, produced))}].")
    return module
