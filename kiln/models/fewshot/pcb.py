"""DeFRCN's Prototypical Calibration Block (PCB): re-score detections at test time by their cosine
similarity to class prototypes computed with an ImageNet classifier on the few-shot support set.

For each support image (the fine-tuning training set, read at its original size) the classifier's
last stage (``layer4``, stride 32) is pooled over every ground-truth box (RoIAlign to 1×1, aligned) and
passed through its ``fc`` layer; a class's prototype is the mean of those vectors. A detection whose
score ``s`` lies in ``(lower, upper]`` and whose class is not excluded gets ``alpha * s + (1 - alpha) *
cos(feature, prototype)``. Excluded classes are the base classes of a generalized (base + novel) test set,
as DeFRCN calibrates only novel classes there.

The classifier is a torchvision ResNet read from a local state-dict file (``TEST.PCB_MODELPATH``; its
depth is read from the file), never downloaded. It is held outside the detector's modules, so it is in
no checkpoint and no optimizer.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

__all__ = ["PrototypicalCalibrationBlock", "build_imagenet_resnet", "SupportImage"]

logger = logging.getLogger(__name__)

# torchvision's ImageNet normalization (RGB, 0..1 scale)
_MEAN = (0.485, 0.456, 0.406)
_STD = (0.229, 0.224, 0.225)

_ARCHS = {
    (False, (2, 2, 2, 2)): "resnet18",
    (False, (3, 4, 6, 3)): "resnet34",
    (True, (3, 4, 6, 3)): "resnet50",
    (True, (3, 4, 23, 3)): "resnet101",
    (True, (3, 8, 36, 3)): "resnet152",
}

SupportImage = tuple[str, np.ndarray, np.ndarray]
"""(image file, gt boxes K×4 xyxy in original pixels, contiguous labels K)."""


def build_imagenet_resnet(path: str) -> nn.Module:
    """The torchvision ResNet in state-dict file ``path`` (architecture read from its keys), eval mode."""
    import torchvision

    if not path:
        raise ValueError("TEST.PCB_MODELPATH is empty: PCB needs an ImageNet classifier state dict (a "
                         "torchvision resnet*.pth file) given as a local path")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"TEST.PCB_MODELPATH '{path}' does not exist; give the local path of a "
                                f"torchvision ResNet state dict (e.g. resnet101-5d3b4d8f.pth)")
    state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, Mapping) and isinstance(state.get("state_dict"), Mapping):
        state = state["state_dict"]
    if not isinstance(state, Mapping) or "fc.weight" not in state:
        raise ValueError(f"TEST.PCB_MODELPATH '{path}' holds no torchvision ResNet state dict "
                         f"(no 'fc.weight')")
    blocks = tuple(
        len({k.split(".")[1] for k in state if k.startswith(f"layer{i}.")}) for i in range(1, 5)
    )
    bottleneck = any(k.startswith("layer1.0.conv3.") for k in state)
    arch = _ARCHS.get((bottleneck, blocks))
    if arch is None:
        raise ValueError(f"TEST.PCB_MODELPATH '{path}': blocks per stage {blocks} (bottleneck={bottleneck}) "
                         f"match none of torchvision's resnet18/34/50/101/152")
    model = getattr(torchvision.models, arch)(weights=None, num_classes=int(state["fc.weight"].shape[0]))
    model.load_state_dict(state)
    return model.eval()


class PrototypicalCalibrationBlock:
    """Calibrate detection scores with class prototypes (see the module docstring).

    Args:
        model_path: local torchvision ResNet state dict (``TEST.PCB_MODELPATH``).
        support: callable returning the support set as :data:`SupportImage` tuples (called once, on the
            first calibration, so building a detector reads no data).
        model_type: ``'resnet'`` (``TEST.PCB_MODELTYPE``; the only kind DeFRCN has).
        alpha, upper, lower: ``TEST.PCB_ALPHA``, ``TEST.PCB_UPPER``, ``TEST.PCB_LOWER``.
        exclude_classes: contiguous class ids left as they are (base classes of a base+novel test set).
    """

    def __init__(self, model_path: str, support: Any, model_type: str = "resnet", alpha: float = 0.5,
                 upper: float = 1.0, lower: float = 0.05, exclude_classes: Sequence[int] = ()) -> None:
        if model_type != "resnet":
            raise ValueError(f"TEST.PCB_MODELTYPE '{model_type}' is not supported; DeFRCN (and kiln) "
                             f"implement 'resnet'")
        if not 0.0 <= float(alpha) <= 1.0:
            raise ValueError(f"TEST.PCB_ALPHA must be in [0, 1], got {alpha}")
        if float(lower) > float(upper):
            raise ValueError(f"TEST.PCB_LOWER ({lower}) must not exceed TEST.PCB_UPPER ({upper})")
        self.model_path = model_path
        self.support = support
        self.alpha, self.upper, self.lower = float(alpha), float(upper), float(lower)
        self.exclude = {int(c) for c in exclude_classes}
        self._model: nn.Module | None = None
        self.prototypes: dict[int, torch.Tensor] | None = None

    def _features(self, img_bgr: np.ndarray, boxes: torch.Tensor, device: torch.device) -> torch.Tensor:
        """Classifier activations (fc outputs) of ``boxes`` (K×4 xyxy, original pixels) in one image."""
        from torchvision.ops import roi_align

        model = self._model
        assert model is not None
        img = torch.from_numpy(np.ascontiguousarray(img_bgr[..., ::-1])).to(device).permute(2, 0, 1).float()
        mean = torch.tensor(_MEAN, device=device).view(3, 1, 1)
        std = torch.tensor(_STD, device=device).view(3, 1, 1)
        x = ((img / 255.0 - mean) / std)[None]
        x = model.maxpool(model.relu(model.bn1(model.conv1(x))))
        x = model.layer4(model.layer3(model.layer2(model.layer1(x))))
        rois = torch.cat([boxes.new_zeros(len(boxes), 1), boxes.float()], dim=1).to(device)
        pooled = roi_align(x, rois, output_size=(1, 1), spatial_scale=1 / 32, sampling_ratio=0, aligned=True)
        return model.fc(pooled.flatten(1))

    def _prepare(self, device: torch.device) -> None:
        from kiln.image.io import imread

        self._model = build_imagenet_resnet(self.model_path).to(device)
        feats: dict[int, list[torch.Tensor]] = {}
        with torch.no_grad():
            for path, boxes, labels in self.support():
                if len(boxes) == 0:
                    continue
                out = self._features(imread(path), torch.as_tensor(boxes, dtype=torch.float32), device)
                for f, c in zip(out, labels):
                    feats.setdefault(int(c), []).append(f)
        if not feats:
            raise ValueError("PCB: the support set (the fine-tuning training data) has no boxes to build "
                             "class prototypes from")
        self.prototypes = {c: torch.stack(v).mean(0) for c, v in feats.items()}
        logger.info("PCB: prototypes for classes %s from %s", sorted(self.prototypes), self.model_path)

    @torch.no_grad()
    def calibrate(self, img_path: str, result: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Return ``result`` (``boxes`` in original pixels, ``scores``, ``labels``) with calibrated scores."""
        from kiln.image.io import imread

        scores = result["scores"]
        device = scores.device
        if self.prototypes is None:
            self._prepare(device)
        assert self.prototypes is not None
        labels = result["labels"].long()
        pick = (scores > self.lower) & (scores <= self.upper)
        pick &= torch.tensor([int(c) not in self.exclude and int(c) in self.prototypes for c in labels],
                             dtype=torch.bool, device=device)
        if not bool(pick.any()):
            return result
        if not img_path:
            raise ValueError("PCB needs each test image's file (img_path/filename in the image meta, "
                             "file_name in Detectron2 dicts) to re-read it at its original size")
        idx = pick.nonzero().flatten()
        feats = self._features(imread(img_path), result["boxes"][idx], device)
        protos = torch.stack([self.prototypes[int(c)] for c in labels[idx]]).to(feats)
        cos = torch.nn.functional.cosine_similarity(feats, protos, dim=1)
        new = scores.clone()
        new[idx] = scores[idx] * self.alpha + cos.to(scores) * (1 - self.alpha)
        return {**result, "scores": new}
