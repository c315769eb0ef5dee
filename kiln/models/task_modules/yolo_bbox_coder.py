"""``YOLOBBoxCoder``: YOLOv3's box parametrisation (centre offset within the cell, log size ratio)."""

from __future__ import annotations

import torch

from kiln.registry import TASK_UTILS

__all__ = ["YOLOBBoxCoder"]


@TASK_UTILS.register_module()
class YOLOBBoxCoder:
    """Encode a ground-truth box against an anchor of a grid with cell size ``stride``.

    ``tx = (gx - ax) / stride + 0.5`` (the centre's position inside the anchor's cell, in ``(0, 1)``: the
    network predicts it through a sigmoid), ``tw = log(gw / aw)``; the centre targets are clamped to
    ``[eps, 1 - eps]`` and the size ratio to ``>= eps``. Decoding expects the centre already passed
    through the sigmoid (as YOLOV3Head does) and the sizes raw.

    Example::

        >>> c = YOLOBBoxCoder()
        >>> anchor = torch.tensor([[0., 0., 32., 32.]]); gt = torch.tensor([[4., 8., 36., 24.]])
        >>> c.encode(anchor, gt, 32)
        tensor([[ 0.6250,  0.5000,  0.0000, -0.6931]])
        >>> torch.allclose(c.decode(anchor, c.encode(anchor, gt, 32), 32), gt)
        True
    """

    def __init__(self, eps: float = 1e-6, use_box_type: bool = False) -> None:
        if use_box_type:
            raise ValueError("YOLOBBoxCoder(use_box_type=True): kiln's boxes are plain XYXY tensors.")
        self.eps = float(eps)

    encode_size = 4

    def encode(
        self, bboxes: torch.Tensor, gt_bboxes: torch.Tensor, stride: torch.Tensor | float
    ) -> torch.Tensor:
        """Targets (N×4) for ``gt_bboxes`` against anchors ``bboxes`` on grids of cell size ``stride``."""
        if bboxes.shape != gt_bboxes.shape or bboxes.shape[-1] != 4:
            raise ValueError(
                f"YOLOBBoxCoder.encode: bboxes {tuple(bboxes.shape)} and gt_bboxes {tuple(gt_bboxes.shape)} "
                "must both be N×4."
            )
        if isinstance(stride, torch.Tensor) and stride.dim() == bboxes.dim():
            stride = stride[..., 0]
        gc = (gt_bboxes[..., :2] + gt_bboxes[..., 2:]) * 0.5
        gwh = gt_bboxes[..., 2:] - gt_bboxes[..., :2]
        ac = (bboxes[..., :2] + bboxes[..., 2:]) * 0.5
        awh = bboxes[..., 2:] - bboxes[..., :2]
        stride_t = torch.as_tensor(stride, dtype=gc.dtype, device=gc.device)
        if stride_t.dim():
            stride_t = stride_t[..., None]
        xy = ((gc - ac) / stride_t + 0.5).clamp(self.eps, 1 - self.eps)
        wh = torch.log((gwh / awh).clamp(min=self.eps))
        return torch.cat([xy, wh], dim=-1)

    def decode(
        self, bboxes: torch.Tensor, pred_bboxes: torch.Tensor, stride: torch.Tensor | float
    ) -> torch.Tensor:
        """Boxes (…×4 XYXY) from predictions: sigmoid-ed centre offsets and raw log sizes."""
        stride_t = torch.as_tensor(stride, dtype=pred_bboxes.dtype, device=pred_bboxes.device)
        if stride_t.dim() and stride_t.shape[-1] != 1:
            stride_t = stride_t[..., None]
        centre = (bboxes[..., :2] + bboxes[..., 2:]) * 0.5 + (pred_bboxes[..., :2] - 0.5) * stride_t
        half = (bboxes[..., 2:] - bboxes[..., :2]) * 0.5 * pred_bboxes[..., 2:].exp()
        return torch.cat([centre - half, centre + half], dim=-1)
