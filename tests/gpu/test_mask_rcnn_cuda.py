"""Mask R-CNN on the GPU: chunked paste-back equals the CPU's, a training step and inference run there."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from kiln.models import build_detector
from kiln.models.roi_heads import mask_paste, paste_masks_in_image
from kiln.structures import DetDataSample
from kiln.structures.det_data_sample import InstanceData
from kiln.structures.masks import PolygonMasks

pytestmark = pytest.mark.cuda


def _case(n: int = 40):
    g = torch.Generator().manual_seed(0)
    xy = torch.rand(n, 2, generator=g) * 80 - 10
    wh = torch.rand(n, 2, generator=g) * 50 + 0.5
    return torch.rand(n, 28, 28, generator=g), torch.cat([xy, xy + wh], 1)


def test_paste_on_cuda_equals_the_cpu(monkeypatch):
    masks, boxes = _case()
    cpu = paste_masks_in_image(masks, boxes, (70, 90))
    gpu = paste_masks_in_image(masks.cuda(), boxes.cuda(), (70, 90))
    assert gpu.device.type == "cuda" and torch.equal(gpu.cpu(), cpu)
    # a small chunk limit: many chunks, same masks
    monkeypatch.setattr(mask_paste, "GPU_MEM_LIMIT", 70 * 90 * 4 * 3)
    assert torch.equal(paste_masks_in_image(masks.cuda(), boxes.cuda(), (70, 90)).cpu(), cpu)


def test_mask_rcnn_trains_and_predicts_masks_on_cuda():
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "models"))
    from mask_configs import mask_rcnn_cfg

    model = build_detector(mask_rcnn_cfg()).cuda().train()
    polys = PolygonMasks([[np.array([8, 8, 40, 8, 8, 40], float)],
                          [np.array([50, 12, 90, 12, 90, 56, 50, 56], float)]], 64, 96)
    meta = dict(img_id=1, img_shape=(64, 96), ori_shape=(64, 96), scale_factor=(1.0, 1.0))
    ds = DetDataSample(metainfo=meta)
    ds.gt_instances = InstanceData(bboxes=torch.tensor([[8.0, 8, 40, 40], [50.0, 12, 90, 56]]),
                                   labels=torch.tensor([0, 2]), masks=polys)
    sample = {"inputs": torch.rand(3, 64, 96) * 255, "data_samples": ds}
    losses = model([sample])
    assert losses["loss_mask"].device.type == "cuda" and torch.isfinite(losses["loss_mask"])
    sum(v for k, v in losses.items() if "loss" in k).backward()
    model.eval()
    with torch.no_grad():
        out = model([sample])[0]
    assert out["masks"].device.type == "cuda" and out["masks"].shape == (len(out["boxes"]), 64, 96)
