"""IterTimerHook: per-iteration wall time and data-loading time."""

from __future__ import annotations

import time
from typing import Any

from kiln.registry import HOOKS

from .base import Hook, Priority

__all__ = ["IterTimerHook", "IterationTimer"]

_clock = time.perf_counter


@HOOKS.register_module(name=["IterTimerHook", "IterationTimer"])
class IterTimerHook(Hook):
    """Record ``data_time`` (waiting for the batch) and ``time`` (the whole iteration) per iteration.

    ``time`` runs from the end of the previous iteration to the end of this one; ``data_time`` is
    the part of it spent waiting for the loader (the loop stamps ``runner.batch_ready_time`` when a
    batch arrives). A step that measures its own ``data_time`` (Detectron2's ``run_step``) keeps
    it. The values ride along in the step's outputs and reach the event storage when the logger
    flushes, so timing costs one hook call and two clock reads per iteration.
    """

    priority = Priority.NORMAL

    def __init__(self) -> None:
        self._t_end = 0.0

    def before_train_epoch(self, runner: Any) -> None:
        """Start the clock (the first wait for data counts as data time)."""
        self._t_end = time.perf_counter()

    def after_train_iter(
        self, runner: Any, batch_idx: int, data_batch: Any = None, outputs: dict | None = None
    ) -> None:
        """Attach ``time`` and ``data_time`` to the outputs buffered for the storage."""
        now = _clock()
        t_end = self._t_end
        self._t_end = now
        if outputs is not None:
            outputs["time"] = now - t_end
            if "data_time" not in outputs:
                ready = runner.batch_ready_time
                if ready is not None:
                    outputs["data_time"] = ready - t_end

    def before_val_epoch(self, runner: Any) -> None:
        """Restart the clock for a validation pass."""
        self._t_end = time.perf_counter()

    def after_val(self, runner: Any) -> None:
        """Training resumes after validation: don't count validation as data time."""
        self._t_end = time.perf_counter()


IterationTimer = IterTimerHook
