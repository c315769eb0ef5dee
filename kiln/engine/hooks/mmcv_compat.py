"""MMCV 1.x hook signatures on kiln's dispatch: ``after_train_iter(self, runner)`` and friends.

kiln passes the per-iteration stages more than the runner (``after_train_iter(runner, batch_idx,
data_batch, outputs)``, ``after_val_epoch(runner, metrics)``); an MMCV hook takes only ``runner``
and reads the rest from it (``runner.outputs``, ``runner.data_batch``, ``runner.log_buffer``). MMCV
also fans four generic methods out to the train and val stages: ``before_epoch``/``after_epoch``
(``before_train_epoch``, ``before_val_epoch``, ...) and ``before_iter``/``after_iter``.

:func:`as_dispatch_view` is called by :func:`kiln.engine.hooks.base.build_stage_table` for every
hook: it returns the hook itself when nothing needs adapting (every kiln hook), else a view whose
stage callables drop the arguments the hook's methods do not take and include the fanned-out
stages. The callables are bound to the hook itself (``__self__`` is the hook), so periodic dispatch
and error messages still name the user's hook. So MMCV-signature hooks work on every kiln runner.

This module imports nothing from kiln (``hooks.base`` imports it).
"""

from __future__ import annotations

import inspect
import types
from collections.abc import Callable
from typing import Any

__all__ = ["as_dispatch_view", "MMCV_GENERIC_STAGES"]

# MMCV's generic methods and the stages its Hook base class forwards them from.
MMCV_GENERIC_STAGES: dict[str, tuple[str, ...]] = {
    "before_epoch": ("before_train_epoch", "before_val_epoch"),
    "after_epoch": ("after_train_epoch", "after_val_epoch"),
    "before_iter": ("before_train_iter", "before_val_iter"),
    "after_iter": ("after_train_iter", "after_val_iter"),
}

# Stages at which kiln passes arguments after ``runner`` (how many).
_EXTRA_ARGS: dict[str, int] = {
    "after_load_checkpoint": 1,
    "before_save_checkpoint": 1,
    "before_train_iter": 2,
    "after_train_iter": 3,
    "before_val_iter": 2,
    "after_val_iter": 3,
    "after_val_epoch": 1,
    "before_test_iter": 2,
    "after_test_iter": 3,
    "after_test_epoch": 1,
}

_UNLIMITED = 1 << 30


def _positional_capacity(fn: Callable) -> int:
    """How many positional arguments a bound method accepts (``_UNLIMITED`` with ``*args``)."""
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):  # builtins without a signature: assume they take what we give
        return _UNLIMITED
    n = 0
    for p in params:
        if p.kind is p.VAR_POSITIONAL:
            return _UNLIMITED
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD):
            n += 1
    return n


def _caller(method_name: str, n_args: int) -> Callable:
    """A function ``(self, runner, *args)`` calling ``self.<method_name>`` with its first ``n_args``."""

    def call(self: Any, runner: Any, *args: Any) -> Any:
        return getattr(self, method_name)(runner, *args[: n_args - 1])

    call.__name__ = call.__qualname__ = method_name
    return call


class _DispatchView:
    """A hook's stages as the dispatcher needs them, with MMCV signatures adapted."""

    __slots__ = ("hook", "_stages", "active_stages")

    def __init__(self, hook: Any, stages: dict[str, Callable]) -> None:
        self.hook = hook
        self._stages = stages
        narrow = getattr(hook, "active_stages", None)
        # A hook narrowing its stages for a run keeps doing so (over the adapted set).
        self.active_stages = (lambda runner: [s for s in narrow(runner) if s in stages]) if narrow else None

    @property
    def period(self) -> Any:
        """The hook's declared period (the dispatcher gates the adapted stages by it too)."""
        return getattr(self.hook, "period", None)

    def overridden_stages(self) -> list[str]:
        return list(self._stages)

    def stage_callable(self, stage: str) -> Callable:
        return self._stages[stage]


def as_dispatch_view(hook: Any) -> Any:
    """``hook`` itself, or a view adapting its MMCV-style methods (see the module docstring).

    Hooks that supply their own ``stage_callable`` (Detectron2 ``HookBase``, callbacks) already
    adapt their signatures and are returned as they are.
    """
    if hasattr(hook, "stage_callable"):
        return hook
    own = hook.overridden_stages()
    cls = type(hook)
    generic = [g for g in MMCV_GENERIC_STAGES if callable(getattr(cls, g, None))]
    stages: dict[str, Callable] = {}
    adapted = False
    for stage in own:
        fn = getattr(hook, stage)
        extra = _EXTRA_ARGS.get(stage, 0)
        cap = _positional_capacity(fn)
        if extra and cap < 1 + extra:
            stages[stage] = types.MethodType(_caller(stage, max(cap, 1)), hook)
            adapted = True
        else:
            stages[stage] = fn
    for name in generic:
        cap = _positional_capacity(getattr(hook, name))
        for stage in MMCV_GENERIC_STAGES[name]:
            if stage not in stages:  # a stage the hook overrides itself wins, as in MMCV
                stages[stage] = types.MethodType(_caller(name, max(cap, 1)), hook)
                adapted = True
    return _DispatchView(hook, stages) if adapted else hook
