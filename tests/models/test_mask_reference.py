"""kiln's paste-back, mask targets and mask loss reproduce Detectron2's on the same inputs.

tests/fixtures/d2_parity/mask_reference.json holds inputs and Detectron2's outputs (written by
scripts/mask_reference.py under a Detectron2 install): ``paste_masks_in_image``, ``PolygonMasks`` /
``BitMasks.crop_and_resize`` and ``mask_rcnn_loss``. MMDetection computes the same three things the same
way (``_do_paste_mask``, ``mask_target``, ``mask_cross_entropy``).
"""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch

from kiln.models.roi_heads import mask_target, paste_masks_in_image
from kiln.registry import MODELS
from kiln.structures.masks import BitMasks, PolygonMasks

FIXTURE = os.path.join(os.path.dirname(__file__), "..", "fixtures", "d2_parity", "mask_reference.json")


@pytest.fixture(scope="module")
def ref() -> dict:
    with open(FIXTURE) as f:
        return json.load(f)


def _unbits(d: dict) -> torch.Tensor:
    n = int(np.prod(d["shape"]))
    flat = np.unpackbits(np.frombuffer(bytes.fromhex(d["hex"]), dtype=np.uint8))[:n]
    return torch.from_numpy(flat.reshape(d["shape"]).astype(bool))


def test_paste_back_equals_detectron2s(ref):
    masks = torch.tensor(ref["paste_masks"], dtype=torch.float32)
    boxes = torch.tensor(ref["paste_boxes"], dtype=torch.float32)
    ours = paste_masks_in_image(masks, boxes, ref["image_size"], threshold=0.5)
    theirs = _unbits(ref["pasted"])
    assert theirs.any() and torch.equal(ours, theirs)


def _gt(ref: dict, kind: str):
    h, w = ref["image_size"]
    polys = PolygonMasks([[np.array(p, dtype=np.float64) for p in obj] for obj in ref["polygons"]], h, w)
    return polys if kind == "polygon" else BitMasks.from_polygon_masks(polys, h, w)


@pytest.mark.parametrize("kind", ["polygon", "bitmask"])
def test_mask_targets_equal_detectron2s(ref, kind):
    targets = mask_target([torch.tensor(ref["proposals"])], [torch.tensor(ref["gt_inds"])], [_gt(ref, kind)],
                          28)
    theirs = _unbits(ref[f"{kind}_targets"]).float()
    assert theirs.sum() > 0
    assert torch.equal(targets, theirs)


def test_mask_loss_equals_detectron2s(ref):
    head = MODELS.build(dict(type="FCNMaskHead", num_convs=0, in_channels=4, conv_out_channels=4,
                             num_classes=3))
    targets = mask_target([torch.tensor(ref["proposals"])], [torch.tensor(ref["gt_inds"])],
                          [_gt(ref, "polygon")], 28)
    loss = head.loss(torch.tensor(ref["logits"]), targets, torch.tensor(ref["classes"]))["loss_mask"]
    assert loss.item() == pytest.approx(ref["loss_mask"], rel=1e-5)
