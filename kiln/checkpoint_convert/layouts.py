"""Which publisher wrote a state dict, told from its key names (never from the file name).

A checkpoint's keys say where it came from: Caffe2/Detectron1 blobs have no dots (``res2_0_branch2a_w``),
Detectron2 names stages ``res2..res5`` under ``backbone.bottom_up``, torchvision detectors keep the backbone
under ``backbone.body`` and the heads under ``head.*``/``rpn.head``/``roi_heads.box_head.fc6``, and
kiln/MMDetection use ``backbone.layerN`` + ``neck``/``bbox_head``/``rpn_head``/``roi_head``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

__all__ = ["LAYOUTS", "detect_layout"]

#: Every layout kiln converts from, with what it looks like.
LAYOUTS: dict[str, str] = {
    "kiln": "kiln / MMDetection names (backbone.layerN, neck, bbox_head, rpn_head, roi_head)",
    "torchvision_classification": "torchvision ImageNet backbone (conv1, layerN, fc)",
    "torchvision_detection": "torchvision detector (backbone.body, backbone.fpn, head / rpn / roi_heads)",
    "detectron2": "Detectron2 (stem, res2..res5, fpn_lateral, proposal_generator, roi_heads)",
    "caffe2": "Caffe2 / Detectron1 / MSRA blob names (res2_0_branch2a_w, res_conv1_bn_s, fpn_inner_...)",
}

_C2_BLOB = re.compile(r"^(res\d+_\d+_branch|res_conv1_|conv1_[wb]$|fc1000_|fpn_inner_|fpn_res\d|rpn_|"
                      r"fc6_|fc7_|cls_score_|bbox_pred_|pred_[wb]$)")
_D2 = re.compile(r"(^|\.)(stem\.conv1\.|res[2-5]\.\d+\.(conv[123]|shortcut)\.|fpn_lateral\d|fpn_output\d|"
                 r"proposal_generator\.|roi_heads\.box_head\.fc[12]\.|head\.(cls|bbox)_subnet\.|"
                 r"roi_heads\.res5\.)")
_TV_DET = re.compile(r"^(backbone\.body\.|backbone\.fpn\.(inner|layer)_blocks\.|head\.(classification|"
                     r"regression)_head\.|rpn\.head\.|roi_heads\.box_head\.fc[67]\.)")


def detect_layout(keys: Iterable[str]) -> str:
    """Name the layout (a key of :data:`LAYOUTS`) that the state-dict ``keys`` are written in.

    ``module.`` (DistributedDataParallel) prefixes are ignored. A dict that matches no foreign pattern is
    ``'kiln'``: kiln's names are MMDetection's, and torchvision ResNets already use them.
    """
    names = [k[len("module."):] if k.startswith("module.") else k for k in keys]
    if not names:
        return "kiln"
    if all("." not in k for k in names) and any(_C2_BLOB.match(k) for k in names):
        return "caffe2"
    if any(_TV_DET.match(k) for k in names):
        return "torchvision_detection"
    if any(_D2.search(k) for k in names):
        return "detectron2"
    if "fc.weight" in names and any(k.startswith("layer1.") for k in names):
        return "torchvision_classification"
    return "kiln"
