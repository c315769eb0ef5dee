"""Writing a torchvision ResNet state dict the way each publisher writes its files (test helper).

Independent of kiln's converters: these follow the publishers' own naming (Detectron2's ResNet module
names, Caffe2's blob names with BatchNorm folded into scale/bias as MSRA's ImageNet files store it).
"""

from __future__ import annotations

import math
import pickle
import re

import numpy as np
import torch


def randomize_bn(model: torch.nn.Module, seed: int = 0) -> None:
    """Give every BatchNorm (also torchvision's FrozenBatchNorm2d) non-trivial statistics and affine terms."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if hasattr(m, "running_var") and hasattr(m, "weight") and m.weight is not None:
            n = m.running_var.numel()
            with torch.no_grad():
                m.running_mean.copy_(torch.randn(n, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
                m.weight.copy_(torch.rand(n, generator=g) + 0.5)
                m.bias.copy_(torch.randn(n, generator=g) * 0.1)


def _tv_parts(key: str) -> tuple[str, str, str] | None:
    """('stem'|'resN.i', module ('conv1', 'bn2', 'downsample.0'...), leaf)."""
    if m := re.match(r"^(conv1|bn1)\.(\w+)$", key):
        return "stem", m.group(1), m.group(2)
    if m := re.match(r"^layer(\d)\.(\d+)\.(conv\d|bn\d|downsample\.[01])\.(\w+)$", key):
        return f"res{int(m.group(1)) + 1}.{m.group(2)}", m.group(3), m.group(4)
    return None


def as_detectron2(state: dict[str, torch.Tensor], prefix: str = "backbone.bottom_up.") -> dict:
    """Detectron2 names (``stem.conv1.norm``, ``res2.0.conv1.norm``, ``shortcut``) with numpy values."""
    out = {}
    for key, value in state.items():
        parts = _tv_parts(key)
        if parts is None or key.endswith("num_batches_tracked"):
            continue
        where, module, leaf = parts
        if where == "stem":
            name = "stem.conv1" + (".norm" if module == "bn1" else "")
        elif module.startswith("downsample"):
            name = f"{where}.shortcut" + (".norm" if module.endswith("1") else "")
        elif module.startswith("bn"):
            name = f"{where}.conv{module[2:]}.norm"
        else:
            name = f"{where}.{module}"
        out[f"{prefix}{name}.{leaf}"] = value.numpy()
    return out


def as_caffe2(state: dict[str, torch.Tensor], eps: float = 1e-5) -> dict[str, np.ndarray]:
    """Caffe2 blob names as in MSRA ``R-50.pkl``: BN folded into ``_bn_s``/``_bn_b``, ``fc1000`` kept."""
    out = {}
    branch = {"conv1": "branch2a", "conv2": "branch2b", "conv3": "branch2c", "downsample.0": "branch1"}
    for key, value in state.items():
        parts = _tv_parts(key)
        if key.startswith("fc."):
            out[f"fc1000_{key[3]}"] = value.numpy()
            continue
        if parts is None or not key.endswith("weight"):
            continue
        where, module, _ = parts
        prefix = "" if where == "stem" else where.replace(".", "_") + "_"
        if module.startswith("bn") or module == "downsample.1":
            base = key[: -len("weight")]
            scale = state[base + "weight"] / torch.sqrt(state[base + "running_var"] + eps)
            shift = state[base + "bias"] - state[base + "running_mean"] * scale
            if where == "stem":
                blob = "res_conv1_bn"
            elif module == "downsample.1":
                blob = prefix + "branch1_bn"
            else:
                blob = prefix + branch["conv" + module[2:]] + "_bn"
            out[blob + "_s"] = scale.numpy()
            out[blob + "_b"] = shift.numpy()
        else:
            blob = "conv1" if where == "stem" else prefix + branch[module]
            out[blob + "_w"] = value.numpy()
    return out


def write_pickle(obj: object, path: str, protocol: int = 2) -> None:
    """Pickle data the way Detectron2/Caffe2 tools do (protocol 2 by default, as Python-2 era files)."""
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=protocol)


def _resnet_to_detectron2(sub: str) -> str:
    """A kiln/torchvision ResNet key (``layer1.0.bn2.weight``) in Detectron2's names
    (``res2.0.conv2.norm.weight``)."""
    if m := re.match(r"^(conv1|bn1)\.(\w+)$", sub):
        return "stem.conv1" + (".norm" if m.group(1) == "bn1" else "") + "." + m.group(2)
    m = re.match(r"^layer(\d)\.(\d+)\.(conv\d|bn\d|downsample\.[01])\.(\w+)$", sub)
    stage, block, module, leaf = m.groups()
    where = f"res{int(stage) + 1}.{block}"
    if module.startswith("downsample"):
        return f"{where}.shortcut" + (".norm" if module.endswith("1") else "") + "." + leaf
    if module.startswith("bn"):
        return f"{where}.conv{module[2:]}.norm.{leaf}"
    return f"{where}.{module}.{leaf}"


def kiln_to_detectron2(state: dict[str, torch.Tensor], first_fpn_level: int,
                       anchors: dict[str, list[tuple[float, float]]] | None = None,
                       as_numpy: bool = True) -> dict:
    """A kiln detector's state dict written with Detectron2's module names and anchor order.

    ``anchors``: per head (``'bbox_head'``, ``'rpn_head'``), the model's anchor slots as (size, ratio);
    Detectron2 enumerates sizes in the outer loop, so per-anchor channels are regrouped in that order.
    Without an FPN the ResNet is Detectron2's ``backbone`` itself (C4, DC5), and a C4 model's last stage
    is ``roi_heads.res5``. ``as_numpy=False`` keeps tensors (e.g. on the meta device).
    """
    num_lateral = len({k.split(".")[2] for k in state if k.startswith("neck.lateral_convs.")})
    bottom_up = "backbone.bottom_up." if num_lateral else "backbone."
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if key.endswith(("num_batches_tracked", "loss_normalizer")):  # training state, not in the files
            continue
        if key.startswith("backbone."):
            out[bottom_up + _resnet_to_detectron2(key[len("backbone."):])] = value
        elif key.startswith("roi_head.shared_head."):
            out["roi_heads." + _resnet_to_detectron2(key[len("roi_head.shared_head."):])] = value
        elif m := re.match(r"^neck\.(lateral_convs|fpn_convs)\.(\d+)\.conv\.(\w+)$", key):
            kind, j, leaf = m.group(1), int(m.group(2)), m.group(3)
            if kind == "lateral_convs":
                out[f"backbone.fpn_lateral{first_fpn_level + j}.{leaf}"] = value
            elif j < num_lateral:
                out[f"backbone.fpn_output{first_fpn_level + j}.{leaf}"] = value
            else:
                out[f"backbone.top_block.p{6 + j - num_lateral}.{leaf}"] = value
        elif m := re.match(r"^bbox_head\.(cls|reg)_convs\.(\d+)\.conv\.(\w+)$", key):
            sub = "cls_subnet" if m.group(1) == "cls" else "bbox_subnet"
            out[f"head.{sub}.{2 * int(m.group(2))}.{m.group(3)}"] = value
        else:
            head = key.split(".")[0]
            name = {"bbox_head.retina_cls": "head.cls_score", "bbox_head.retina_reg": "head.bbox_pred",
                    "rpn_head.rpn_conv": "proposal_generator.rpn_head.conv",
                    "rpn_head.rpn_cls": "proposal_generator.rpn_head.objectness_logits",
                    "rpn_head.rpn_reg": "proposal_generator.rpn_head.anchor_deltas",
                    "roi_head.bbox_head.fc_cls": "roi_heads.box_predictor.cls_score",
                    "roi_head.bbox_head.fc_reg": "roi_heads.box_predictor.bbox_pred",
                    "roi_head.bbox_head.shared_fcs.0": "roi_heads.box_head.fc1",
                    "roi_head.bbox_head.shared_fcs.1": "roi_heads.box_head.fc2"}[key.rsplit(".", 1)[0]]
            slots = (anchors or {}).get(head)
            if slots and key.rsplit(".", 1)[0] in ("bbox_head.retina_cls", "bbox_head.retina_reg",
                                                   "rpn_head.rpn_cls", "rpn_head.rpn_reg"):
                d2_order = sorted(range(len(slots)), key=lambda j: (slots[j][0], slots[j][1]))
                value = value.reshape(len(slots), -1, *value.shape[1:])[d2_order].flatten(0, 1)
            out[f"{name}.{key.rsplit('.', 1)[1]}"] = value
    if not as_numpy:
        return out
    return {k: v.detach().numpy() for k, v in out.items()}


def model_anchor_slots(model: torch.nn.Module) -> dict[str, list[tuple[float, float]]]:
    """(size, ratio) of each anchor of a location, in the model's order, per anchor head."""
    out = {}
    for head in ("bbox_head", "rpn_head"):
        gen = getattr(getattr(model, head, None), "anchor_generator", None)
        if gen is not None:
            out[head] = [(round(math.sqrt((x2 - x1) * (y2 - y1)), 2), round((y2 - y1) / (x2 - x1), 3))
                         for x1, y1, x2, y2 in gen.base_anchors[0].tolist()]
    return out


def kiln_to_detectron1(state: dict[str, torch.Tensor], first_fpn_level: int = 2) -> dict[str, np.ndarray]:
    """A kiln Faster R-CNN FPN state dict as Detectron1 (Caffe2) blobs: BN folded, ``fpn_inner_resN_*``,
    ``conv_rpn_fpn2``, ``fc6``/``fc7`` and box predictors with the background class first."""
    backbone = {k[len("backbone."):]: v for k, v in state.items() if k.startswith("backbone.")}
    out = as_caffe2(backbone)
    last_block = {int(m.group(1)): int(m.group(2)) for k in backbone
                  if (m := re.match(r"^layer(\d)\.(\d+)\.", k))}
    for key, value in state.items():
        v = value.detach()
        if m := re.match(r"^neck\.(lateral_convs|fpn_convs)\.(\d+)\.conv\.(weight|bias)$", key):
            level = first_fpn_level + int(m.group(2))
            stem = f"res{level}_{last_block[level - 1]}_sum"
            blob = f"fpn_inner_{stem}_lateral" if m.group(1) == "lateral_convs" else f"fpn_{stem}"
            out[f"{blob}_{m.group(3)[0]}"] = v.numpy()
            continue
        leaf = key.rsplit(".", 1)[1][0]  # 'w' / 'b'
        module = key.rsplit(".", 1)[0]
        if module == "rpn_head.rpn_conv":
            out[f"conv_rpn_fpn2_{leaf}"] = v.numpy()
        elif module == "rpn_head.rpn_cls":
            out[f"rpn_cls_logits_fpn2_{leaf}"] = v.numpy()
        elif module == "rpn_head.rpn_reg":
            out[f"rpn_bbox_pred_fpn2_{leaf}"] = v.numpy()
        elif module == "roi_head.bbox_head.shared_fcs.0":
            out[f"fc6_{leaf}"] = v.numpy()
        elif module == "roi_head.bbox_head.shared_fcs.1":
            out[f"fc7_{leaf}"] = v.numpy()
        elif module == "roi_head.bbox_head.fc_cls":
            out[f"cls_score_{leaf}"] = torch.cat([v[-1:], v[:-1]]).numpy()  # background first
        elif module == "roi_head.bbox_head.fc_reg":
            out[f"bbox_pred_{leaf}"] = torch.cat([torch.zeros_like(v[:4]), v]).numpy()  # + background rows
    return out
