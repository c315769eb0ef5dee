"""When a hook is due: its period, stated once as data, and the dispatcher that reads it.

A periodic hook does not test the iteration in its stage method; it declares *when* it acts, like
ignite's ``Events.ITERATION_COMPLETED(every=100)``, and the loop calls it only then::

    class SaveEvery3(Hook):
        period = Every(3)                      # after training iterations 3, 6, 9, ... (1-based)

        def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
            save(runner)                       # no `if (runner.iter + 1) % 3` here

* :class:`Every` ``(n, by_epoch=..., start=..., last=..., epoch_end=...)`` governs the pair
  ``after_train_iter`` / ``after_train_epoch``: counted in iterations, the hook's
  ``after_train_iter`` runs at the due iterations and its ``after_train_epoch`` never; counted in
  epochs, the reverse. ``by_epoch=None`` follows the runner (epoch- or iteration-based training).
* :class:`DueWhen` ``(fn, stage)`` is for irregular points known ahead (the lr schedule changes the
  value only at some iterations): ``fn(runner, it)`` returns the first due iteration ``>= it``.

A hook's ``period`` may be a class attribute, an instance attribute or a property computed from its
constructor arguments (so ``interval`` stays the one source). It is read once per run, when training
starts; ``None`` (the default) means every iteration and every epoch.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

__all__ = ["Every", "DueWhen", "IterDispatch", "NEVER", "resolve_period", "PERIOD_STAGES"]

NEVER = 1 << 62  # an iteration no run reaches

# The stages a period can gate (others are called every time they occur).
PERIOD_STAGES = ("before_train_iter", "after_train_iter", "after_train_epoch")


class Every:
    """Due at counts ``start, start + n, start + 2n, ...`` of iterations or epochs (1-based).

    Args:
        n: the period (``>= 1``), or ``None`` for no regular points (only ``last``/``epoch_end``).
        by_epoch: count epochs (``True``), iterations (``False``) or follow the runner (``None``).
        start: the first due count (default ``n``).
        last: also at the last iteration/epoch of training. A callable ``last(max_count) -> bool``
            decides from the run's length (ValLossHook runs at the end only when the run ends inside
            a workflow cycle).
        epoch_end: iteration periods in epoch-based training: also at the last iteration of each
            epoch (loggers write the epoch's last line).
    """

    __slots__ = ("n", "by_epoch", "start", "last", "epoch_end")

    def __init__(
        self,
        n: int | None,
        *,
        by_epoch: bool | None = None,
        start: int | None = None,
        last: bool | Callable[[int], bool] = False,
        epoch_end: bool = False,
    ) -> None:
        if n is not None and (isinstance(n, bool) or int(n) < 1):
            raise ValueError(f"Every(n): n must be >= 1 (or None for only the last point), got {n!r}.")
        self.n = None if n is None else int(n)
        self.by_epoch = by_epoch
        self.start = self.n if start is None else int(start)
        self.last = last
        self.epoch_end = bool(epoch_end)

    def stage(self, runner_by_epoch: bool) -> str:
        """The stage this period gates for a run counting epochs (or not)."""
        by_epoch = runner_by_epoch if self.by_epoch is None else self.by_epoch
        return "after_train_epoch" if by_epoch else "after_train_iter"

    def _last_counts(self, max_count: int | None) -> bool:
        if not max_count:
            return False
        return bool(self.last(max_count)) if callable(self.last) else bool(self.last)

    def is_due(self, count: int, max_count: int | None = None) -> bool:
        """Whether the ``count``-th iteration/epoch (1-based) is due in a run of ``max_count``."""
        if self.n is not None and count >= self.start and (count - self.start) % self.n == 0:
            return True
        return self._last_counts(max_count) and count >= max_count  # type: ignore[operator]

    def next_due_iter(self, it: int, batch_idx: int, max_iters: int | None, epoch_length: int | None) -> int:
        """The first 0-based iteration ``>= it`` that is due (``batch_idx``: ``it``'s place in its epoch)."""
        due = NEVER
        if self.n is not None:
            c = max(it + 1, self.start)  # counts are 1-based
            due = c + (-(c - self.start)) % self.n - 1
        if self._last_counts(max_iters):
            due = min(due, max(it, max_iters - 1))  # type: ignore[operator]
        if self.epoch_end and epoch_length and batch_idx < epoch_length:
            due = min(due, it + epoch_length - 1 - batch_idx)
        return due

    def __repr__(self) -> str:
        return (
            f"Every({self.n}, by_epoch={self.by_epoch}, start={self.start}, last={self.last}, "
            f"epoch_end={self.epoch_end})"
        )


class DueWhen:
    """Irregular due points: ``fn(runner, it)`` is the first due 0-based iteration ``>= it``.

    ``math.inf`` (or ``None``) means never again. ``stage`` is the per-iteration stage it gates.
    """

    __slots__ = ("fn", "gated")

    def __init__(
        self, fn: Callable[[Any, int], float | int | None], stage: str = "before_train_iter"
    ) -> None:
        if stage not in ("before_train_iter", "after_train_iter"):
            raise ValueError(f"DueWhen gates before_train_iter or after_train_iter, got {stage!r}.")
        self.fn = fn
        self.gated = stage

    def stage(self, runner_by_epoch: bool) -> str:
        """The stage this period gates."""
        return self.gated

    def __repr__(self) -> str:
        return f"DueWhen({getattr(self.fn, '__name__', self.fn)!r}, stage={self.gated!r})"


def resolve_period(hook: Any, runner: Any) -> tuple[Any, str | None]:
    """``(period, gated stage)`` of ``hook`` for this run; ``(None, None)`` when it has none."""
    period = getattr(hook, "period", None)
    if period is None:
        return None, None
    if not isinstance(period, (Every, DueWhen)):
        raise TypeError(
            f"{type(hook).__name__}.period must be an Every(...) or DueWhen(...) value (or None), "
            f"got {period!r}."
        )
    return period, period.stage(bool(runner.by_epoch))


class _Schedule:
    """One periodic hook's next due iteration, kept up to date by :class:`IterDispatch`."""

    __slots__ = ("fn", "period", "due")

    def __init__(self, fn: Callable, period: Any) -> None:
        self.fn = fn
        self.period = period
        self.due = -1


class IterDispatch:
    """One per-iteration stage's callables: those due every iteration, and periodic ones.

    ``due`` is the next iteration at which some periodic hook is due; :meth:`at` gives the callables
    to run then (every-iteration and due periodic ones, in priority order); between due points only
    :attr:`every` runs. A periodic hook is never called when it is not due.
    """

    __slots__ = ("runner", "entries", "every", "schedules", "due", "_max_iters", "_epoch_length")

    def __init__(
        self, entries: tuple[tuple[Callable, Any], ...], runner: Any, it: int, batch_idx: int
    ) -> None:
        self.runner = runner
        self.entries = entries
        self.every = tuple(fn for fn, p in entries if p is None)
        self.schedules = [_Schedule(fn, p) for fn, p in entries if p is not None]
        self._max_iters = runner.max_iters or None
        self._epoch_length = runner.epoch_length if runner.by_epoch else None
        self.due = self.next_due(it, batch_idx)

    def _next(self, period: Any, it: int, batch_idx: int) -> int:
        if isinstance(period, Every):
            return period.next_due_iter(it, batch_idx, self._max_iters, self._epoch_length)
        due = period.fn(self.runner, it)
        if due is None or due == math.inf:
            return NEVER
        return max(int(due), it)

    def next_due(self, it: int, batch_idx: int) -> int:
        """Advance every schedule whose point has passed; the first iteration ``>= it`` due for any."""
        due = NEVER
        for s in self.schedules:
            if s.due < it:
                s.due = self._next(s.period, it, batch_idx)
            if s.due < due:
                due = s.due
        return due

    def at(self, it: int) -> list[Callable]:
        """The callables to run at iteration ``it``, in priority order."""
        if not self.schedules:
            return list(self.every)
        due_fns = {id(s.fn) for s in self.schedules if s.due == it}
        return [fn for fn, p in self.entries if p is None or id(fn) in due_fns]
