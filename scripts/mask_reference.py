"""Write tests/fixtures/d2_parity/mask_reference.json: Detectron2's mask targets, mask loss and paste-back.

Run with a Python that imports detectron2 (``/work/d2venv/bin/python scripts/mask_reference.py``). The
inputs are generated here from fixed seeds and stored next to Detectron2's outputs, so
tests/models/test_mask_reference.py replays them through kiln without detectron2 installed:

* paste-back: ``detectron2.layers.mask_ops.paste_masks_in_image`` of soft 28×28 masks into a 50×70 image
  (boxes partly outside the image, fractional coordinates);
* mask targets: ``PolygonMasks.crop_and_resize`` and ``BitMasks.crop_and_resize`` of ground truths for
  proposal boxes;
* the mask loss: ``mask_rcnn_loss`` of random logits on those proposals;
* the mask head: ``MaskRCNNConvUpsampleHead`` (2 GN convs of 32 channels, 3 classes) with weights filled by
  :func:`head_weight` from their Detectron2 names, its logits on seeded RoI features (the weights are
  rebuilt in the test, only names, shapes and logits are stored).
"""

from __future__ import annotations

import json
import os

import numpy as np
import torch

OUT = os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures", "d2_parity", "mask_reference.json")


def _bits(t: torch.Tensor) -> dict:
    arr = t.cpu().numpy().astype(bool)
    return {"shape": list(arr.shape), "hex": np.packbits(arr.reshape(-1)).tobytes().hex()}


def head_weight(name: str, shape: list[int]) -> torch.Tensor:
    """The value of mask-head parameter ``name`` (Detectron2's name), seeded by the name's CRC32."""
    import zlib

    g = torch.Generator().manual_seed(zlib.crc32(name.encode()))
    if name.endswith("norm.weight"):
        return 0.5 + torch.rand(shape, generator=g)
    fan_in = max(1, int(np.prod(shape[1:])))
    return torch.randn(shape, generator=g) * (0.1 if name.endswith("bias") else (1.0 / fan_in) ** 0.5)


def _mask_head_case() -> dict:
    from detectron2.config import get_cfg
    from detectron2.layers import ShapeSpec
    from detectron2.modeling.roi_heads.mask_head import build_mask_head

    cfg = get_cfg()
    cfg.MODEL.ROI_HEADS.NUM_CLASSES = 3
    cfg.MODEL.ROI_MASK_HEAD.NUM_CONV = 2
    cfg.MODEL.ROI_MASK_HEAD.CONV_DIM = 32
    cfg.MODEL.ROI_MASK_HEAD.NORM = "GN"
    head = build_mask_head(cfg, ShapeSpec(channels=16, height=14, width=14)).eval()
    names = {}
    with torch.no_grad():
        for name, p in head.state_dict().items():
            full = "roi_heads.mask_head." + name
            p.copy_(head_weight(full, list(p.shape)))
            names[full] = list(p.shape)
        x = torch.randn(2, 16, 14, 14, generator=torch.Generator().manual_seed(7))
        logits = head.layers(x)
    return dict(head_params=names, head_input_seed=7, head_logits=_floats(logits))


def _floats(t: torch.Tensor) -> list:
    return np.round(t.double().numpy(), 4).tolist()


def main() -> None:
    from detectron2.layers.mask_ops import paste_masks_in_image
    from detectron2.modeling.roi_heads.mask_head import mask_rcnn_loss
    from detectron2.structures import BitMasks, Boxes, Instances, PolygonMasks
    from detectron2.utils.events import EventStorage

    g = torch.Generator().manual_seed(0)
    # --- paste-back
    n, h, w = 6, 50, 70
    masks = torch.rand(n, 28, 28, generator=g)
    masks = torch.nn.functional.avg_pool2d(masks[:, None], 5, 1, 2)[:, 0]
    masks = torch.round(masks * 1e4) / 1e4  # exactly representable in the json
    boxes = torch.tensor([[3.3, 4.1, 40.7, 30.2], [-5.2, -3.1, 12.6, 8.3], [20.4, 10.3, 72.9, 51.1],
                          [10.25, 0.6, 17.9, 9.3], [0.0, 0.0, 70.0, 50.0], [33.3, 22.2, 34.9, 23.5]])
    pasted = paste_masks_in_image(masks, Boxes(boxes), (h, w), threshold=0.5)
    # --- targets and loss
    polys = [
        [[10.0, 8.0, 40.0, 9.5, 30.0, 40.0]],
        [[45.0, 5.0, 66.0, 5.0, 66.0, 30.0, 45.0, 30.0], [50.0, 35.0, 60.0, 35.0, 55.0, 45.0]],
        [[5.5, 30.5, 20.5, 30.5, 20.5, 47.5, 5.5, 47.5]],
    ]
    proposals = torch.tensor([[9.0, 7.0, 41.0, 41.0], [12.0, 10.0, 30.0, 25.0], [44.0, 4.0, 67.0, 46.0],
                              [40.0, 0.0, 70.0, 20.0], [4.0, 29.0, 22.0, 49.0], [0.0, 25.0, 30.0, 50.0]])
    gt_inds = torch.tensor([0, 0, 1, 1, 2, 2])
    poly_masks = PolygonMasks([polys[i] for i in gt_inds.tolist()])
    poly_targets = poly_masks.crop_and_resize(proposals, 28)
    bitmap = BitMasks.from_polygon_masks(PolygonMasks(polys), h, w)
    bit_targets = BitMasks(bitmap.tensor[gt_inds]).crop_and_resize(proposals, 28)
    classes = torch.tensor([2, 2, 0, 0, 1, 1])
    logits = torch.randn(6, 3, 28, 28, generator=g)
    logits = torch.round(logits * 1e4) / 1e4
    inst = Instances((h, w), proposal_boxes=Boxes(proposals), gt_classes=classes, gt_masks=poly_masks)
    with EventStorage():  # the loss logs its accuracy there
        loss = mask_rcnn_loss(logits, [inst])
    data = dict(
        image_size=[h, w], paste_masks=_floats(masks), paste_boxes=boxes.tolist(), pasted=_bits(pasted),
        polygons=polys, proposals=proposals.tolist(), gt_inds=gt_inds.tolist(), classes=classes.tolist(),
        polygon_targets=_bits(poly_targets), bitmask_targets=_bits(bit_targets), logits=_floats(logits),
        loss_mask=float(loss), **_mask_head_case(),
    )
    with open(OUT, "w") as f:
        json.dump(data, f)
    print(f"wrote {os.path.normpath(OUT)}")


if __name__ == "__main__":
    main()
