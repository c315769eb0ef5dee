"""Small built-in hooks: schedules, optimizer options, sampler seeding, cache, NaN checks, early stop."""

from __future__ import annotations

import logging
from typing import Any

import torch

from kiln.registry import HOOKS

from ..nonfinite import NonFiniteLossError, nonfinite_message
from ..plateau import MetricSchedulers
from .base import Hook, Priority
from .period import DueWhen, Every

__all__ = [
    "ParamSchedulerHook",
    "OptimizerHook",
    "DistSamplerSeedHook",
    "EmptyCacheHook",
    "CheckInvalidLossHook",
    "EarlyStoppingHook",
]

logger = logging.getLogger(__name__)


def _next_schedule_update(runner: Any, it: int) -> float:
    """The first iteration ``>= it`` at which the runner's schedules change a value."""
    return runner.schedule_set.next_update(it)


@HOOKS.register_module(name=["ParamSchedulerHook", "LrUpdaterHook", "LRScheduler", "MomentumUpdaterHook"])
class ParamSchedulerHook(Hook):
    """Apply the runner's schedules before each iteration; step torch schedulers after it.

    kiln schedules are closed-form in the iteration (see :mod:`kiln.engine.schedulers`), so this
    sets the value for ``runner.iter`` directly, and skips work while the value cannot change.
    Metric-driven schedulers (``ReduceOnPlateauLR``, torch's ``ReduceLROnPlateau``; see
    :mod:`kiln.engine.plateau`) are stepped after each validation, or at epoch ends with a
    logged training metric, instead.
    """

    priority = Priority.LOW

    def __init__(self) -> None:
        self._metric: MetricSchedulers | None = None
        self._training = False

    def _metric_schedulers(self, runner: Any) -> MetricSchedulers:
        if self._metric is None:
            self._metric = MetricSchedulers(runner)
            self._metric.resolve(runner)
        return self._metric

    def before_run(self, runner: Any) -> None:
        """Forget the previous run's view of the schedulers."""
        self._metric = None

    def before_train_iter(self, runner: Any, batch_idx: int, data_batch: Any = None) -> None:
        """Set lr/momentum for this iteration."""
        s = runner.schedule_set
        if s is not None:
            s.apply(runner.iter)

    #: ``before_train_iter`` only where a kiln schedule changes a value (closed form: known ahead).
    period = DueWhen(_next_schedule_update, stage="before_train_iter")

    def active_stages(self, runner: Any) -> list[str]:
        """Only the stages with something to schedule in this run."""
        metric = self._metric_schedulers(runner)
        stages = ["before_run"]
        if runner.schedule_set is not None:
            stages.append("before_train_iter")
        if metric.per_iteration:
            stages.append("after_train_iter")
        more = metric.stages()
        return stages + (["before_train", "after_train", *more] if more else [])

    def after_train_iter(
        self, runner: Any, batch_idx: int, data_batch: Any = None, outputs: dict | None = None
    ) -> None:
        """Step torch LR schedulers once per iteration (Detectron2's convention)."""
        for s in self._metric_schedulers(runner).per_iteration:
            s.step()

    def before_train(self, runner: Any) -> None:
        """Validations from now on are training's: they step validation-driven schedulers."""
        self._training = True

    def after_train(self, runner: Any) -> None:
        """Validations after training (``runner.val()``) leave the schedulers alone."""
        self._training = False

    def after_val_epoch(self, runner: Any, metrics: dict | None = None) -> None:
        """Step validation-driven schedulers (during training only)."""
        if self._training:
            self._metric_schedulers(runner).after_val(runner, metrics)

    def after_train_epoch(self, runner: Any) -> None:
        """Step schedulers watching a logged training metric."""
        self._metric_schedulers(runner).after_train_epoch(runner)


@HOOKS.register_module(name=["OptimizerHook", "Fp16OptimizerHook"])
class OptimizerHook(Hook):
    """MMCV's ``optimizer_config`` as a hook: sets gradient clipping on the runner's optimizer wrapper.

    The step itself happens in the runner's train step; this hook only configures it.
    """

    priority = Priority.ABOVE_NORMAL

    def __init__(self, grad_clip: dict | None = None, **kwargs: Any) -> None:
        self.grad_clip = grad_clip

    def before_run(self, runner: Any) -> None:
        """Configure clipping on the wrapper."""
        if self.grad_clip and runner.optim_wrapper is not None:
            runner.optim_wrapper.set_clip_grad(self.grad_clip)


@HOOKS.register_module()
class DistSamplerSeedHook(Hook):
    """Tell samplers which epoch it is (plain torch loaders with a ``DistributedSampler``).

    kiln's resumable loaders are positioned by the loop already; this covers other loaders.
    """

    priority = Priority.NORMAL

    def before_train_epoch(self, runner: Any) -> None:
        """``sampler.set_epoch(runner.epoch)`` (or ``batch_sampler.sampler``)."""
        loader = runner.train_dataloader
        if loader is None or hasattr(loader, "set_start"):
            return
        for holder in (
            getattr(loader, "sampler", None),
            getattr(getattr(loader, "batch_sampler", None), "sampler", None),
        ):
            if holder is not None and hasattr(holder, "set_epoch"):
                holder.set_epoch(runner.epoch)
                return


@HOOKS.register_module()
class EmptyCacheHook(Hook):
    """Release cached CUDA memory at chosen points (``before_epoch``, ``after_epoch``, ``after_iter``)."""

    priority = Priority.NORMAL

    def __init__(
        self, before_epoch: bool = False, after_epoch: bool = True, after_iter: bool = False
    ) -> None:
        self._before_epoch, self._after_epoch, self._after_iter = before_epoch, after_epoch, after_iter

    @staticmethod
    def _empty() -> None:
        if torch.cuda.is_available():
            torch.cuda.empty_cache()

    def overridden_stages(self) -> list[str]:
        """Only the stages switched on."""
        out = []
        if self._before_epoch:
            out.append("before_train_epoch")
        if self._after_iter:
            out.append("after_train_iter")
        if self._after_epoch:
            out += ["after_train_epoch", "after_val_epoch"]
        return out

    def before_train_epoch(self, runner: Any) -> None:
        """Empty the cache."""
        self._empty()

    def after_train_epoch(self, runner: Any) -> None:
        """Empty the cache."""
        self._empty()

    def after_val_epoch(self, runner: Any, metrics: dict | None = None) -> None:
        """Empty the cache."""
        self._empty()

    def after_train_iter(
        self, runner: Any, batch_idx: int, data_batch: Any = None, outputs: dict | None = None
    ) -> None:
        """Empty the cache."""
        self._empty()


@HOOKS.register_module(name=["CheckInvalidLossHook", "NaNDetectionHook"])
class CheckInvalidLossHook(Hook):
    """Check the loss every ``interval`` iterations and stop at the very iteration it is NaN/Inf.

    Training already stops at a non-finite loss without this hook (``optim_wrapper.nonfinite_loss``,
    checked for free at the next metric flush; see :mod:`kiln.engine.nonfinite`); this hook stops at
    the iteration itself, at the cost of a device sync per check. The error is the same
    :class:`~kiln.engine.nonfinite.NonFiniteLossError` (iterations and epochs 1-based).

    Args:
        interval: check every N iterations (each check syncs the device once).
        skip: instead of raising, log a warning and continue (the bad step was already applied; to
            not apply it, use ``optim_wrapper=dict(..., nonfinite_loss='skip')``).
    """

    priority = Priority.VERY_HIGH

    def __init__(self, interval: int = 1, skip: bool = False) -> None:
        self.interval = max(1, int(interval))
        self.skip = skip
        self.skipped = 0

    @property
    def period(self) -> Every:
        """Every ``interval`` iterations."""
        return Every(self.interval, by_epoch=False)

    def after_train_iter(
        self, runner: Any, batch_idx: int, data_batch: Any = None, outputs: dict | None = None
    ) -> None:
        """Check ``outputs['loss']`` (at the due iterations only)."""
        if outputs is None:
            return
        loss = outputs.get("loss")
        if loss is None or bool(torch.isfinite(torch.as_tensor(loss)).all()):
            return
        terms = {
            k: float(v.detach())
            for k, v in outputs.items()
            if isinstance(v, torch.Tensor) and v.numel() == 1 and "loss" in k
        }
        msg = nonfinite_message(runner.iter + 1, runner.epoch + 1 if runner.by_epoch else None, terms)
        if self.skip:
            self.skipped += 1
            logger.warning("%s (CheckInvalidLossHook(skip=True): continuing; %d so far)", msg, self.skipped)
            return
        raise NonFiniteLossError(msg)


@HOOKS.register_module()
class EarlyStoppingHook(Hook):
    """Stop training when a validation metric stops improving.

    Args:
        monitor: the metric key (e.g. ``'bbox/AP'``).
        rule: ``'greater'`` or ``'less'`` (inferred from the name when ``None``).
        min_delta: smallest change counted as an improvement.
        patience: validations without improvement before stopping.
        strict: fail when ``monitor`` is missing from the metrics (else warn and ignore).
    """

    priority = Priority.LOWEST

    def __init__(
        self,
        monitor: str,
        rule: str | None = None,
        min_delta: float = 0.0,
        patience: int = 5,
        strict: bool = False,
        stopping_threshold: float | None = None,
    ) -> None:
        self.monitor = monitor
        self.rule = rule
        self.min_delta = abs(float(min_delta))
        self.patience = int(patience)
        self.strict = strict
        self.stopping_threshold = stopping_threshold
        self.best: float | None = None
        self.wait = 0

    def after_val_epoch(self, runner: Any, metrics: dict | None = None) -> None:
        """Count validations without improvement; request a stop after ``patience``."""
        metrics = metrics or {}
        if self.monitor not in metrics:
            if self.strict:
                raise KeyError(
                    f"EarlyStoppingHook: monitor '{self.monitor}' not in metrics {sorted(metrics)}."
                )
            logger.warning(
                "EarlyStoppingHook: '%s' not in metrics %s; ignored.", self.monitor, sorted(metrics)
            )
            return
        if self.rule is None:
            from .checkpoint import infer_rule

            self.rule = infer_rule(self.monitor)
        value = float(metrics[self.monitor])
        sign = 1.0 if self.rule == "greater" else -1.0
        if self.stopping_threshold is not None and sign * (value - self.stopping_threshold) >= 0:
            logger.info("EarlyStoppingHook: %s reached %s; stopping.", self.monitor, self.stopping_threshold)
            runner.request_stop()
            return
        if self.best is None or sign * (value - self.best) > self.min_delta:
            self.best = value
            self.wait = 0
            return
        self.wait += 1
        if self.wait >= self.patience:
            logger.info(
                "EarlyStoppingHook: %s did not improve for %d validations (best %.4f); stopping.",
                self.monitor,
                self.wait,
                self.best,
            )
            runner.request_stop()

    def state_dict(self) -> dict:
        """Best value and patience counter."""
        return {"best": self.best, "wait": self.wait, "rule": self.rule}

    def load_state_dict(self, state: dict) -> None:
        """Restore :meth:`state_dict`."""
        self.best, self.wait, self.rule = state.get("best"), int(state.get("wait", 0)), state.get("rule")
