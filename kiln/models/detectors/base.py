"""``BaseDetector``: turns every batch form into one internal form and maps predictions back.

The three batch producers (MMDetection 2.x pipeline ``Collect``, MMDetection 3.x ``PackDetInputs`` and
Detectron2 ``DatasetMapper``, see docs/architecture.md) are converted once, in
:meth:`BaseDetector.preprocess`, into :class:`DetInputs`; subclasses implement :meth:`loss` and
:meth:`predict` against that form only.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from kiln.registry import MODELS
from kiln.structures import ImageList
from kiln.structures.masks import BitmapMasks, PolygonMasks

from ..backbones.pretrained import load_checkpoint_state_dict, resolve_pretrained
from ..roi_heads.mask_paste import paste_masks_in_image
from ..utils import cfg_get, merge_detections, nms_iou_threshold

__all__ = ["BaseDetector", "DetInputs", "to_original_pixels"]

logger = logging.getLogger(__name__)

# ImageNet mean/std in 0–255 RGB: what MMDetection's img_norm_cfg uses; used for Detectron2-form inputs.
DEFAULT_PIXEL_MEAN = (123.675, 116.28, 103.53)
DEFAULT_PIXEL_STD = (58.395, 57.12, 57.375)


@dataclass
class DetInputs:
    """One batch in the form detectors work with.

    Attributes:
        images: the normalised images padded into one tensor.
        metas: per image ``img_shape (h, w)`` (the image before padding, where predictions live),
            ``ori_shape (h, w)``, ``scale_factor`` tensor ``[w, h, w, h]`` (input / original),
            ``flip``, ``flip_direction``, ``image_id``.
        gt_bboxes, gt_labels: per image N×4 XYXY in input pixels, N int64 (empty lists when absent).
        gt_bboxes_ignore: per image M×4 or ``None``.
        gt_masks: per image the instance masks (``BitmapMasks`` / ``PolygonMasks``, one per gt box, in
            input pixels) when the batch carries them (Mask R-CNN); empty otherwise.
        proposals: per entry K×4 XYXY precomputed proposals in input pixels (Fast R-CNN; empty when the
            batch has none): MM-form ``proposals``, 3.x ``data_samples.proposals.bboxes``, Detectron2-form
            ``proposals.proposal_boxes``.
        sample_index: for each entry, which batch element it came from (test-time augmentation gives
            several entries per element).
    """

    images: ImageList
    metas: list[dict[str, Any]]
    gt_bboxes: list[torch.Tensor] = field(default_factory=list)
    gt_labels: list[torch.Tensor] = field(default_factory=list)
    gt_bboxes_ignore: list[torch.Tensor | None] = field(default_factory=list)
    gt_masks: list[Any] = field(default_factory=list)
    proposals: list[torch.Tensor] = field(default_factory=list)
    sample_index: list[int] = field(default_factory=list)

    @property
    def has_gt(self) -> bool:
        """Whether ground truth is present for every image."""
        return len(self.gt_bboxes) == len(self.metas) and len(self.metas) > 0


def _unwrap(x: Any) -> Any:
    # MMCV's DataContainer keeps the payload in `.data`; accept it without depending on MMCV.
    if (
        hasattr(x, "data")
        and not isinstance(x, (torch.Tensor, np.ndarray))
        and type(x).__name__ == "DataContainer"
    ):
        return x.data
    return x


def _as_tensor(x: Any, dtype: torch.dtype, device: torch.device, what: str) -> torch.Tensor:
    x = _unwrap(x)
    if isinstance(x, np.ndarray):
        x = torch.from_numpy(np.ascontiguousarray(x))
    elif not isinstance(x, torch.Tensor):
        try:
            x = torch.as_tensor(x)
        except Exception as exc:
            raise TypeError(
                f"batch key '{what}': expected a tensor or array, got {type(x).__name__}."
            ) from exc
    return x.to(device=device, dtype=dtype, non_blocking=True)


def _scale_factor(value: Any, device: torch.device) -> torch.Tensor:
    sf = torch.as_tensor(np.asarray(value, dtype=np.float32).reshape(-1), device=device)
    if sf.numel() == 1:
        sf = sf.repeat(4)
    elif sf.numel() == 2:
        sf = sf.repeat(2)
    elif sf.numel() != 4:
        raise ValueError(f"img_metas['scale_factor']={value!r}: expected a number, [w, h] or [w, h, w, h].")
    return sf


def _clear_pending(module: nn.Module, incompatible: Any) -> None:
    # A full state dict loaded over the detector (load_from, resume, kiln test) supersedes
    # the backbone's `pretrained` file.
    module.pretrained_pending = False


def to_original_pixels(boxes: torch.Tensor, meta: Mapping[str, Any]) -> torch.Tensor:
    """Map boxes from input-image pixels back to original-image pixels: undo flip, then resize; clip."""
    boxes = boxes.clone()
    if meta.get("flip"):
        h, w = meta["img_shape"][:2]
        direction = meta.get("flip_direction") or "horizontal"
        if direction in ("horizontal", "diagonal"):
            boxes[:, [0, 2]] = w - boxes[:, [2, 0]]
        if direction in ("vertical", "diagonal"):
            boxes[:, [1, 3]] = h - boxes[:, [3, 1]]
    boxes = boxes / meta["scale_factor"].to(boxes)
    oh, ow = meta["ori_shape"][:2]
    boxes[:, 0::2] = boxes[:, 0::2].clamp(0, ow)
    boxes[:, 1::2] = boxes[:, 1::2].clamp(0, oh)
    return boxes


class BaseDetector(nn.Module):
    """Base of all detectors: batch handling and the model contract.

    ``model(batch)`` with ``batch`` a list of per-image dicts in either form (or one dict):

    * train mode → ``dict`` of named losses (keys containing ``loss``), from :meth:`loss`;
    * eval mode → list (one per batch element) of ``{'boxes', 'scores', 'labels'}`` in original-image
      pixels, from :meth:`predict` plus :func:`to_original_pixels` and test-time-augmentation merging.

    Args:
        pixel_mean, pixel_std: normalisation of Detectron2-form ``image`` tensors (MM-form ``img`` is
            normalised by the pipeline already). Default: ImageNet RGB statistics in 0–255.
        size_divisibility: pad the batch to a multiple of this (default: the backbone's).
        train_cfg, test_cfg: kept as attributes for subclasses.
        data_preprocessor: MMDetection 3.x ``dict(type='DetDataPreprocessor', mean, std, bgr_to_rgb,
            pad_size_divisor, ...)``, applied to 3.x-form batches (``inputs`` + ``data_samples``).
            Without one, 3.x-form images are only cast to float (MMEngine's ``BaseDataPreprocessor``)
            and padded to ``size_divisibility``.
    """

    #: whether training reads class labels; a class-agnostic model (RPN) trains on boxes alone
    uses_gt_labels: bool = True

    def __init__(
        self,
        pixel_mean: Sequence[float] | None = None,
        pixel_std: Sequence[float] | None = None,
        size_divisibility: int | None = None,
        train_cfg: Any = None,
        test_cfg: Any = None,
        data_preprocessor: Mapping[str, Any] | nn.Module | None = None,
    ) -> None:
        super().__init__()
        if data_preprocessor is None or isinstance(data_preprocessor, nn.Module):
            self.data_preprocessor = data_preprocessor
        else:
            self.data_preprocessor = MODELS.build(
                dict(data_preprocessor), cfg_path="model.data_preprocessor"
            )
        mean = torch.tensor(pixel_mean if pixel_mean is not None else DEFAULT_PIXEL_MEAN, dtype=torch.float32)
        std = torch.tensor(pixel_std if pixel_std is not None else DEFAULT_PIXEL_STD, dtype=torch.float32)
        self.register_buffer("pixel_mean", mean.view(-1, 1, 1), persistent=False)
        self.register_buffer("pixel_std", std.view(-1, 1, 1), persistent=False)
        self._size_divisibility = size_divisibility
        self.train_cfg = train_cfg
        self.test_cfg = test_cfg
        #: how test-time-augmented views of one image are merged (``dict(nms=..., max_per_img=...)``);
        #: ``None``: by ``test_cfg``
        self.tta_cfg: dict | None = None
        # Pretrained backbone weights are read when training starts, never at build time (see
        # load_pending_pretrained); cleared by init_weights() or by loading a full state dict.
        self.pretrained_pending = True
        self.register_load_state_dict_post_hook(_clear_pending)

    # ------------------------------------------------------------------ to implement
    def loss(self, inputs: DetInputs) -> dict[str, torch.Tensor]:
        """Training losses for a preprocessed batch."""
        raise NotImplementedError

    def predict(self, inputs: DetInputs) -> list[dict[str, torch.Tensor]]:
        """Per-entry detections in input-image pixels (``img_shape`` coordinates)."""
        raise NotImplementedError

    # ------------------------------------------------------------------ contract
    @property
    def device(self) -> torch.device:
        """Device of the model's parameters (inputs are moved there)."""
        for p in self.parameters():
            return p.device
        return self.pixel_mean.device

    @property
    def size_divisibility(self) -> int:
        """Batches are padded to a multiple of this (explicit value, else the backbone's, else 32)."""
        if self._size_divisibility is not None:
            return int(self._size_divisibility)
        backbone = getattr(self, "backbone", None)
        value = getattr(backbone, "size_divisibility", None)
        return int(value) if value else 32

    def forward(self, batch: Sequence[Mapping[str, Any]] | Mapping[str, Any]) -> Any:
        """The model contract: losses in train mode, per-image detections in eval mode."""
        if self.training and self.pretrained_pending:
            self.load_pending_pretrained()
        inputs = self.preprocess(batch)
        if self.training:
            if not inputs.has_gt:
                raise KeyError(
                    "training batch has no ground truth: MM-form samples need 'gt_bboxes' and 'gt_labels' "
                    "(add them to Collect keys=[...]); Detectron2-form samples need 'instances' "
                    "(DatasetMapper with is_train=True). Call model.eval() for inference."
                )
            return self.loss(inputs)
        results = self.predict(inputs)
        return self.postprocess(results, inputs)

    def load_pending_pretrained(self) -> list[str]:
        """Load every submodule's not-yet-loaded ``pretrained`` weights; return the names loaded.

        MMDetection loads pretrained weights in ``init_weights()`` when training starts, so a model
        builds without touching files. Runners call :meth:`init_weights` (or this) before the first
        step; the first training ``forward`` calls it otherwise, so the weights are never silently
        skipped. A state dict loaded into the model (checkpoint, resume) makes this a no-op.
        """
        loaded = []
        for name, m in self.named_modules():
            pending = getattr(m, "pretrained", None) and getattr(m, "pretrained_loaded", True) is False
            if m is not self and pending:
                m.init_weights()
                loaded.append(name)
        if getattr(self, "init_checkpoint", None):
            self.load_init_checkpoint()
            loaded.append("")
        self.pretrained_pending = False
        return loaded

    def load_init_checkpoint(self) -> None:
        """Load the detector-level ``init_cfg`` checkpoint (if any) over the whole model, non-strictly.

        Local files and ``torchvision://`` names resolve as for backbones; names that need a download
        raise an error saying which file to provide (:func:`resolve_pretrained`).
        """
        checkpoint = getattr(self, "init_checkpoint", None)
        if not checkpoint:
            return
        path = resolve_pretrained(checkpoint)
        if path is None:
            return
        state = load_checkpoint_state_dict(path)
        own = self.state_dict()
        # Entries of another shape (e.g. a classifier for other classes) are skipped, as MMEngine does.
        skipped = [k for k, v in state.items() if k in own and tuple(v.shape) != tuple(own[k].shape)]
        result = self.load_state_dict({k: v for k, v in state.items() if k not in skipped}, strict=False)
        if result.missing_keys or result.unexpected_keys or skipped:
            logger.warning(
                "model.init_cfg checkpoint %s: missing keys %s, unused keys %s, shape mismatch (skipped) %s",
                path, result.missing_keys[:10], result.unexpected_keys[:10], skipped[:10],
            )

    def postprocess(
        self, results: list[dict[str, torch.Tensor]], inputs: DetInputs
    ) -> list[dict[str, torch.Tensor]]:
        """Map detections to original pixels and merge test-time-augmented views of the same image.

        Per-box mask probabilities (``mask_probs``, N×h×w, from a mask head) are pasted into the original
        image as ``masks`` (N×H×W bool; threshold ``test_cfg.mask_thr_binary``, 0.5).
        """
        mapped = []
        for res, meta in zip(results, inputs.metas):
            out = dict(res)
            out["boxes"] = to_original_pixels(res["boxes"], meta)
            out["labels"] = res["labels"].long()
            if "mask_probs" in out:
                out["masks"] = _paste_masks(out.pop("mask_probs"), out["boxes"], meta,
                                            float(cfg_get(self.test_cfg, "mask_thr_binary", 0.5)))
            mapped.append(out)
        num = max(inputs.sample_index) + 1 if inputs.sample_index else 0
        groups: list[list[dict[str, torch.Tensor]]] = [[] for _ in range(num)]
        for idx, res in zip(inputs.sample_index, mapped):
            groups[idx].append(res)
        if all(len(g) == 1 for g in groups):
            return [g[0] for g in groups]
        # MMDetection 3.x `--tta` merges views as tta_model.tta_cfg says (kiln test --tta sets it); else
        # the detector's own test_cfg (2.x MultiScaleFlipAug).
        merge_cfg = self.tta_cfg if self.tta_cfg is not None else self.test_cfg
        iou = nms_iou_threshold(cfg_get(merge_cfg, "nms"))
        max_per_img = cfg_get(merge_cfg, "max_per_img", 100)
        return [g[0] if len(g) == 1 else merge_detections(g, iou, max_per_img) for g in groups]

    # ------------------------------------------------------------------ batch conversion
    def preprocess(self, batch: Sequence[Mapping[str, Any]] | Mapping[str, Any]) -> DetInputs:
        """Convert a batch in either form to :class:`DetInputs` on the model's device."""
        if isinstance(batch, Mapping):
            batch = [batch]
        if not isinstance(batch, Sequence) or len(batch) == 0:
            raise TypeError(
                f"a batch must be a non-empty list of per-image dicts, got {type(batch).__name__}."
            )
        device = self.device
        images: list[torch.Tensor] = []
        inputs = DetInputs(images=None, metas=[])  # type: ignore[arg-type]
        packed = [isinstance(s, Mapping) and "inputs" in s for s in batch]
        if any(packed):
            if not all(packed):
                raise ValueError(
                    "batch mixes MMDetection 3.x samples ('inputs' + 'data_samples') with other forms; "
                    "one dataloader must produce one form."
                )
            for i, sample in enumerate(batch):
                self._add_packed_sample(sample, i, device, images, inputs)
            if self.data_preprocessor is not None:
                inputs.images = self.data_preprocessor(images, inputs.metas, training=self.training)
                if inputs.gt_masks and hasattr(self.data_preprocessor, "pad_gt_masks"):
                    inputs.gt_masks = self.data_preprocessor.pad_gt_masks(inputs.gt_masks, inputs.metas,
                                                                          training=self.training)
            else:
                inputs.images = ImageList.from_tensors([im.float() for im in images], self.size_divisibility)
            return inputs
        for i, sample in enumerate(batch):
            if not isinstance(sample, Mapping):
                raise TypeError(f"batch[{i}] is a {type(sample).__name__}; expected a dict per image.")
            if "img" in sample:
                self._add_mm_sample(sample, i, device, images, inputs)
            elif "image" in sample:
                self._add_d2_sample(sample, i, device, images, inputs)
            else:
                raise KeyError(
                    f"batch[{i}] has keys {sorted(sample)}; expected 'img' + 'img_metas' "
                    "(MM pipeline Collect), 'inputs' + 'data_samples' (MMDetection 3.x PackDetInputs) "
                    "or 'image' (Detectron2 DatasetMapper). See docs/architecture.md, 'Batches'."
                )
        inputs.images = ImageList.from_tensors(images, self.size_divisibility)
        return inputs

    def _add_mm_sample(
        self,
        sample: Mapping[str, Any],
        i: int,
        device: torch.device,
        images: list[torch.Tensor],
        inputs: DetInputs,
    ) -> None:
        imgs = _unwrap(sample["img"])
        metas = _unwrap(sample.get("img_metas", {}))
        if isinstance(imgs, (list, tuple)):  # MultiScaleFlipAug: one entry per scale/flip
            if not isinstance(metas, (list, tuple)) or len(metas) != len(imgs):
                raise ValueError(
                    f"batch[{i}]: 'img' is a list of {len(imgs)} views, so 'img_metas' must be a list "
                    "of as many dicts."
                )
            views = list(zip(imgs, metas))
        else:
            views = [(imgs, metas)]
        if "proposals" in sample:
            props = _unwrap(sample["proposals"])
            if not isinstance(imgs, (list, tuple)):
                props = [props]
            elif not isinstance(props, (list, tuple)) or len(props) != len(views):
                raise ValueError(f"batch[{i}]: {len(views)} augmented views need a list of as many "
                                 "'proposals' arrays.")
            for p in props:
                inputs.proposals.append(_proposal_tensor(p, device, f"batch[{i}]['proposals']"))
        for img, meta in views:
            img = _as_tensor(img, torch.float32, device, "img")
            if img.dim() == 4 and img.shape[0] == 1:
                img = img[0]
            if img.dim() != 3:
                raise ValueError(f"batch[{i}]['img'] has shape {tuple(img.shape)}; expected C×H×W.")
            meta = _unwrap(meta) or {}
            img_shape = tuple(meta.get("img_shape", img.shape[-2:]))[:2]
            images.append(img)
            inputs.metas.append(
                {
                    "img_shape": (int(img_shape[0]), int(img_shape[1])),
                    "ori_shape": tuple(int(v) for v in meta.get("ori_shape", img_shape)[:2]),
                    "scale_factor": _scale_factor(meta.get("scale_factor", 1.0), device),
                    "flip": bool(meta.get("flip", False)),
                    "flip_direction": meta.get("flip_direction"),
                    "image_id": meta.get("image_id", sample.get("image_id")),
                    "img_path": meta.get("img_path") or meta.get("filename"),  # read by PCB
                }
            )
            inputs.sample_index.append(i)
        if "gt_bboxes" in sample:
            if len(views) != 1:
                raise ValueError(
                    f"batch[{i}]: ground truth with {len(views)} augmented views is not supported."
                )
            boxes = _as_tensor(sample["gt_bboxes"], torch.float32, device, "gt_bboxes").reshape(-1, 4)
            if "gt_labels" not in sample and not self.uses_gt_labels:
                # An RPN's 2.x pipeline collects boxes only (Collect(keys=['img', 'gt_bboxes'])).
                sample = dict(sample, gt_labels=torch.zeros(len(boxes), dtype=torch.int64))
            labels = _as_tensor(
                sample.get("gt_labels", torch.zeros(0)), torch.int64, device, "gt_labels"
            ).reshape(-1)
            if len(labels) != len(boxes):
                raise ValueError(f"batch[{i}]: {len(boxes)} gt_bboxes but {len(labels)} gt_labels.")
            inputs.gt_bboxes.append(boxes)
            inputs.gt_labels.append(labels)
            if "gt_masks" in sample:
                inputs.gt_masks.append(_gt_masks(sample["gt_masks"], len(boxes), f"batch[{i}]['gt_masks']"))
            ign = sample.get("gt_bboxes_ignore")
            inputs.gt_bboxes_ignore.append(
                None
                if ign is None
                else _as_tensor(ign, torch.float32, device, "gt_bboxes_ignore").reshape(-1, 4)
            )

    def _add_d2_sample(
        self,
        sample: Mapping[str, Any],
        i: int,
        device: torch.device,
        images: list[torch.Tensor],
        inputs: DetInputs,
    ) -> None:
        img = _as_tensor(sample["image"], torch.float32, device, "image")
        if img.dim() != 3 or img.shape[0] != self.pixel_mean.shape[0]:
            raise ValueError(
                f"batch[{i}]['image'] has shape {tuple(img.shape)}; expected C×H×W with "
                f"C={self.pixel_mean.shape[0]} (len(pixel_mean))."
            )
        img = (img - self.pixel_mean) / self.pixel_std
        h, w = int(img.shape[-2]), int(img.shape[-1])
        oh, ow = int(sample.get("height", h)), int(sample.get("width", w))
        images.append(img)
        inputs.metas.append(
            {
                "img_shape": (h, w),
                "ori_shape": (oh, ow),
                "scale_factor": torch.tensor([w / ow, h / oh, w / ow, h / oh], device=device),
                "flip": False,
                "flip_direction": None,
                "image_id": sample.get("image_id"),
                "img_path": sample.get("file_name"),  # read by PCB
            }
        )
        inputs.sample_index.append(i)
        props = sample.get("proposals")
        if props is not None:
            boxes = props.proposal_boxes if hasattr(props, "proposal_boxes") else props
            inputs.proposals.append(_proposal_tensor(getattr(boxes, "tensor", boxes), device,
                                                     f"batch[{i}]['proposals'].proposal_boxes"))
        inst = sample.get("instances")
        if inst is not None:
            boxes = inst.gt_boxes if inst.has("gt_boxes") else torch.zeros(0, 4)
            boxes = getattr(boxes, "tensor", boxes)
            labels = inst.gt_classes if inst.has("gt_classes") else torch.zeros(0, dtype=torch.int64)
            inputs.gt_bboxes.append(
                _as_tensor(boxes, torch.float32, device, "instances.gt_boxes").reshape(-1, 4)
            )
            inputs.gt_labels.append(
                _as_tensor(labels, torch.int64, device, "instances.gt_classes").reshape(-1)
            )
            if inst.has("gt_masks"):
                inputs.gt_masks.append(_gt_masks(inst.gt_masks, len(inputs.gt_bboxes[-1]),
                                                 f"batch[{i}]['instances'].gt_masks"))
            inputs.gt_bboxes_ignore.append(None)

    def _add_packed_sample(
        self,
        sample: Mapping[str, Any],
        i: int,
        device: torch.device,
        images: list[torch.Tensor],
        inputs: DetInputs,
    ) -> None:
        """One MMDetection 3.x ``PackDetInputs`` sample (or a ``TestTimeAug`` list of views)."""
        imgs, samples = sample["inputs"], sample.get("data_samples")
        if isinstance(imgs, (list, tuple)):  # TestTimeAug: one entry per view
            if not isinstance(samples, (list, tuple)) or len(samples) != len(imgs):
                raise ValueError(
                    f"batch[{i}]: 'inputs' is a list of {len(imgs)} views, so 'data_samples' must be a "
                    "list of as many DetDataSample."
                )
            views = list(zip(imgs, samples))
        else:
            views = [(imgs, samples)]
        non_blocking = bool(getattr(self.data_preprocessor, "non_blocking", False))
        for img, ds in views:
            img = _unwrap(img)
            if isinstance(img, np.ndarray):
                img = torch.from_numpy(np.ascontiguousarray(img))
            if not isinstance(img, torch.Tensor) or img.dim() != 3:
                raise ValueError(
                    f"batch[{i}]['inputs']: expected a C×H×W tensor (PackDetInputs output), got "
                    f"{tuple(img.shape) if isinstance(img, torch.Tensor) else type(img).__name__}."
                )
            meta = dict(ds.metainfo) if ds is not None and hasattr(ds, "metainfo") else {}
            props = ds.get("proposals") if ds is not None else None
            if props is not None:
                inputs.proposals.append(_proposal_tensor(_box_tensor(props.bboxes), device,
                                                         f"batch[{i}] data_samples.proposals.bboxes"))
            img_shape = tuple(meta.get("img_shape", img.shape[-2:]))[:2]
            images.append(img.to(device, non_blocking=non_blocking))
            inputs.metas.append(
                {
                    "img_shape": (int(img_shape[0]), int(img_shape[1])),
                    "ori_shape": tuple(int(v) for v in meta.get("ori_shape", img_shape)[:2]),
                    "scale_factor": _scale_factor(meta.get("scale_factor", 1.0), device),
                    "flip": bool(meta.get("flip", False)),
                    "flip_direction": meta.get("flip_direction"),
                    "image_id": meta.get("img_id"),
                    "img_path": meta.get("img_path"),  # read by PCB
                }
            )
            inputs.sample_index.append(i)
        # Ground truth is read for single-view samples only (TestTimeAug batches are for inference).
        ds = views[0][1] if len(views) == 1 else None
        gt = ds.get("gt_instances") if ds is not None else None
        if gt is None or "bboxes" not in gt:
            return
        boxes = _as_tensor(_box_tensor(gt.bboxes), torch.float32, device, "gt_instances.bboxes")
        boxes = boxes.reshape(-1, 4)
        labels = _as_tensor(
            gt.get("labels", torch.zeros(0)), torch.int64, device, "gt_instances.labels"
        ).reshape(-1)
        if len(labels) != len(boxes):
            raise ValueError(f"batch[{i}]: {len(boxes)} gt_instances.bboxes but {len(labels)} labels.")
        inputs.gt_bboxes.append(boxes)
        inputs.gt_labels.append(labels)
        if "masks" in gt:
            inputs.gt_masks.append(_gt_masks(gt.masks, len(boxes),
                                             f"batch[{i}] data_samples.gt_instances.masks"))
        ign = ds.get("ignored_instances")
        ignored = None
        if ign is not None and "bboxes" in ign and len(ign.bboxes):
            ignored = _as_tensor(_box_tensor(ign.bboxes), torch.float32, device, "ignored_instances.bboxes")
            ignored = ignored.reshape(-1, 4)
        inputs.gt_bboxes_ignore.append(ignored)


def _paste_masks(probs: torch.Tensor, boxes: torch.Tensor, meta: Mapping[str, Any], threshold: float
                 ) -> torch.Tensor:
    """Paste per-box mask probabilities predicted on the (possibly flipped) input into the original image;
    ``boxes`` are already in original pixels."""
    if meta.get("flip"):
        direction = meta.get("flip_direction") or "horizontal"
        if direction in ("horizontal", "diagonal"):
            probs = probs.flip(-1)
        if direction in ("vertical", "diagonal"):
            probs = probs.flip(-2)
    return paste_masks_in_image(probs, boxes, meta["ori_shape"][:2], threshold)


def _gt_masks(value: Any, num_boxes: int, what: str) -> Any:
    """A sample's instance masks, checked: ``BitmapMasks``/``PolygonMasks`` or Detectron2's
    ``BitMasks``/``PolygonMasks`` spellings of them (the same classes, :mod:`kiln.structures.masks`)."""
    masks = _unwrap(value)
    if not isinstance(masks, (BitmapMasks, PolygonMasks)):
        raise TypeError(f"{what}: expected BitmapMasks or PolygonMasks (kiln.structures.masks), got "
                        f"{type(masks).__name__}; load masks with LoadAnnotations(with_mask=True) or "
                        "Detectron2's DatasetMapper with MODEL.MASK_ON.")
    if len(masks) != num_boxes:
        raise ValueError(f"{what}: {len(masks)} masks for {num_boxes} gt boxes; give one mask per box.")
    return masks


def _proposal_tensor(value: Any, device: torch.device, what: str) -> torch.Tensor:
    """K×4 float proposals (a score column, MMDetection's K×5 layout, is dropped)."""
    boxes = _as_tensor(value, torch.float32, device, what)
    if boxes.numel() == 0:
        return boxes.reshape(0, 4)
    if boxes.dim() != 2 or boxes.shape[1] not in (4, 5):
        raise ValueError(f"{what}: expected K×4 (or K×5 with scores) proposals, got shape "
                         f"{tuple(boxes.shape)}.")
    return boxes[:, :4]


def _box_tensor(boxes: Any) -> Any:
    # MMDetection's box types (HorizontalBoxes) keep the N×4 tensor in `.tensor`.
    return getattr(boxes, "tensor", boxes)
