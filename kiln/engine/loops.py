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
from typing import Any

import torch

from kiln.registry import LOOPS

from .hooks.base import HookError, IterDispatch, owner_of_failure
from .nonfinite import NonFiniteLossError

__all__ = [
    "EpochBasedTrainLoop",
    "IterBasedTrainLoop",
    "ValLoop",
    "TestLoop",
    "StepLoop",
    "is_resumable_loader",
]

logger = logging.getLogger(__name__)


def is_resumable_loader(loader: Any) -> bool:
    """Whether ``loader`` can be positioned without replaying batches (kiln's ResumableLoader contract)."""
    return all(hasattr(loader, a) for a in ("set_epoch", "set_start", "state_dict", "load_state_dict"))


def _hook_failure(exc: Exception, stage: str) -> HookError:
    hook = owner_of_failure(exc)
    name = type(hook).__name__ if hook is not None else "a hook"
    return HookError(f"{name} failed in {stage}: {type(exc).__name__}: {exc}")


def _position_loader(loader: Any, epoch: int, start: int, what: str) -> Any:
    """Return an iterator over ``loader`` starting at batch ``start`` of ``epoch``."""
    if is_resumable_loader(loader):
        loader.set_epoch(epoch)
        loader.set_start(start)
        return iter(loader)
    if hasattr(loader, "sampler") and hasattr(loader.sampler, "set_epoch"):
        loader.sampler.set_epoch(epoch)
    it = iter(loader)
    if start:
        logger.warning(
            "%s: the data loader (%s) cannot be positioned, so resuming replays and skips %d batches. "
            "Use kiln.data.build_train_loader for an exact, replay-free resume.",
            what,
            type(loader).__name__,
            start,
        )
        for _ in range(start):
            next(it)
    return it


class _TrainLoopBase:
    """Shared plumbing of the two training loops."""

    by_epoch = True

    def __init__(self, runner: Any, dataloader: Any) -> None:
        self.runner = runner
        self.dataloader = dataloader

    def _run_iters(self, batches: Any, first_idx: int, limit: int, step: Any = None) -> None:
        """The hot loop: run up to ``limit`` iterations from ``batches``.

        Besides calling the step and the hooks, each iteration appends one record to the runner's
        metric buffer: ``(iteration, outputs, data_time, time)``, where ``data_time`` is the wait for
        the loader (from the end of the previous iteration's hooks to the batch's arrival) and
        ``time`` runs from the end of the previous step to the end of this one (so the times add up
        to the training's wall time). Three clock reads and a tuple; the :class:`IterTimerHook`
        decides whether they are logged (see :meth:`Runner.flush_metrics`).
        """
        runner = self.runner
        stages = runner._stages
        it = runner.iter
        idx = first_idx
        # Periodic hooks (logger, checkpoint, eval, lr schedule) are called only when due.
        bdispatch = IterDispatch(stages["before_train_iter"], runner, "before_train_iter", it, idx)
        before_all, before_every, bdue = bdispatch.all, bdispatch.every, bdispatch.due
        dispatch = IterDispatch(stages["after_train_iter"], runner, "after_train_iter", it, idx)
        after_all, after_every, due = dispatch.all, dispatch.every, dispatch.due
        step = step or runner.make_train_step()
        storage = runner.storage
        pending = runner._pending_metrics
        clock = time.perf_counter
        t_end = clock()
        # The previous step's end, also across epochs (epoch-end hooks count in the next `time`).
        t_step = runner._last_step_end or t_end
        for data_batch in itertools.islice(batches, limit):
            ready = clock()
            try:
                if it >= bdue:
                    for fn in before_all:
                        fn(runner, idx, data_batch)
                    bdue = bdispatch.next_due(runner, it + 1, idx + 1)
                elif before_every:
                    for fn in before_every:
                        fn(runner, idx, data_batch)
            except NonFiniteLossError:  # found at a metric flush a hook asked for: not its failure
                raise
            except Exception as exc:
                raise _hook_failure(exc, "before_train_iter") from exc
            outputs = step(data_batch)
            now = clock()
            pending.append((it, outputs, ready - t_end, now - t_step))
            t_step = now
            if len(pending) >= 512:  # no logger flushed them: keep the buffer bounded
                runner.flush_metrics()
            try:
                if it >= due:
                    runner._done = (it + 1, idx + 1)  # a checkpoint saved by a hook counts this step
                    for fn in after_all:
                        fn(runner, idx, data_batch, outputs)
                    due = dispatch.next_due(runner, it + 1, idx + 1)
                elif after_every:
                    runner._done = (it + 1, idx + 1)
                    for fn in after_every:
                        fn(runner, idx, data_batch, outputs)
            except NonFiniteLossError:  # found at a metric flush a hook asked for: not its failure
                raise
            except Exception as exc:
                raise _hook_failure(exc, "after_train_iter") from exc
            it += 1
            idx += 1
            runner.iter = it
            runner.inner_iter = idx
            storage._iter = it
            if runner.stop_training:
                break
            t_end = clock()
        runner._last_step_end = t_step


@LOOPS.register_module()
class EpochBasedTrainLoop(_TrainLoopBase):
    """Train for ``max_epochs`` passes over ``dataloader``.

    Args:
        runner: the runner.
        dataloader: yields batches; ``len(dataloader)`` is the epoch length.
        max_epochs: number of epochs.
    """

    def __init__(self, runner: Any, dataloader: Any, max_epochs: int) -> None:
        super().__init__(runner, dataloader)
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
        runner = self.runner
        runner.call_hook("before_train")
        while runner.epoch < self.max_epochs and not runner.stop_training:
            self.run_epoch()
        runner.call_hook("after_train")

    def run_epoch(self) -> None:
        """One epoch: ``before_train_epoch``, the iterations, ``after_train_epoch``."""
        runner = self.runner
        runner.model.train()
        runner.call_hook("before_train_epoch")
        start = runner.inner_iter
        batches = _position_loader(self.dataloader, runner.epoch, start, "EpochBasedTrainLoop")
        self._run_iters(batches, start, self.epoch_length - start)
        runner.call_hook("after_train_epoch")
        if runner.inner_iter >= self.epoch_length or not runner.stop_training:
            runner.epoch += 1
            runner.inner_iter = 0


@LOOPS.register_module()
class IterBasedTrainLoop(_TrainLoopBase):
    """Train for ``max_iters`` iterations, cycling the loader (or reading an infinite one).

    ``runner.epoch`` counts passes over a finite loader; hooks use iterations. Resuming positions
    a kiln ``ResumableLoader`` directly (``set_start``), without replaying the stream.
    """

    by_epoch = False

    def __init__(self, runner: Any, dataloader: Any, max_iters: int) -> None:
        super().__init__(runner, dataloader)
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
        runner = self.runner
        runner.model.train()
        runner.call_hook("before_train")
        runner.call_hook("before_train_epoch")
        while runner.iter < self.max_iters and not runner.stop_training:
            remaining = self.max_iters - runner.iter
            if self.infinite or self.epoch_length is None:
                batches = self._open_infinite()
                self._run_iters(batches, runner.iter, remaining)
                continue
            # A finite loader: one pass per "epoch"; runner.inner_iter is the position inside it.
            start = runner.inner_iter
            batches = _position_loader(self.dataloader, runner.epoch, start, "IterBasedTrainLoop")
            self._run_iters(batches, start, min(remaining, self.epoch_length - start))
            if runner.inner_iter >= self.epoch_length:
                runner.epoch += 1
                runner.inner_iter = 0
        runner.call_hook("after_train_epoch")
        runner.call_hook("after_train")

    def _open_infinite(self) -> Any:
        loader = self.dataloader
        it0 = self.runner.iter
        if is_resumable_loader(loader):
            loader.set_epoch(0)
            loader.set_start(it0)
            return iter(loader)
        it = iter(loader)
        if it0:
            logger.warning(
                "IterBasedTrainLoop: the infinite loader cannot be positioned; skipping %d batches.", it0
            )
            for _ in range(it0):
                next(it)
        return it


class StepLoop(_TrainLoopBase):
    """Iterations that fetch their own data: each calls ``step_fn()`` (Detectron2's ``run_step``).

    ``step_fn`` returns a dict of scalars to log (or ``None``).
    """

    by_epoch = False

    def __init__(self, runner: Any, step_fn: Any, max_iters: int, dataloader: Any = None) -> None:
        super().__init__(runner, dataloader)
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
        self._run_iters(itertools.repeat(None), runner.iter, remaining, step=lambda _: step_fn() or {})
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
        before = runner._stages[f"before_{kind}_iter"]
        after = runner._stages[f"after_{kind}_iter"]
        if is_resumable_loader(self.dataloader):
            self.dataloader.set_epoch(0)
            self.dataloader.set_start(0)
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
