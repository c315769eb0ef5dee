"""Training, validation and test loops.

A loop owns the iteration order only; what happens in one step is the runner's ``train_step``
(or the model's own ``train_step``), and everything around it is a hook. The per-iteration code
is deliberately flat: hook callables are precomputed tuples, counters are locals, and nothing
converts a tensor to a Python number.
"""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Mapping
from typing import Any

import torch

from kiln.registry import LOOPS

from .data_position import is_resumable_loader, open_loader_at, position_loader
from .hooks.base import HookError, owner_of_failure
from .hooks.period import IterDispatch
from .nonfinite import NonFiniteLossError
from .preemption import PreemptStop

__all__ = [
    "EpochBasedTrainLoop",
    "IterBasedTrainLoop",
    "ValLoop",
    "TestLoop",
    "StepLoop",
    "is_resumable_loader",
    "train_loop_cfg",
    "build_loop",
]

logger = logging.getLogger(__name__)


def _hook_failure(exc: Exception, stage: str) -> HookError:
    hook = owner_of_failure(exc)
    name = type(hook).__name__ if hook is not None else "a hook"
    return HookError(f"{name} failed in {stage}: {type(exc).__name__}: {exc}")


def _check_val_schedule(val_interval: int, val_begin: int) -> tuple[int, int]:
    if isinstance(val_interval, bool) or int(val_interval) < 1:
        raise ValueError(f"train_cfg.val_interval must be >= 1, got {val_interval!r}.")
    if isinstance(val_begin, bool) or int(val_begin) < 1:
        raise ValueError(f"train_cfg.val_begin must be >= 1, got {val_begin!r}.")
    return int(val_interval), int(val_begin)


def train_loop_cfg(
    train_cfg: Mapping[str, Any] | None,
    max_epochs: int | None = None,
    max_iters: int | None = None,
    val_interval: int | None = None,
) -> dict[str, Any] | None:
    """The training loop's config: ``train_cfg`` in MMEngine's spelling, or the legacy kwargs.

    The one place where ``max_epochs=`` / ``max_iters=`` / ``val_interval=`` become a loop config,
    and where the short ``dict(by_epoch=True, max_epochs=12)`` gets its ``type``. Returns ``None``
    when there is nothing to train.

    >>> train_loop_cfg(None, max_epochs=12)
    {'type': 'EpochBasedTrainLoop', 'max_epochs': 12, 'val_interval': 1}
    >>> train_loop_cfg(dict(by_epoch=False, max_iters=100, val_interval=50))
    {'type': 'IterBasedTrainLoop', 'max_iters': 100, 'val_interval': 50}
    """
    if train_cfg is not None:
        if max_epochs is not None or max_iters is not None or val_interval is not None:
            raise ValueError(
                "Runner: give the training length either as train_cfg=dict(...) or as max_epochs=/"
                f"max_iters=/val_interval=, not both (got train_cfg={dict(train_cfg)}, max_epochs="
                f"{max_epochs}, max_iters={max_iters}, val_interval={val_interval})."
            )
        cfg = dict(train_cfg)
        by_epoch = cfg.pop("by_epoch", None)
        if "type" not in cfg:
            if by_epoch is None:
                by_epoch = "max_epochs" in cfg
            cfg = {"type": "EpochBasedTrainLoop" if by_epoch else "IterBasedTrainLoop", **cfg}
        elif by_epoch is not None and bool(by_epoch) != (cfg["type"] in ("EpochBasedTrainLoop",)):
            raise ValueError(f"train_cfg: by_epoch={by_epoch} contradicts type={cfg['type']!r}.")
        return cfg
    if max_epochs is None and max_iters is None:
        return None
    if max_epochs is not None and max_iters is not None:
        raise ValueError(
            f"Give exactly one of max_epochs / max_iters for training (got max_epochs={max_epochs}, "
            f"max_iters={max_iters}); in configs: train_cfg=dict(by_epoch=True, max_epochs=12) or "
            f"train_cfg=dict(type='IterBasedTrainLoop', max_iters=90000)."
        )
    if max_epochs is not None:
        cfg = {"type": "EpochBasedTrainLoop", "max_epochs": max_epochs}
    else:
        cfg = {"type": "IterBasedTrainLoop", "max_iters": max_iters}
    cfg["val_interval"] = 1 if val_interval is None else val_interval
    return cfg


def build_loop(cfg: Mapping[str, Any], cfg_path: str, **objects: Any) -> Any:
    """Build a loop from ``LOOPS`` by ``cfg['type']``, handing it the runner's objects as they are.

    (``LOOPS.build`` would deep-copy list-valued arguments, and a list of batches is a loader.)
    """
    args = dict(cfg)
    loop_type = args.pop("type")
    cls = LOOPS.get(loop_type) if isinstance(loop_type, str) else loop_type
    if cls is None:
        raise KeyError(LOOPS.unknown_type_message(str(loop_type), f"{cfg_path}.type"))
    clash = sorted(set(args) & set(objects))
    if clash:
        raise ValueError(f"{cfg_path}: {clash} are given by the Runner; remove them from the loop config.")
    try:
        return cls(**objects, **args)
    except TypeError as exc:
        if "argument" not in str(exc):
            raise
        raise TypeError(f"{cfg_path}={dict(cfg)}: {exc}. Check the keys against {cls.__name__}.") from exc


class _TrainLoopBase:
    """Shared plumbing of the training loops: the hot loop over one stretch of batches."""

    by_epoch = True

    def __init__(self, runner: Any, dataloader: Any, val_interval: int = 1, val_begin: int = 1) -> None:
        self.runner = runner
        self.dataloader = dataloader
        self.val_interval, self.val_begin = _check_val_schedule(val_interval, val_begin)

    def _run_iters(self, batches: Any, limit: int, step: Any = None) -> None:
        """The hot loop: run up to ``limit`` iterations from ``batches``, from ``runner.state``'s position.

        Per iteration: the due ``before_train_iter`` hooks, the step, one record
        ``(iteration, outputs, data_time, time)`` appended to ``state.records`` (``data_time``: the
        wait for the loader, from the end of the previous iteration's hooks to the batch's arrival;
        ``time``: from the end of the previous step to the end of this one, so the times add up to
        the wall time), the due ``after_train_iter`` hooks, then the counters move on. Hooks with a
        ``period`` are called only at their due iterations (:class:`IterDispatch`); the
        :class:`IterTimerHook` decides whether the timings are logged (``Runner.flush_metrics``).
        """
        runner = self.runner
        state = runner.state
        it, idx = state.iter, state.inner_iter
        bdispatch = IterDispatch(runner.stage_entries("before_train_iter"), runner, it, idx)
        before_every, bdue = bdispatch.every, bdispatch.due
        dispatch = IterDispatch(runner.stage_entries("after_train_iter"), runner, it, idx)
        after_every, due = dispatch.every, dispatch.due
        step = step or runner.make_train_step()
        storage = runner.storage
        records = state.records
        guard = runner.preemption  # set while Runner.train runs (SIGTERM/SIGINT -> stop and save)
        flush = runner.flush_metrics
        clock = time.perf_counter
        t_end = clock()
        t_step = state.last_step_end or t_end  # the previous step's end, also across epochs
        for data_batch in itertools.islice(batches, limit):
            ready = clock()
            try:
                if it >= bdue:
                    for fn in bdispatch.at(it):
                        fn(runner, idx, data_batch)
                    bdue = bdispatch.next_due(it + 1, idx + 1)
                else:
                    for fn in before_every:
                        fn(runner, idx, data_batch)
            except NonFiniteLossError:  # found at a metric flush a hook asked for: not its failure
                raise
            except Exception as exc:
                raise _hook_failure(exc, "before_train_iter") from exc
            outputs = step(data_batch)
            now = clock()
            records.append((it, outputs, ready - t_end, now - t_step))
            t_step = now
            if len(records) >= 512:  # no logger flushed them: keep the buffer bounded
                flush()
            try:
                if it >= due:
                    state.steps_done = it + 1  # a checkpoint saved by these hooks counts this step
                    for fn in dispatch.at(it):
                        fn(runner, idx, data_batch, outputs)
                    due = dispatch.next_due(it + 1, idx + 1)
                elif after_every:
                    state.steps_done = it + 1
                    for fn in after_every:
                        fn(runner, idx, data_batch, outputs)
            except NonFiniteLossError:  # found at a metric flush a hook asked for: not its failure
                raise
            except Exception as exc:
                raise _hook_failure(exc, "after_train_iter") from exc
            it += 1
            idx += 1
            state.iter = it
            state.inner_iter = idx
            storage.iter = it
            if guard is not None and guard.agreed_signal() is not None:
                state.request_stop()
            if state.stop_requested:
                break
            t_end = clock()
        state.last_step_end = t_step

    def _check_preempted(self) -> None:
        """Raise :class:`PreemptStop` when a preemption signal ended the iterations."""
        guard = self.runner.preemption
        if guard is not None and guard.signum is not None:
            raise PreemptStop(guard.signum)

    @property
    def stop_training(self) -> bool:
        """Whether a stop was requested (MMEngine hooks set ``runner.train_loop.stop_training = True``)."""
        return self.runner.state.stop_requested

    @stop_training.setter
    def stop_training(self, value: bool) -> None:
        if value:
            self.runner.state.request_stop()

    def _next_epoch(self) -> None:
        state = self.runner.state
        state.epoch += 1
        state.inner_iter = 0


@LOOPS.register_module()
class EpochBasedTrainLoop(_TrainLoopBase):
    """Train for ``max_epochs`` passes over ``dataloader``.

    Args:
        runner: the runner.
        dataloader: yields batches; ``len(dataloader)`` is the epoch length.
        max_epochs: number of epochs.
        val_begin / val_interval: validate after epochs ``val_begin, val_begin + val_interval, ...``
            (read by the default evaluation hook).
    """

    def __init__(
        self, runner: Any, dataloader: Any, max_epochs: int, val_begin: int = 1, val_interval: int = 1
    ) -> None:
        super().__init__(runner, dataloader, val_interval, val_begin)
        if int(max_epochs) < 1:
            raise ValueError(f"max_epochs must be >= 1, got {max_epochs}.")
        self.max_epochs = int(max_epochs)
        try:
            self.epoch_length = len(dataloader)
        except TypeError:
            raise ValueError(
                "Epoch-based training needs a data loader with a length; this one has none (infinite?). "
                "Use iteration-based training (max_iters=...) instead."
            ) from None
        if self.epoch_length == 0:
            raise ValueError("The training data loader is empty (0 batches per epoch); check the dataset.")
        self.max_iters = self.max_epochs * self.epoch_length

    def run(self) -> None:
        """Run the remaining epochs (resumes mid-epoch at ``runner.inner_iter``)."""
        runner, state = self.runner, self.runner.state
        runner.call_hook("before_train")
        while state.epoch < self.max_epochs and not state.stop_requested:
            self.run_epoch()
        self._check_preempted()
        runner.call_hook("after_train")

    def run_epoch(self) -> None:
        """One epoch: ``before_train_epoch``, the iterations, ``after_train_epoch``."""
        runner, state = self.runner, self.runner.state
        runner.model.train()
        runner.call_hook("before_train_epoch")
        start = state.inner_iter
        batches = open_loader_at(self.dataloader, state.epoch, start, what="EpochBasedTrainLoop")
        self._run_iters(batches, self.epoch_length - start)
        if state.inner_iter < self.epoch_length:
            self._check_preempted()  # mid-epoch: no epoch-end hooks; a finished epoch ends normally
        runner.call_hook("after_train_epoch")
        if state.inner_iter >= self.epoch_length or not state.stop_requested:
            self._next_epoch()


@LOOPS.register_module()
class IterBasedTrainLoop(_TrainLoopBase):
    """Train for ``max_iters`` iterations, cycling the loader (or reading an infinite one).

    ``runner.epoch`` counts passes over a finite loader; hooks use iterations. Resuming positions
    a kiln ``ResumableLoader`` directly (``set_start``), without replaying the stream.
    """

    by_epoch = False

    def __init__(
        self, runner: Any, dataloader: Any, max_iters: int, val_begin: int = 1, val_interval: int = 1000
    ) -> None:
        super().__init__(runner, dataloader, val_interval, val_begin)
        if int(max_iters) < 1:
            raise ValueError(f"max_iters must be >= 1, got {max_iters}.")
        self.max_iters = int(max_iters)
        self.infinite = bool(getattr(dataloader, "infinite", False))
        try:
            self.epoch_length = len(dataloader)
        except TypeError:
            self.epoch_length = None
        if self.epoch_length == 0:
            raise ValueError("The training data loader is empty (0 batches); check the dataset.")
        self.max_epochs = None

    def run(self) -> None:
        """Run until ``max_iters`` (or an early-stop request)."""
        runner, state = self.runner, self.runner.state
        runner.model.train()
        runner.call_hook("before_train")
        runner.call_hook("before_train_epoch")
        while state.iter < self.max_iters and not state.stop_requested:
            remaining = self.max_iters - state.iter
            if self.infinite or self.epoch_length is None:
                batches = open_loader_at(self.dataloader, 0, state.iter, what="IterBasedTrainLoop")
                self._run_iters(batches, remaining)
                continue
            # A finite loader: one pass per "epoch"; state.inner_iter is the position inside it.
            start = state.inner_iter
            batches = open_loader_at(self.dataloader, state.epoch, start, what="IterBasedTrainLoop")
            self._run_iters(batches, min(remaining, self.epoch_length - start))
            if state.inner_iter >= self.epoch_length:
                self._next_epoch()
        self._check_preempted()
        runner.call_hook("after_train_epoch")
        runner.call_hook("after_train")


class StepLoop(_TrainLoopBase):
    """Iterations that fetch their own data: each calls ``step_fn()`` (Detectron2's ``run_step``).

    ``step_fn`` returns a dict of scalars to log (or ``None``).
    """

    by_epoch = False

    def __init__(self, runner: Any, step_fn: Any, max_iters: int, dataloader: Any = None) -> None:
        super().__init__(runner, dataloader, val_interval=1, val_begin=1)
        self.step_fn = step_fn
        self.max_iters = int(max_iters)
        self.max_epochs = None
        self.epoch_length = None

    def run(self) -> None:
        """Run iterations ``runner.iter .. max_iters``."""
        runner = self.runner
        step_fn = self.step_fn
        runner.call_hook("before_train")
        remaining = self.max_iters - runner.iter
        self._run_iters(itertools.repeat(None), remaining, step=lambda _: step_fn() or {})
        self._check_preempted()
        runner.call_hook("after_train")


class _EvalLoop:
    """Shared body of validation and test loops."""

    kind = "val"

    def __init__(self, runner: Any, dataloader: Any, evaluator: Any = None, fp16: bool = False) -> None:
        self.runner = runner
        self.dataloader = dataloader
        self.evaluator = evaluator
        self.fp16 = fp16

    def run(self) -> dict:
        """Run the model over the loader, feed the evaluator, return its metrics."""
        runner, kind = self.runner, self.kind
        runner.flush_metrics()
        runner.call_hook(f"before_{kind}")
        runner.call_hook(f"before_{kind}_epoch")
        model = runner.model
        was_training = model.training
        model.eval()
        if self.evaluator is not None:
            self.evaluator.reset()
        before = runner.stage_callables(f"before_{kind}_iter")
        after = runner.stage_callables(f"after_{kind}_iter")
        position_loader(self.dataloader, 0, 0)  # a kiln loader may stand elsewhere after a resume
        with torch.no_grad():
            for idx, data_batch in enumerate(runner.progress(self.dataloader, kind)):
                for fn in before:
                    fn(runner, idx, data_batch)
                outputs = runner.eval_step(data_batch)
                if self.evaluator is not None:
                    self.evaluator.process(data_batch, outputs)
                for fn in after:
                    fn(runner, idx, data_batch, outputs)
        metrics = dict(self.evaluator.evaluate() or {}) if self.evaluator is not None else {}
        if was_training:
            model.train()
        storage = runner.storage
        if storage is not None and metrics:
            for k, v in metrics.items():
                if isinstance(v, (int, float)):
                    storage.put_scalar(f"{kind}/{k}" if kind == "test" else k, v, smoothing_hint=False)
        runner.call_hook(f"after_{kind}_epoch", metrics)
        runner.call_hook(f"after_{kind}")
        runner.last_metrics[kind] = metrics
        return metrics


@LOOPS.register_module()
class ValLoop(_EvalLoop):
    """Validation: run ``dataloader`` through the model in eval mode and evaluate."""

    kind = "val"


@LOOPS.register_module()
class TestLoop(_EvalLoop):
    """Test: like :class:`ValLoop`, with the ``*_test_*`` hook stages."""

    kind = "test"
