"""EvalHook: run the validation loop every N epochs/iterations during training."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from kiln.registry import HOOKS

from .base import Hook, Priority
from .period import Every

__all__ = ["EvalHook", "flatten_results"]


@HOOKS.register_module(name=["EvalHook", "DistEvalHook", "EvalHookD2"])
class EvalHook(Hook):
    """Validate periodically: MMCV's ``evaluation=dict(interval=1, save_best='auto')``, or
    Detectron2's ``EvalHook(eval_period, eval_function)``.

    Runs ``runner.val_loop`` (whose evaluator gathers across ranks itself), or ``eval_function()``
    when given (its ``{dataset: {metric: value}}`` or flat result is flattened to ``'dataset/metric'``
    keys). Either way the metrics go to ``after_val_epoch`` hooks and ``runner.last_metrics['val']``.
    Runs before the checkpoint hook at the same point, so best-checkpoint and early-stop decisions
    see the metrics.

    Args:
        interval: epochs (``by_epoch``) or iterations between validations.
        by_epoch: default follows the runner. (Detectron2's positional
            ``EvalHook(period, eval_function)`` is accepted: a callable here is the function.)
        start: first epoch/iteration at which to validate (default: ``interval``).
        save_best: metric key or ``'auto'``: keep the best checkpoint. Handed to the runner's
            :class:`CheckpointHook` (the one best-checkpoint keeper), which must exist.
        rule: ``'greater'``/``'less'`` for ``save_best``.
        metric: kept for config compatibility (the evaluator decides what it computes).
        eval_function: ``() -> results`` to call instead of the runner's validation loop.
        eval_last: also validate after the last epoch/iteration (Detectron2 does).
    """

    priority = Priority.LOW

    def __init__(
        self,
        interval: int = 1,
        by_epoch: bool | None | Callable[[], Any] = None,
        start: int | None = None,
        save_best: str | None = None,
        rule: str | None = None,
        metric: Any = None,
        eval_function: Callable[[], Any] | None = None,
        eval_last: bool = False,
        **eval_kwargs: Any,
    ) -> None:
        if callable(by_epoch) and eval_function is None:  # Detectron2: EvalHook(eval_period, eval_function)
            eval_function, by_epoch = by_epoch, False
        if int(interval) < 1:
            raise ValueError(f"EvalHook: interval must be >= 1, got {interval}.")
        if eval_function is not None and not callable(eval_function):
            raise TypeError(f"EvalHook: eval_function must be callable, got {eval_function!r}.")
        self.interval = int(interval)
        self.by_epoch = by_epoch
        self.start = start
        self.metric = metric
        self.eval_function = eval_function
        self.eval_last = bool(eval_last)
        self.eval_kwargs = eval_kwargs
        self.save_best, self.rule = save_best, rule

    @property
    def period(self) -> Every:
        """Every ``interval`` epochs/iterations from ``start`` (default: ``interval``), and maybe the last."""
        return Every(self.interval, by_epoch=self.by_epoch, start=self.start, last=self.eval_last)

    def before_run(self, runner: Any) -> None:
        """Hand ``save_best`` to the checkpoint hook (before a resume restores its best state)."""
        if not self.save_best:
            return
        from .checkpoint import CheckpointHook

        ckpt = runner.get_hook(CheckpointHook)
        if ckpt is None:
            raise ValueError(
                f"EvalHook(save_best={self.save_best!r}) keeps the best checkpoint through the runner's "
                f"CheckpointHook, and there is none (default_hooks.checkpoint=None, or no work_dir); add "
                f"one, or pass save_best to CheckpointHook instead."
            )
        ckpt.keep_best(self.save_best, self.rule)

    def before_train(self, runner: Any) -> None:
        """Check there is something to evaluate."""
        if self.eval_function is None and runner.val_loop is None:
            raise ValueError(
                "EvalHook is registered but the runner has no val_dataloader (config: data.val and "
                "evaluation=...); add one or drop the evaluation hook."
            )

    def _evaluate(self, runner: Any) -> None:
        if self.eval_function is None:
            runner.val_loop.run()  # (calls after_val_epoch with the metrics itself)
            return
        metrics = flatten_results(self.eval_function() or {})
        runner.last_metrics["val"] = metrics
        runner.call_hook("after_val_epoch", metrics)

    def after_train_iter(
        self, runner: Any, batch_idx: int, data_batch: Any = None, outputs: dict | None = None
    ) -> None:
        """Iteration-based validation (called at the due iterations only)."""
        self._evaluate(runner)

    def after_train_epoch(self, runner: Any) -> None:
        """Epoch-based validation (called after the due epochs only)."""
        self._evaluate(runner)


def flatten_results(results: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{'ds': {'bbox': {'AP': 1}}}`` -> ``{'ds/bbox/AP': 1}`` (Detectron2's ``flatten_results_dict``)."""
    out: dict[str, Any] = {}
    for k, v in results.items():
        key = f"{prefix}/{k}" if prefix else str(k)
        if isinstance(v, Mapping):
            out.update(flatten_results(v, key))
        else:
            out[key] = v
    return out
