"""ProposalVisualizationHook: Detectron2's ``VIS_PERIOD`` (``GeneralizedRCNN.visualize_training``).

Every ``interval`` iterations (at iterations 0, interval, 2·interval, ... as Detectron2 counts them) the
first training image of the batch is drawn twice, side by side: its ground-truth boxes on the left and the
RPN's ``max_proposals`` best proposals on the right. The picture goes into the event storage
(``put_image``), so the TensorBoard writer of the run writes it to the event file, and into the run's
visualizer backends when the config has a ``visualizer``.

The proposals are the ones the model computed for this very batch: the hook asks the model to keep them
(``model.keep_proposals = True``; the two-stage detectors then leave ``model.last_proposals``, one
``(boxes K×4, scores K)`` pair per image in the model's input pixels). A model that makes no proposals
(RetinaNet and other one-stage detectors) is refused when training starts.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import torch

from kiln.registry import HOOKS

from .base import Hook, Priority
from .period import DueWhen

__all__ = ["ProposalVisualizationHook", "batch_image_and_gt"]

logger = logging.getLogger(__name__)

# Detectron2's TensorBoard tag for this picture, kept so dashboards and habits carry over.
TAG = "Left: GT bounding boxes;  Right: Predicted proposals"


def _unwrap(x: Any) -> Any:
    if type(x).__name__ == "DataContainer" and hasattr(x, "data"):  # MMCV 1.x pipelines
        return x.data
    return x


def _boxes(x: Any) -> np.ndarray:
    x = getattr(_unwrap(x), "tensor", _unwrap(x))  # kiln.structures.Boxes
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=np.float32).reshape(-1, 4)


def batch_image_and_gt(sample: Mapping[str, Any], image_format: str = "BGR") -> tuple[np.ndarray, np.ndarray]:
    """The image a model was given (H×W×3 BGR uint8, in the pixels its proposals use) and its ground-truth
    boxes, from one training sample of any of the three batch forms (docs/architecture.md, "Batches")."""
    from kiln.visualization.draw import image_from_tensor

    if "image" in sample:  # Detectron2 DatasetMapper: not normalized, in INPUT.FORMAT
        inst = sample.get("instances")
        gt = inst.gt_boxes if inst is not None and inst.has("gt_boxes") else np.zeros((0, 4))
        return image_from_tensor(sample["image"], image_format=image_format), _boxes(gt)
    if "img" in sample:  # MM pipeline: normalized; img_norm_cfg says how
        meta = _unwrap(sample.get("img_metas")) or {}
        return image_from_tensor(_unwrap(sample["img"]), meta.get("img_norm_cfg")), \
            _boxes(sample.get("gt_bboxes", np.zeros((0, 4))))
    if "inputs" in sample:  # MMDetection 3.x PackDetInputs: BGR as loaded
        ds = sample.get("data_samples")
        gt = ds.get("gt_instances") if ds is not None and hasattr(ds, "get") else None
        boxes = gt.bboxes if gt is not None and "bboxes" in gt else np.zeros((0, 4))
        return image_from_tensor(sample["inputs"]), _boxes(boxes)
    raise KeyError(f"ProposalVisualizationHook: a training sample with keys {sorted(sample)}; expected "
                   f"'image' (Detectron2), 'img' (MM pipeline) or 'inputs' (MMDetection 3.x).")


@HOOKS.register_module()
class ProposalVisualizationHook(Hook):
    """Draw ground truth and the top RPN proposals of a training image every ``interval`` iterations.

    Args:
        interval: iterations between pictures (Detectron2's ``VIS_PERIOD``; ``>= 1``).
        max_proposals: how many of the best-scoring proposals to draw (Detectron2 draws 20).
        image_format: channel order of Detectron2-style ``image`` tensors (``INPUT.FORMAT``).
        batch_source: where to get the iteration's batch when the loop does not pass it: Detectron2
            trainers fetch their own data in ``run_step`` (``DefaultTrainer`` passes
            ``lambda: trainer.last_batch``).
    """

    priority = Priority.NORMAL  # before the loggers (BELOW_NORMAL): the writer of this iteration sends it

    def __init__(self, interval: int, max_proposals: int = 20, image_format: str = "BGR",
                 batch_source: Callable[[], Any] | None = None) -> None:
        if isinstance(interval, bool) or int(interval) < 1:
            raise ValueError(f"ProposalVisualizationHook: interval must be >= 1 (VIS_PERIOD > 0), got "
                             f"{interval!r}; with VIS_PERIOD 0 leave the hook out.")
        if int(max_proposals) < 1:
            raise ValueError(f"ProposalVisualizationHook: max_proposals must be >= 1, got {max_proposals!r}.")
        if image_format not in ("BGR", "RGB"):
            raise ValueError(f"ProposalVisualizationHook: image_format must be 'BGR' or 'RGB', got "
                             f"{image_format!r}.")
        self.interval = int(interval)
        self.max_proposals = int(max_proposals)
        self.image_format = image_format
        self.batch_source = batch_source

    @property
    def period(self) -> DueWhen:
        """Zero-based iterations 0, interval, 2·interval, ... (Detectron2: ``iter % VIS_PERIOD == 0``)."""
        n = self.interval
        return DueWhen(lambda runner, it: it + (-it) % n, stage="after_train_iter")

    def before_train(self, runner: Any) -> None:
        """Ask the model to keep each batch's proposals; refuse a model that makes none."""
        model = runner.unwrapped_model
        if not hasattr(model, "keep_proposals"):
            raise ValueError(
                f"ProposalVisualizationHook (VIS_PERIOD) draws region proposals, and {type(model).__name__} "
                f"makes none (only two-stage detectors with an RPN do); set VIS_PERIOD 0 (or remove the hook "
                f"from custom_hooks) for this model.")
        model.keep_proposals = True

    def after_train(self, runner: Any) -> None:
        """Stop keeping proposals (the model may be used for more than this run)."""
        model = runner.unwrapped_model
        model.keep_proposals = False
        model.last_proposals = None

    def after_train_iter(self, runner: Any, batch_idx: int, data_batch: Any = None,
                         outputs: dict | None = None) -> None:
        """Draw the first image of this batch (called at the due iterations only)."""
        proposals = getattr(runner.unwrapped_model, "last_proposals", None)
        if data_batch is None and self.batch_source is not None:
            data_batch = self.batch_source()
        if not proposals or not data_batch:
            return
        picture = self.draw(data_batch[0], proposals[0][0])
        if runner.storage is not None:
            runner.storage.put_image(TAG, torch.from_numpy(picture[:, :, ::-1].copy()).permute(2, 0, 1))
        visualizer = getattr(runner, "visualizer", None)
        if visualizer is not None and hasattr(visualizer, "add_image"):
            visualizer.add_image(TAG, np.ascontiguousarray(picture[:, :, ::-1]), step=runner.iter)

    def draw(self, sample: Mapping[str, Any], proposal_boxes: Any) -> np.ndarray:
        """Ground truth (left) and the best ``max_proposals`` proposals (right), one H×2W×3 BGR image."""
        from kiln.visualization.draw import draw_boxes

        image, gt = batch_image_and_gt(sample, self.image_format)
        top = _boxes(proposal_boxes)[: self.max_proposals]  # the RPN returns them best first
        left = draw_boxes(image, gt, color=(0, 255, 0))
        right = draw_boxes(image, top, color=(255, 128, 0))
        return np.concatenate([left, right], axis=1)
