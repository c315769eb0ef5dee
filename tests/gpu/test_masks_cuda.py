"""Mask targets on the GPU: crop_and_resize delivers on the boxes' device with the CPU's values."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from kiln.structures import BitmapMasks, BitMasks, PolygonMasks

pytestmark = pytest.mark.cuda


def _polys():
    triangle = np.array([4.0, 5.0, 40.0, 8.0, 30.0, 35.0])
    rectangle = np.array([10.0, 10, 50, 10, 50, 30, 10, 30])
    return PolygonMasks([[triangle], [rectangle]], 48, 64)


def test_crop_and_resize_on_cuda_equals_cpu():
    polys = _polys()
    boxes = torch.tensor([[2.0, 3.0, 42.0, 37.0], [8.0, 9.0, 52.0, 31.0], [5.5, 6.5, 20.2, 30.1]])
    inds = torch.tensor([0, 1, 0])
    for masks in (polys, polys.to_bitmap()):
        cpu = masks.crop_and_resize(boxes, (28, 28), inds=inds, binarize=False)
        gpu = masks.crop_and_resize(boxes.cuda(), (28, 28), inds=inds.cuda(), binarize=False)
        assert gpu.device.type == "cuda"
        torch.testing.assert_close(gpu.cpu(), cpu, atol=1e-5, rtol=0)


def test_bitmasks_to_cuda_delivers_tensor_and_boxes_there():
    bm = BitMasks(torch.from_numpy(_polys().to_ndarray())).to("cuda")
    assert bm.tensor.device.type == "cuda" and bm.get_bounding_boxes().tensor.device.type == "cuda"
    assert bm.crop_and_resize(bm.get_bounding_boxes().tensor, 14).device.type == "cuda"
    assert isinstance(bm, BitmapMasks)
