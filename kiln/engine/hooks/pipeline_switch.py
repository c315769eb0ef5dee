"""``PipelineSwitchHook``: change the training augmentation from a given epoch on (MMDetection's hook)."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from kiln.registry import HOOKS

from .base import Hook, Priority

__all__ = ["PipelineSwitchHook"]

logger = logging.getLogger(__name__)


@HOOKS.register_module()
class PipelineSwitchHook(Hook):
    """Train the epochs from ``switch_epoch`` on with ``switch_pipeline`` (e.g. without Mosaic).

    MMDetection's semantics: ``switch_epoch`` counts epochs from 0, so the first ``switch_epoch``
    epochs use the dataset's own pipeline and the rest (epoch ``switch_epoch + 1`` onwards, as the
    console and the checkpoint files number them) the new one; YOLOX-style configs write
    ``switch_epoch=max_epochs - num_last_epochs``. The switch is decided from the epoch alone, so a
    resumed run switches (or is switched) exactly where an uninterrupted one does, and with kiln's
    resumable loader it sees the same samples (see :mod:`kiln.data.pipeline_switch`).

    Args:
        switch_epoch: 0-based index of the first epoch with the new pipeline (``0``: from the start).
        switch_pipeline: transform configs (or callables), built at construction so mistakes show early.

    Example::

        custom_hooks = [
            dict(type='PipelineSwitchHook', switch_epoch=285, switch_pipeline=train_pipeline_stage2),
        ]
    """

    priority = Priority.NORMAL

    def __init__(self, switch_epoch: int, switch_pipeline: Sequence[Mapping | Any]) -> None:
        if isinstance(switch_epoch, bool) or not isinstance(switch_epoch, int) or switch_epoch < 0:
            raise ValueError(
                f"PipelineSwitchHook: switch_epoch must be an int >= 0 (the 0-based epoch from which the new "
                f"pipeline is used), got {switch_epoch!r}."
            )
        if (
            isinstance(switch_pipeline, (str, Mapping))
            or not isinstance(switch_pipeline, Sequence)
            or not switch_pipeline
        ):
            raise ValueError(
                f"PipelineSwitchHook: switch_pipeline must be a non-empty list of transform configs, got "
                f"{switch_pipeline!r}."
            )
        from kiln.data.transforms import Compose

        self.switch_epoch = switch_epoch
        self.switch_pipeline = list(switch_pipeline)
        self._pipeline = Compose(self.switch_pipeline, cfg_path="PipelineSwitchHook.switch_pipeline")
        self._switched = False

    def before_train(self, runner: Any) -> None:
        """Refuse runs in which the switch cannot happen as asked."""
        from kiln.data.pipeline_switch import require_pipeline

        if not runner.by_epoch:
            raise ValueError(
                "PipelineSwitchHook switches at an epoch boundary, but this run is iteration-based "
                "(train_cfg=dict(type='IterBasedTrainLoop')); use epoch-based training for it."
            )
        if runner.max_epochs is not None and self.switch_epoch >= runner.max_epochs:
            raise ValueError(
                f"PipelineSwitchHook: switch_epoch={self.switch_epoch} but training has only "
                f"{runner.max_epochs} epochs (0-based 0..{runner.max_epochs - 1}), so the pipeline would "
                f"never switch; use switch_epoch < max_epochs, e.g. max_epochs - 15 for the last 15 epochs."
            )
        require_pipeline(runner.train_dataloader)

    def before_train_epoch(self, runner: Any) -> None:
        """Switch once the epoch about to run is ``switch_epoch`` or later."""
        if self._switched or runner.epoch < self.switch_epoch:
            return
        from kiln.data.pipeline_switch import switch_pipeline

        switch_pipeline(runner.train_dataloader, self._pipeline)
        self._switched = True
        logger.info("PipelineSwitchHook: epoch %d on uses the switched training pipeline.", runner.epoch + 1)
