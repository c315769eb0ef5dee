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


def test_detectron2_mask_head_weights_convert_and_give_detectron2s_logits(ref):
    # The head as the Detectron2 translator builds it for ROI_MASK_HEAD NUM_CONV 2, CONV_DIM 32, NORM GN
    # (3 classes, 16 input channels); Detectron2's weights (rebuilt from their names) through the converter.
    import importlib.util

    from kiln.checkpoint_convert.convert import convert_for_model
    from kiln.config import get_cfg
    from kiln.config.dialects.d2_heads import mask_head_dicts

    script = os.path.join(os.path.dirname(__file__), "..", "..", "scripts", "mask_reference.py")
    spec = importlib.util.spec_from_file_location("mask_reference", script)
    recipe = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(recipe)  # the weight recipe the fixture was written with
    head_weight = recipe.head_weight

    d2 = get_cfg()
    d2.MODEL.ROI_HEADS.NUM_CLASSES = 3
    d2.MODEL.ROI_HEADS.IN_FEATURES = ["p2", "p3", "p4", "p5"]
    d2.MODEL.ROI_MASK_HEAD.NUM_CONV = 2
    d2.MODEL.ROI_MASK_HEAD.CONV_DIM = 32
    d2.MODEL.ROI_MASK_HEAD.NORM = "GN"
    levels = {f"p{i}": (16, 2 ** i) for i in range(2, 7)}
    head_cfg, extractor, mask_size = mask_head_dicts(d2, levels, c4=False)
    assert mask_size == 28
    assert extractor["roi_layer"] == dict(type="RoIAlign", output_size=14, sampling_ratio=0, aligned=True)
    head = MODELS.build(head_cfg).eval()
    d2_state = {name: head_weight(name, shape) for name, shape in ref["head_params"].items()}
    prefix = "roi_head.mask_head."
    aligned, report = convert_for_model(d2_state, {prefix + k: v for k, v in head.state_dict().items()},
                                        layout="detectron2")
    assert report.missing == [] and report.unexpected == [] and report.shape_mismatch == []
    head.load_state_dict({k[len(prefix):]: v for k, v in aligned.items()}, strict=True)
    x = torch.randn(2, 16, 14, 14, generator=torch.Generator().manual_seed(ref["head_input_seed"]))
    with torch.no_grad():
        logits = head(x)
    torch.testing.assert_close(logits, torch.tensor(ref["head_logits"]), atol=2e-4, rtol=1e-4)
