"""Fast R-CNN (Girshick 2015): a two-stage detector whose proposals come precomputed with the data."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from kiln.registry import MODELS

from .base import DetInputs
from .two_stage import TwoStageDetector

__all__ = ["FastRCNN"]


@MODELS.register_module()
class FastRCNN(TwoStageDetector):
    """Backbone + neck + RoI head on proposals read from a file (MMDetection's ``FastRCNN``, Detectron2's
    ``PROPOSAL_GENERATOR.NAME: PrecomputedProposals`` with ``LOAD_PROPOSALS: True``).

    The dataset takes ``proposal_file=...`` and the pipeline ``LoadProposals`` (see
    :mod:`kiln.data.transforms.pipelines_proposals`); each image's proposals reach the model in its batch
    (MM form ``proposals``, 3.x ``data_samples.proposals``, Detectron2 form ``proposals``), in input-image
    pixels, and go straight to the RoI head. ``train_cfg=dict(rcnn=...)``, ``test_cfg=dict(rcnn=...)``; the
    other arguments are :class:`TwoStageDetector`'s. Train mode returns the RoI head's ``loss_cls``,
    ``loss_bbox`` (and the logged ``acc``); eval mode detections in original-image pixels.
    """

    def _build_rpn_head(self, rpn_head: Mapping[str, Any] | None, train_cfg: Any, test_cfg: Any) -> None:
        if rpn_head is not None:
            raise ValueError(
                "FastRCNN reads precomputed proposals and has no rpn_head; remove model.rpn_head "
                "(or use type='FasterRCNN' to learn proposals)."
            )
        self.rpn_proposal_cfg = None
        return None

    def _batch_proposals(self, inputs: DetInputs) -> list[torch.Tensor]:
        if len(inputs.proposals) != len(inputs.metas):
            raise KeyError(
                f"FastRCNN: the batch carries proposals for {len(inputs.proposals)} of {len(inputs.metas)} "
                "images. Give the dataset proposal_file=..., put dict(type='LoadProposals', "
                "num_max_proposals=N) in the pipeline (MMDetection 3.x: wrap the geometric steps in "
                "ProposalBroadcaster) and keep 'proposals' in 2.x Collect keys."
            )
        return list(inputs.proposals)

    def train_proposals(
        self, feats: tuple[torch.Tensor, ...], inputs: DetInputs
    ) -> tuple[list[torch.Tensor], dict[str, torch.Tensor]]:
        """The batch's precomputed proposals; no proposal losses."""
        return self._batch_proposals(inputs), {}

    def test_proposals(self, feats: tuple[torch.Tensor, ...], inputs: DetInputs) -> list[torch.Tensor]:
        """The batch's precomputed proposals."""
        return self._batch_proposals(inputs)
