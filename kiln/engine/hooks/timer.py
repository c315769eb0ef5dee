"""IterTimerHook: log per-iteration wall time and data-loading time."""

from __future__ import annotations

from typing import Any

from kiln.registry import HOOKS

from .base import Hook, Priority

__all__ = ["IterTimerHook", "IterationTimer"]


@HOOKS.register_module(name=["IterTimerHook", "IterationTimer"])
class IterTimerHook(Hook):
    """Log ``data_time`` and ``time`` for every training iteration.

    * ``data_time``: the wait for the loader, from the end of the previous iteration (after all
      its hooks) to the batch's arrival.
    * ``time``: from the end of the previous step to the end of this one: the previous
      iteration's ``after_train_iter`` hooks (writing logs, saving checkpoints, validating) and
      epoch-end hooks, ``data_time``, the ``before_train_iter`` hooks and the step. The times of a
      run add up to its wall time, so the ETA (mean ``time`` times iterations left) counts the
      recurring slow iterations.

    The training loop takes these clock readings for every iteration anyway (three
    ``perf_counter`` calls kept in the metric buffer); this hook decides that they are logged, so
    timing costs no hook call per iteration. A step that measures its own ``data_time``
    (Detectron2's ``run_step``) keeps it. Without this hook (``default_hooks=dict(timer=None)``)
    neither value is logged.
    """

    priority = Priority.NORMAL

    def before_train(self, runner: Any) -> None:
        """Ask the runner to log the loop's iteration timings."""
        runner.log_iter_times = True


IterationTimer = IterTimerHook
