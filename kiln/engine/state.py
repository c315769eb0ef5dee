"""RunState: where a training run stands, in one object the loop owns.

The training loop is the only writer of the counters; hooks and users read them (also through
``runner.epoch`` / ``runner.iter`` / ``runner.inner_iter``) and ask for a stop with
:meth:`RunState.request_stop` (``runner.request_stop()``). A resume restores the position with
:meth:`RunState.restore`. Like ignite's ``engine.state``: one obvious place for run state.
"""

from __future__ import annotations

from typing import Any

__all__ = ["RunState"]


class RunState:
    """The counters, stop request, step-done marker, timing mark and metric buffer of one run.

    Attributes:
        epoch: the current epoch (0-based; epochs completed so far).
        iter: the current iteration (0-based; iterations completed so far). Inside
            ``after_train_iter`` it is still the iteration just run, as in MMEngine.
        inner_iter: the current iteration's place in its epoch (batches of the epoch done so far).
        steps_done: iterations whose step has finished; one more than ``iter`` while
            ``after_train_iter`` hooks run (a checkpoint saved there counts the step just taken).
            The loop sets it only when it calls such hooks; :attr:`step_done` tells.
        stop_requested: set by :meth:`request_stop`; the loop ends after the current iteration.
        last_step_end: ``perf_counter()`` at the end of the last step (``time`` of the next one
            runs from there, across epoch ends), ``None`` before the first.
        records: the loop's per-iteration ``(iteration, outputs, data_time, time)`` records,
            moved into the event storage in bulk by ``Runner.flush_metrics``.
    """

    __slots__ = ("epoch", "iter", "inner_iter", "steps_done", "stop_requested", "last_step_end", "records")

    def __init__(self) -> None:
        self.epoch = 0
        self.iter = 0
        self.inner_iter = 0
        self.steps_done = 0
        self.stop_requested = False
        self.last_step_end: float | None = None
        self.records: list[tuple[int, Any, float, float]] = []

    def request_stop(self) -> None:
        """End training after the current iteration (epoch-end and ``after_train`` hooks still run)."""
        self.stop_requested = True

    def restore(self, epoch: int = 0, iter: int = 0, inner_iter: int = 0) -> None:  # noqa: A002
        """Set the position a run starts from (a resume, or Detectron2's ``train(start_iter, ...)``)."""
        self.epoch, self.iter, self.inner_iter = int(epoch), int(iter), int(inner_iter)
        self.steps_done = self.iter

    @property
    def step_done(self) -> bool:
        """Whether the current iteration's step has finished (inside ``after_train_iter``)."""
        return self.steps_done > self.iter

    def position(self, epoch_length: int | None) -> tuple[int, int, int]:
        """``(epoch, batches done in it, iterations done)`` to resume from, normalized at epoch ends.

        Inside ``after_train_iter`` the step just taken counts (a checkpoint saved there resumes
        at the next batch).
        """
        epoch, inner, it = self.epoch, self.inner_iter, self.iter
        if self.steps_done > it:
            it, inner = it + 1, inner + 1
        if epoch_length and inner >= epoch_length:
            epoch, inner = epoch + 1, 0
        return epoch, inner, it

    def __repr__(self) -> str:
        return (
            f"RunState(epoch={self.epoch}, iter={self.iter}, inner_iter={self.inner_iter}, "
            f"stop_requested={self.stop_requested})"
        )
