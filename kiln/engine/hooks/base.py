"""Hook base classes, priorities and per-stage dispatch tables.

A hook overrides any of the 22 stage methods of :class:`Hook`. The runner precomputes, for each
stage, the list of bound methods of hooks that *override* that stage, so a stage nobody cares
about costs one empty loop. A hook that acts only at some iterations or epochs (log every 50, save
every epoch, set the lr when the schedule changes it) states when in its ``period`` attribute
(:class:`~kiln.engine.hooks.period.Every` / :class:`~kiln.engine.hooks.period.DueWhen`); the loop
calls it only then, so between those points it costs nothing and its method has no period test.
"""

from __future__ import annotations

import enum
import weakref
from collections.abc import Callable, Iterable
from typing import Any

from .mmcv_compat import as_dispatch_view
from .period import PERIOD_STAGES, Every, resolve_period

__all__ = [
    "Hook",
    "HookBase",
    "CallbackHook",
    "Priority",
    "get_priority",
    "STAGES",
    "HookError",
    "build_stage_table",
    "owner_of_failure",
    "StageTable",
]

# The 22 points a hook can attach to, in the order a full run meets them.
STAGES: tuple[str, ...] = (
    "before_run",
    "after_load_checkpoint",
    "before_train",
    "before_train_epoch",
    "before_train_iter",
    "after_train_iter",
    "after_train_epoch",
    "before_val",
    "before_val_epoch",
    "before_val_iter",
    "after_val_iter",
    "after_val_epoch",
    "after_val",
    "before_save_checkpoint",
    "after_train",
    "before_test",
    "before_test_epoch",
    "before_test_iter",
    "after_test_iter",
    "after_test_epoch",
    "after_test",
    "after_run",
)


class Priority(enum.IntEnum):
    """Hook priorities: a lower value runs earlier. Equal priorities keep registration order."""

    HIGHEST = 0
    VERY_HIGH = 10
    HIGH = 30
    ABOVE_NORMAL = 40
    NORMAL = 50
    BELOW_NORMAL = 60
    LOW = 70
    VERY_LOW = 90
    LOWEST = 100


def get_priority(priority: int | str | Priority) -> int:
    """Turn ``'HIGH'``, ``Priority.HIGH`` or an int in [0, 100] into an int.

    >>> get_priority('VERY_LOW'), get_priority(5)
    (90, 5)
    """
    if isinstance(priority, Priority):
        return int(priority)
    if isinstance(priority, bool):
        raise TypeError(f"Hook priority must be an int or a Priority name, got {priority!r}.")
    if isinstance(priority, int):
        if not 0 <= priority <= 100:
            raise ValueError(f"Hook priority must be in [0, 100] (0 runs first), got {priority}.")
        return priority
    if isinstance(priority, str):
        try:
            return int(Priority[priority.upper()])
        except KeyError:
            names = ", ".join(p.name for p in Priority)
            raise ValueError(
                f"Unknown hook priority {priority!r}; use one of {names} or an int 0-100."
            ) from None
    raise TypeError(f"Hook priority must be an int or a Priority name, got {type(priority).__name__}.")


class HookError(RuntimeError):
    """Raised when a hook fails; names the hook class and the stage."""


class Hook:
    """Base class of runner hooks: override the stages you need.

    Stage signatures (``runner`` is the :class:`~kiln.engine.Runner`)::

        before_run(runner)                      after_run(runner)
        after_load_checkpoint(runner, checkpoint)
        before_save_checkpoint(runner, checkpoint)   # may add keys to the checkpoint dict
        before_train(runner)                    after_train(runner)
        before_train_epoch(runner)              after_train_epoch(runner)
        before_train_iter(runner, batch_idx, data_batch)
        after_train_iter(runner, batch_idx, data_batch, outputs)
        before_val(runner) / before_val_epoch(runner) / after_val_epoch(runner, metrics) / after_val(runner)
        before_val_iter(runner, batch_idx, data_batch)
        after_val_iter(runner, batch_idx, data_batch, outputs)
        (the same six for test)

    Set the class attribute ``priority`` (or pass ``priority=`` to ``register_hook``). A hook with
    state to keep across a resume implements ``state_dict()``/``load_state_dict()``. A hook that
    acts periodically states its ``period`` once (see :mod:`kiln.engine.hooks.period`); the loop
    then calls it only when due.

    Example::

        class PrintLoss(Hook):
            priority = 'LOW'
            period = Every(100)  # after iterations 100, 200, ... (by_epoch=None: iterations here)

            def after_train_iter(self, runner, batch_idx, data_batch, outputs):
                print(runner.iter, float(outputs['loss']))
    """

    priority: int | str | Priority = Priority.NORMAL
    #: When the hook is due (``Every``/``DueWhen``); ``None``: at every iteration and epoch.
    period: Any = None

    def before_run(self, runner: Any) -> None:
        """Called once, before anything else."""

    def after_load_checkpoint(self, runner: Any, checkpoint: dict) -> None:
        """Called after a checkpoint was loaded for resuming; ``checkpoint`` is its extra dict."""

    def before_train(self, runner: Any) -> None:
        """Called before the first training iteration."""

    def before_train_epoch(self, runner: Any) -> None:
        """Called at the start of each training epoch."""

    def before_train_iter(self, runner: Any, batch_idx: int, data_batch: Any = None) -> None:
        """Called before each training iteration. Keep it cheap: timers measure the step after it."""

    def after_train_iter(
        self, runner: Any, batch_idx: int, data_batch: Any = None, outputs: dict | None = None
    ) -> None:
        """Called after each training iteration, with the step's outputs (loss tensors, not floats)."""

    def after_train_epoch(self, runner: Any) -> None:
        """Called at the end of each training epoch."""

    def before_val(self, runner: Any) -> None:
        """Called before a validation run."""

    def before_val_epoch(self, runner: Any) -> None:
        """Called before iterating the validation loader."""

    def before_val_iter(self, runner: Any, batch_idx: int, data_batch: Any = None) -> None:
        """Called before each validation batch."""

    def after_val_iter(
        self, runner: Any, batch_idx: int, data_batch: Any = None, outputs: Any = None
    ) -> None:
        """Called after each validation batch with the model's outputs."""

    def after_val_epoch(self, runner: Any, metrics: dict | None = None) -> None:
        """Called with the evaluator's metrics (flat ``{'bbox/AP': ...}``) after a validation pass."""

    def after_val(self, runner: Any) -> None:
        """Called after a validation run."""

    def before_save_checkpoint(self, runner: Any, checkpoint: dict) -> None:
        """Called with the extra dict about to be saved; add or edit keys in place."""

    def after_train(self, runner: Any) -> None:
        """Called after training ends (also when it ended by an early-stop request)."""

    def before_test(self, runner: Any) -> None:
        """Called before a test run."""

    def before_test_epoch(self, runner: Any) -> None:
        """Called before iterating the test loader."""

    def before_test_iter(self, runner: Any, batch_idx: int, data_batch: Any = None) -> None:
        """Called before each test batch."""

    def after_test_iter(
        self, runner: Any, batch_idx: int, data_batch: Any = None, outputs: Any = None
    ) -> None:
        """Called after each test batch with the model's outputs."""

    def after_test_epoch(self, runner: Any, metrics: dict | None = None) -> None:
        """Called with the test metrics."""

    def after_test(self, runner: Any) -> None:
        """Called after a test run."""

    def after_run(self, runner: Any) -> None:
        """Called once at the very end (also after a failure)."""

    # ----------------------------------------------------------------- helpers
    def overridden_stages(self) -> list[str]:
        """The stages this hook's class overrides (the only ones the runner will call)."""
        cls = type(self)
        return [s for s in STAGES if getattr(cls, s, None) is not getattr(Hook, s)]

    @staticmethod
    def every_n_iters(runner: Any, n: int) -> bool:
        """Whether the iteration just finished is a multiple of ``n`` (counting from 1)."""
        return n > 0 and (runner.iter + 1) % n == 0

    @staticmethod
    def every_n_epochs(runner: Any, n: int) -> bool:
        """Whether the epoch just finished is a multiple of ``n`` (counting from 1)."""
        return n > 0 and (runner.epoch + 1) % n == 0

    @staticmethod
    def is_last_iter(runner: Any) -> bool:
        """Whether the iteration just finished is the last one of training."""
        return runner.iter + 1 >= runner.max_iters

    @staticmethod
    def is_last_epoch(runner: Any) -> bool:
        """Whether the epoch just finished is the last one of training."""
        return runner.epoch + 1 >= runner.max_epochs

    @staticmethod
    def every_n_inner_iters(runner: Any, n: int) -> bool:
        """Whether the batch just finished is a multiple of ``n`` within its epoch (counting from 1)."""
        return n > 0 and (runner.inner_iter + 1) % n == 0

    @staticmethod
    def end_of_epoch(runner: Any) -> bool:
        """Whether the batch just finished is the last of the current loader (MMCV's helper)."""
        loader = getattr(runner, "data_loader", None)
        length = len(loader) if loader is not None else runner.epoch_length
        return length is not None and runner.inner_iter + 1 == length

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class HookBase(Hook):
    """Detectron2-style hook: ``before_train/after_train/before_step/after_step`` with ``self.trainer``.

    ``self.trainer`` is a weak proxy to the runner (or trainer) set at registration, so neither owns
    the other. Heavy work belongs in ``after_step`` so that timers measuring the step stay honest.
    """

    trainer: Any = None

    def before_step(self) -> None:
        """Called before each iteration (keep it cheap)."""

    def after_step(self) -> None:
        """Called after each iteration."""

    def overridden_stages(self) -> list[str]:
        """Map the four Detectron2 methods onto runner stages."""
        cls = type(self)
        mapping = {
            "before_train": "before_train",
            "after_train": "after_train",
            "before_step": "before_train_iter",
            "after_step": "after_train_iter",
        }
        return [stage for meth, stage in mapping.items() if getattr(cls, meth) is not getattr(HookBase, meth)]

    def stage_callable(self, stage: str) -> Callable:
        """A bound method with the runner-stage signature that calls the Detectron2 method."""
        return {
            "before_train": self._d2_before_train,
            "after_train": self._d2_after_train,
            "before_train_iter": self._d2_before_step,
            "after_train_iter": self._d2_after_step,
        }[stage]

    # Bound adapters (not lambdas) so a failing hook can be named from the traceback.
    def _d2_before_train(self, runner: Any, *args: Any) -> None:
        self.before_train()

    def _d2_after_train(self, runner: Any, *args: Any) -> None:
        self.after_train()

    def _d2_before_step(self, runner: Any, *args: Any) -> None:
        self.before_step()

    def _d2_after_step(self, runner: Any, *args: Any) -> None:
        self.after_step()

    # Detectron2 hooks take no runner argument; these keep that signature.
    def before_train(self) -> None:  # type: ignore[override]
        """Called before the first iteration."""

    def after_train(self) -> None:  # type: ignore[override]
        """Called after the last iteration."""

    def attach(self, trainer: Any) -> None:
        """Give the hook a weak reference to its trainer/runner."""
        self.trainer = trainer if isinstance(trainer, weakref.ProxyTypes) else weakref.proxy(trainer)


class CallbackHook(Hook):
    """Wraps a plain function ``fn(runner, *stage_args)`` as a hook for one stage.

    >>> calls = []
    >>> hook = CallbackHook(lambda runner, *a: calls.append(runner), stage='after_train_epoch')
    """

    def __init__(
        self, fn: Callable, stage: str = "after_train_iter", priority: int | str | Priority = Priority.NORMAL
    ) -> None:
        if stage not in STAGES:
            raise ValueError(
                f"Unknown hook stage {stage!r} for callback {getattr(fn, '__name__', fn)!r}; "
                f"use one of: {', '.join(STAGES)}."
            )
        if not callable(fn):
            raise TypeError(f"register_callback needs a callable, got {fn!r}.")
        self.fn = fn
        self.stage = stage
        self.priority = priority

    def overridden_stages(self) -> list[str]:
        """Exactly the one stage given at construction."""
        return [self.stage]

    def stage_callable(self, stage: str) -> Callable:
        """A bound method calling the wrapped function (bound, so errors can name this hook)."""
        return self._call

    def _call(self, runner: Any, *args: Any) -> Any:
        return self.fn(runner, *args)

    def __repr__(self) -> str:
        return f"CallbackHook({getattr(self.fn, '__name__', self.fn)!r}, stage={self.stage!r})"


def _stage_callable(hook: Hook, stage: str) -> Callable:
    maker = getattr(hook, "stage_callable", None)
    if maker is not None:
        return maker(stage)
    return getattr(hook, stage)


class StageTable(dict):
    """``{stage: tuple of callables}`` plus, for this run, the ``period`` of each gated callable.

    ``periods`` maps ``id(callable)`` to its hook's period for the stage that period gates; the loop
    (per-iteration stages) and :meth:`Runner.call_hook` (``after_train_epoch``) call those only when due.
    """

    periods: dict[int, Any]

    def entries(self, stage: str) -> tuple[tuple[Callable, Any], ...]:
        """``(callable, period or None)`` for each callable of ``stage``, in priority order."""
        periods = self.periods
        return tuple((fn, periods.get(id(fn))) for fn in self[stage])


def build_stage_table(hooks: Iterable[Hook], runner: Any = None) -> StageTable:
    """For each stage, the callables of the hooks overriding it, in priority order.

    With ``runner`` (when training starts), a hook may narrow its stages for this run through an
    optional ``active_stages(runner)`` method (e.g. the schedule hook skips ``after_train_iter``
    when there is no torch scheduler to step), and hook periods are resolved: an :class:`Every`
    counted in iterations drops the hook's ``after_train_epoch`` and gates its ``after_train_iter``
    (in epochs: the reverse). Tuples (not lists): the hot loop iterates them every iteration.
    """
    table: dict[str, list[Callable]] = {s: [] for s in STAGES}
    periods: dict[int, Any] = {}
    for hook in hooks:
        hook = as_dispatch_view(hook)  # MMCV signatures: after_train_iter(self, runner), after_iter, ...
        narrow = getattr(hook, "active_stages", None) if runner is not None else None
        stages = narrow(runner) if narrow is not None else hook.overridden_stages()
        period, gated = resolve_period(hook, runner) if runner is not None else (None, None)
        for stage in stages:
            if isinstance(period, Every) and stage in PERIOD_STAGES[1:] and stage != gated:
                continue  # counted in iterations: no epoch-end call (and vice versa)
            fn = _stage_callable(hook, stage)
            table[stage].append(fn)
            if stage == gated:
                periods[id(fn)] = period
    out = StageTable({s: tuple(v) for s, v in table.items()})
    out.periods = periods
    return out


def owner_of_failure(exc: BaseException) -> Any:
    """The hook whose stage method raised ``exc`` (the ``self`` of the first frame below the caller)."""
    tb = exc.__traceback__
    tb = tb.tb_next if tb is not None else None
    while tb is not None:
        owner = tb.tb_frame.f_locals.get("self")
        if isinstance(owner, Hook):
            return owner
        tb = tb.tb_next
    return None
