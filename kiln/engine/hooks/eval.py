"""EvalHook: run the validation loop every N epochs/iterations during training."""

from __future__ import annotations

from typing import Any

from kiln.registry import HOOKS

from .base import NEVER, Hook, Priority
from .checkpoint import BestCheckpointKeeper

__all__ = ["EvalHook"]


@HOOKS.register_module(name=["EvalHook", "DistEvalHook", "EvalHookD2"])
class EvalHook(Hook):
    """Validate periodically: MMCV's ``evaluation=dict(interval=1, metric='bbox', save_best='auto')``.

    Runs ``runner.val_loop`` (whose evaluator gathers across ranks itself). Runs before the
    checkpoint hook at the same point, so best-checkpoint and early-stop decisions see the metrics.

    Args:
        interval: epochs (``by_epoch``) or iterations between validations.
        by_epoch: default follows the runner.
        start: first epoch/iteration at which to validate (default: ``interval``).
        save_best: metric key or ``'auto'``; keeps the best checkpoint (like ``CheckpointHook``).
        rule: ``'greater'``/``'less'`` for ``save_best``.
        metric: kept for config compatibility (the evaluator decides what it computes).
    """

    priority = Priority.LOW

    def __init__(
        self,
        interval: int = 1,
        by_epoch: bool | None = None,
        start: int | None = None,
        save_best: str | None = None,
        rule: str | None = None,
        metric: Any = None,
        **eval_kwargs: Any,
    ) -> None:
        if int(interval) < 1:
            raise ValueError(f"EvalHook: interval must be >= 1, got {interval}.")
        self.interval = int(interval)
        self.by_epoch = by_epoch
        self.start = start
        self.metric = metric
        self.eval_kwargs = eval_kwargs
        self.best = BestCheckpointKeeper(save_best, rule) if save_best else None

    def before_train(self, runner: Any) -> None:
        """Resolve ``by_epoch``; check a validation loop exists."""
        if self.by_epoch is None:
            self.by_epoch = runner.by_epoch
        if runner.val_loop is None:
            raise ValueError(
                "EvalHook is registered but the runner has no val_dataloader (config: data.val and "
                "evaluation=...); add one or drop the evaluation hook."
            )

    def _due(self, n: int) -> bool:
        start = self.interval if self.start is None else self.start
        return n >= start and (n - start) % self.interval == 0

    def _evaluate(self, runner: Any) -> None:
        metrics = runner.val_loop.run()
        if self.best is not None:
            self.best.update(runner, metrics)

    def after_train_iter(
        self, runner: Any, batch_idx: int, data_batch: Any = None, outputs: dict | None = None
    ) -> None:
        """Iteration-based validation."""
        if not self.by_epoch and self._due(runner.iter + 1):
            self._evaluate(runner)

    def next_due_iter(self, runner: Any, stage: str, it: int, batch_idx: int) -> int | None:
        """Iteration-based: the next iteration whose count passes :meth:`_due`."""
        if stage != "after_train_iter" or type(self).after_train_iter is not EvalHook.after_train_iter:
            return None
        if self.by_epoch:
            return NEVER
        start = self.interval if self.start is None else self.start
        n = max(it + 1, start)  # n counts iterations from 1
        return n + (-(n - start)) % self.interval - 1

    def after_train_epoch(self, runner: Any) -> None:
        """Epoch-based validation."""
        if self.by_epoch and self._due(runner.epoch + 1):
            self._evaluate(runner)

    def state_dict(self) -> dict:
        """Best-metric state."""
        return {"best": self.best.state_dict() if self.best else None}

    def load_state_dict(self, state: dict) -> None:
        """Restore :meth:`state_dict`."""
        if self.best is not None and state.get("best"):
            self.best.load_state_dict(state["best"])
