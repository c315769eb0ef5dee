"""kiln (MMDetection) names → Detectron2 names, for ``kiln convert SRC DST --to detectron2``.

The inverse of :func:`~.detectron2.detectron2_to_kiln`, rule by rule (see the table there). Every
export is checked by converting it back: a state dict that does not come back identical (a module
Detectron2 has no name for) is refused naming the keys, so a written file is never silently wrong.
"""

from __future__ import annotations

import re
from typing import Any

import torch

from .anchors import grid_permutation, publisher_permutation
from .detectron2 import detectron2_to_kiln

__all__ = ["kiln_to_detectron2", "ExportError"]


class ExportError(ValueError):
    """The checkpoint has weights Detectron2's layout has no name for."""


_LAYER = re.compile(r"^layer([1-4])\.(\d+)\.(.+)$")


def _resnet_to_d2(key: str) -> str | None:
    """``conv1``/``bn1``/``layerL.i...`` (kiln's ResNet) → Detectron2's ``stem``/``resN`` names."""
    if key.startswith("conv1."):
        return "stem.conv1." + key[len("conv1."):]
    if m := re.match(r"^(bn1|gn1)\.(.+)$", key):
        return "stem.conv1.norm." + m.group(2)
    m = _LAYER.match(key)
    if not m:
        return None
    layer, block, rest = m.groups()
    head = f"res{int(layer) + 1}.{block}"
    if m2 := re.match(r"^downsample\.0\.(.+)$", rest):
        return f"{head}.shortcut.{m2.group(1)}"
    if m2 := re.match(r"^downsample\.1\.(.+)$", rest):
        return f"{head}.shortcut.norm.{m2.group(1)}"
    if m2 := re.match(r"^(conv\d)\.(.+)$", rest):
        return f"{head}.{m2.group(1)}.{m2.group(2)}"
    if m2 := re.match(r"^(?:bn|gn)(\d)\.(.+)$", rest):
        return f"{head}.conv{m2.group(1)}.norm.{m2.group(2)}"
    return None


def _conv_module(rest: str) -> str:
    """kiln ConvModule ``conv.X`` / ``bn.X`` / ``gn.X`` → Detectron2's ``X`` / ``norm.X``."""
    if rest.startswith("conv."):
        return rest[len("conv."):]
    if m := re.match(r"^(?:bn|gn)\.(.+)$", rest):
        return "norm." + m.group(1)
    return rest


def _inverse(perm: list[int] | None) -> list[int] | None:
    if perm is None:
        return None
    inv = [0] * len(perm)
    for i, p in enumerate(perm):
        inv[p] = i
    return inv


def _anchor_inverse(num: int, slots: list[tuple[float, float]] | None) -> list[int] | None:
    if slots and len(slots) == num:
        return _inverse(publisher_permutation(slots, "size_major"))
    if num == 9:
        return _inverse(grid_permutation(3, 3, "size_major"))
    return None


def _permute(value: torch.Tensor, num: int, perm: list[int] | None) -> torch.Tensor:
    if perm is None:
        return value
    per = value.shape[0] // num
    return value.reshape(num, per, *value.shape[1:])[perm].flatten(0, 1)


def kiln_to_detectron2(
    state: dict[str, torch.Tensor], anchor_slots: dict[str, list[tuple[float, float]]] | None = None
) -> dict[str, torch.Tensor]:
    """Rename a kiln detector's (or backbone's) state dict into Detectron2's names.

    ``anchor_slots`` (:func:`~.anchors.anchor_slots` of the model the weights belong to) says the model's
    anchor order; per-anchor outputs are written in Detectron2's size-major order.

    Raises:
        ExportError: naming the keys with no Detectron2 name, or that do not convert back identically.
    """
    anchor_slots = anchor_slots or {}
    has_neck = any(k.startswith("neck.") for k in state)
    prefix = "backbone.bottom_up." if has_neck else "backbone."
    lateral = re.compile(r"^neck\.lateral_convs\.(\d+)\.")
    laterals = sorted({int(m.group(1)) for k in state if (m := lateral.match(k))})
    first = 2 if len(laterals) >= 4 else 3  # Detectron2's FPNs: res2-res5 (R-CNN), res3-res5 (RetinaNet)
    perms = {}
    for head, key in (("bbox_head", "bbox_head.retina_reg.weight"), ("rpn_head", "rpn_head.rpn_reg.weight")):
        if key in state:
            num = state[key].shape[0] // 4
            perms[head] = (num, _anchor_inverse(num, anchor_slots.get(head)))
    out: dict[str, torch.Tensor] = {}
    unknown: list[str] = []
    for k, value in state.items():
        new: str | None = None
        if k.endswith("num_batches_tracked") or k.endswith("loss_normalizer"):
            continue  # training counters, not weights Detectron2 stores
        if k.startswith("backbone."):
            sub = _resnet_to_d2(k[len("backbone."):])
            new = prefix + sub if sub else None
        elif not any(k.startswith(p) for p in ("neck.", "rpn_head.", "roi_head.", "bbox_head.")):
            sub = _resnet_to_d2(k)  # a bare backbone (ImageNet weights)
            new = sub
        elif m := re.match(r"^neck\.lateral_convs\.(\d+)\.(.+)$", k):
            new = f"backbone.fpn_lateral{first + int(m.group(1))}.{_conv_module(m.group(2))}"
        elif m := re.match(r"^neck\.fpn_convs\.(\d+)\.(.+)$", k):
            j = int(m.group(1))
            if j < len(laterals):
                new = f"backbone.fpn_output{first + j}.{_conv_module(m.group(2))}"
            elif m.group(2).startswith("conv."):
                new = f"backbone.top_block.p{6 + j - len(laterals)}.{m.group(2)[len('conv.'):]}"
        elif m := re.match(r"^rpn_head\.(rpn_conv|rpn_cls|rpn_reg)\.(.+)$", k):
            name = {"rpn_conv": "conv", "rpn_cls": "objectness_logits",
                    "rpn_reg": "anchor_deltas"}[m.group(1)]
            new = f"proposal_generator.rpn_head.{name}.{m.group(2)}"
            if m.group(1) != "rpn_conv" and "rpn_head" in perms:
                value = _permute(value, *perms["rpn_head"])
        elif k.startswith("roi_head.shared_head."):
            sub = _resnet_to_d2(k[len("roi_head.shared_head."):])
            new = "roi_heads." + sub if sub and sub.startswith("res5.") else None
        elif m := re.match(r"^roi_head\.bbox_head\.(\d+\.)?shared_fcs\.(\d+)\.(.+)$", k):
            new = f"roi_heads.box_head.{m.group(1) or ''}fc{int(m.group(2)) + 1}.{m.group(3)}"
        elif m := re.match(r"^roi_head\.bbox_head\.(\d+\.)?shared_convs\.(\d+)\.(.+)$", k):
            new = f"roi_heads.box_head.{m.group(1) or ''}conv{int(m.group(2)) + 1}.{_conv_module(m.group(3))}"
        elif m := re.match(r"^roi_head\.bbox_head\.(\d+\.)?(fc_cls|fc_reg)\.(.+)$", k):
            name = "cls_score" if m.group(2) == "fc_cls" else "bbox_pred"
            new = f"roi_heads.box_predictor.{m.group(1) or ''}{name}.{m.group(3)}"
        elif m := re.match(r"^bbox_head\.(cls|reg)_convs\.(\d+)\.conv\.(.+)$", k):
            kind = "cls" if m.group(1) == "cls" else "bbox"
            new = f"head.{kind}_subnet.{2 * int(m.group(2))}.{m.group(3)}"
        elif m := re.match(r"^bbox_head\.(retina_cls|retina_reg)\.(.+)$", k):
            new = f"head.{'cls_score' if m.group(1) == 'retina_cls' else 'bbox_pred'}.{m.group(2)}"
            if "bbox_head" in perms:
                value = _permute(value, *perms["bbox_head"])
        if new is None:
            unknown.append(k)
        else:
            out[new] = value
    if unknown:
        raise ExportError(f"{len(unknown)} weight(s) have no Detectron2 name (Detectron2 has no such module "
                          f"in its detectors): {', '.join(unknown[:6])}{' ...' if len(unknown) > 6 else ''}")
    _check_round_trip(state, out, anchor_slots)
    return out


def _check_round_trip(state: dict[str, Any], out: dict[str, Any], anchor_slots: dict) -> None:
    back, _ = detectron2_to_kiln(dict(out), anchor_slots)
    kept = {k: v for k, v in state.items() if not k.endswith(("num_batches_tracked", "loss_normalizer"))}
    gn = {k.replace(".bn.", ".gn."): k for k in kept}  # (the forward rules spell a conv module's norm 'bn')
    differ = []
    for k, v in back.items():
        src = k if k in kept else gn.get(k.replace(".bn.", ".gn."), k)
        if src not in kept or not torch.equal(kept[src], v):
            differ.append(k)
    if differ or len(back) != len(kept):
        raise ExportError(f"the Detectron2 names do not convert back to the same weights ({len(differ)} "
                          f"differ: {', '.join(differ[:5])}); this layout cannot be exported faithfully")
