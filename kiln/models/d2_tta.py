"""Test-time augmentation for Detectron2-form inputs (``TEST.AUG``): Detectron2's ``GeneralizedRCNNWithTTA``.

Each image is run at every ``TEST.AUG.MIN_SIZES`` short edge (long edge at most ``TEST.AUG.MAX_SIZE``),
and horizontally flipped too when ``TEST.AUG.FLIP``; the detections of all views, mapped back to the
image's own pixels, are merged by per-class NMS at ``MODEL.ROI_HEADS.NMS_THRESH_TEST`` and the best
``TEST.DETECTIONS_PER_IMAGE`` kept. Any kiln detector works underneath: it is given each view as a
Detectron2 sample (``image``, ``height``, ``width``) and returns boxes in original pixels.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn as nn
from torchvision.ops import batched_nms

from .utils import cfg_get

__all__ = ["DetectorWithTTA"]


class DetectorWithTTA(nn.Module):
    """Wrap ``model`` so that eval-mode calls run the test-time augmentations of ``cfg.TEST.AUG``.

    Args:
        cfg: a Detectron2 ``CfgNode`` (``TEST.AUG.MIN_SIZES/MAX_SIZE/FLIP``, ``MODEL.ROI_HEADS.
            NMS_THRESH_TEST``, ``TEST.DETECTIONS_PER_IMAGE``) — or give the values as keywords.
        model: a detector following kiln's model contract, in eval mode.
    """

    def __init__(self, cfg: Any, model: nn.Module, *, min_sizes: Sequence[int] | None = None,
                 max_size: int | None = None, flip: bool | None = None, nms_thresh: float | None = None,
                 max_dets: int | None = None) -> None:
        super().__init__()
        if model.training:
            raise ValueError("DetectorWithTTA: the wrapped model must be in eval mode (model.eval()); "
                             "test-time augmentation is for inference.")
        self.model = model
        pick = (lambda given, key: given if given is not None else cfg_get(cfg, key))
        self.min_sizes = [int(s) for s in pick(min_sizes, "TEST.AUG.MIN_SIZES")]
        self.max_size = int(pick(max_size, "TEST.AUG.MAX_SIZE"))
        self.flip = bool(pick(flip, "TEST.AUG.FLIP"))
        self.nms_thresh = float(pick(nms_thresh, "MODEL.ROI_HEADS.NMS_THRESH_TEST"))
        self.max_dets = int(pick(max_dets, "TEST.DETECTIONS_PER_IMAGE"))
        if not self.min_sizes or min(self.min_sizes) < 1:
            raise ValueError(f"DetectorWithTTA: TEST.AUG.MIN_SIZES must be positive sizes, got "
                             f"{self.min_sizes}.")

    def _views(self, image: np.ndarray) -> list[tuple[np.ndarray, bool]]:
        from kiln.data.transforms.augmentation import ResizeShortestEdge

        views = []
        for size in self.min_sizes:
            resized = ResizeShortestEdge([size, size], self.max_size).get_transform(image).apply_image(image)
            views.append((resized, False))
            if self.flip:
                views.append((np.ascontiguousarray(resized[:, ::-1]), True))
        return views

    @torch.no_grad()
    def forward(self, batch: Sequence[dict[str, Any]]) -> list[dict[str, torch.Tensor]]:
        """Per image: merged ``boxes`` (XYXY, original pixels), ``scores``, ``labels``."""
        from kiln.data.transforms.augmentation import ResizeTransform

        results = []
        for i, sample in enumerate(batch):
            if "image" not in sample:
                raise KeyError(f"DetectorWithTTA: batch[{i}] has keys {sorted(sample)}; it takes Detectron2 "
                               f"samples ('image', 'height', 'width') as build_detection_test_loader gives.")
            image = sample["image"]
            if isinstance(image, torch.Tensor):
                image = image.permute(1, 2, 0).cpu().numpy()
            image = np.asarray(image)
            h, w = image.shape[:2]
            oh, ow = int(sample.get("height", h)), int(sample.get("width", w))
            if (oh, ow) != (h, w):  # the test mapper resized it; augment from the original size
                image = ResizeTransform(h, w, oh, ow, "bilinear").apply_image(image)
            boxes, scores, labels = [], [], []
            for view, flipped in self._views(image):
                tensor = torch.as_tensor(np.ascontiguousarray(view.transpose(2, 0, 1)).astype("float32"))
                out = self.model([{"image": tensor, "height": oh, "width": ow}])[0]
                b = out["boxes"].detach().float()
                if flipped:  # back to the unflipped image: x -> width - x
                    b = torch.stack([ow - b[:, 2], b[:, 1], ow - b[:, 0], b[:, 3]], dim=1)
                boxes.append(b)
                scores.append(out["scores"].detach().float())
                labels.append(out["labels"].detach())
            b, s, lab = torch.cat(boxes), torch.cat(scores), torch.cat(labels)
            keep = batched_nms(b, s, lab, self.nms_thresh)[: self.max_dets]
            results.append({"boxes": b[keep], "scores": s[keep], "labels": lab[keep]})
        return results
