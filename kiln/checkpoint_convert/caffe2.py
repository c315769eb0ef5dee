"""Caffe2 / Detectron1 / MSRA blob names → Detectron2 names.

The facts follow Detectron2's ``c2_model_loading`` heuristics: ``_`` separates name parts, ``_w``/``_b``
are weight/bias, ``bn_s``/``bn_b`` the (frozen) affine norm, ``branch1`` the shortcut, ``branch2a/b/c`` the
three block convs, ``fpn_inner_resN_*_lateral`` / ``fpn_resN_*_sum`` the FPN laterals / outputs, ``fc6``/
``fc7`` the box head, and Detectron1 box predictors put the background class first (moved last here, and
its four regression rows dropped, so the result is in Detectron2's class layout).

MSRA ImageNet files store frozen BatchNorm as scale and bias only; ``running_mean=0`` and
``running_var=1-eps`` are added so that a BatchNorm with ``eps=1e-5`` computes exactly ``x * s + b``.
"""

from __future__ import annotations

import re

import torch

__all__ = ["caffe2_to_detectron2"]

_BN_EPS = 1e-5


def _rename(blob: str) -> str:
    k = {"pred_b": "linear_b", "pred_w": "linear_w"}.get(blob, blob)
    k = k.replace("_", ".")
    k = re.sub(r"\.b$", ".bias", k)
    k = re.sub(r"\.w$", ".weight", k)
    for src, dst in ((r"(bn|gn)\.s$", "norm.weight"), (r"(bn|gn)\.bias$", "norm.bias"),
                     (r"bn\.rm$", "norm.running_mean"), (r"bn\.riv$", "norm.running_var"),
                     (r"bn\.running\.mean$", "norm.running_mean"), (r"bn\.running\.var$", "norm.running_var"),
                     (r"bn\.gamma$", "norm.weight"), (r"bn\.beta$", "norm.bias")):
        k = re.sub(src, dst, k)
    k = re.sub(r"^res\.conv1\.norm\.", "conv1.norm.", k)
    k = re.sub(r"^conv1\.", "stem.conv1.", k)
    for src, dst in ((".branch1.", ".shortcut."), (".branch2a.", ".conv1."), (".branch2b.", ".conv2."),
                     (".branch2c.", ".conv3.")):
        k = k.replace(src, dst)
    # RPN (the FPN variant names its shared conv after level 2)
    for src, dst in (("conv.rpn.fpn2", "proposal_generator.rpn_head.conv"),
                     ("conv.rpn", "proposal_generator.rpn_head.conv"),
                     ("rpn.bbox.pred.fpn2", "proposal_generator.rpn_head.anchor_deltas"),
                     ("rpn.cls.logits.fpn2", "proposal_generator.rpn_head.objectness_logits"),
                     ("rpn.bbox.pred", "proposal_generator.rpn_head.anchor_deltas"),
                     ("rpn.cls.logits", "proposal_generator.rpn_head.objectness_logits")):
        k = k.replace(src, dst)
    k = re.sub(r"^bbox\.pred", "roi_heads.box_predictor.bbox_pred", k)
    k = re.sub(r"^cls\.score", "roi_heads.box_predictor.cls_score", k)
    k = re.sub(r"^fc6\.", "roi_heads.box_head.fc1.", k)
    k = re.sub(r"^fc7\.", "roi_heads.box_head.fc2.", k)
    k = re.sub(r"^head\.conv", "roi_heads.box_head.conv", k)
    parts = k.split(".")
    norm = ".norm" if "norm" in parts else ""
    if k.startswith("fpn.inner."):  # fpn.inner.res2.2.sum.lateral.weight
        k = f"backbone.fpn_lateral{int(parts[2][3:])}{norm}.{parts[-1]}"
    elif k.startswith("fpn.res"):  # fpn.res2.2.sum.weight
        k = f"backbone.fpn_output{int(parts[1][3:])}{norm}.{parts[-1]}"
    return k


def caffe2_to_detectron2(state: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Rename Caffe2 blobs to Detectron2 names; return ``(state, notes)`` (notes say what was changed)."""
    out: dict[str, torch.Tensor] = {}
    notes: list[str] = []
    for blob, value in state.items():
        if blob.endswith("_momentum") or blob == "lr" or blob.startswith("__"):
            continue  # solver state stored next to the weights, not weights
        name = _rename(blob)
        if name in out:
            raise ValueError(f"Caffe2 blobs map to the same name {name!r} (second: {blob!r}); "
                             "this is not a Detectron1/MSRA weight file kiln knows.")
        if name.startswith("roi_heads.box_predictor.cls_score."):
            value = torch.cat([value[1:], value[:1]])
            notes.append(f"{blob}: background class moved from index 0 to last (Detectron2 layout)")
        elif name.startswith("roi_heads.box_predictor.bbox_pred.") and value.shape[0] % 4 == 0:
            value = value[4:]
            notes.append(f"{blob}: the background class's 4 regression rows dropped")
        out[name] = value
    # Frozen BN with scale and bias only: add the identity statistics.
    for name in [n for n in out if n.endswith(".norm.weight")]:
        base = name[: -len("weight")]
        if base + "running_mean" not in out and base + "running_var" not in out:
            out[base + "running_mean"] = torch.zeros_like(out[name])
            out[base + "running_var"] = torch.full_like(out[name], 1.0 - _BN_EPS)
    return out, notes
