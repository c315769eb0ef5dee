"""MMCV's hook registration on kiln's MMCV runners (``register_training_hooks`` and its parts).

A mixin of :class:`kiln.engine.mmcv_runner.BaseRunner`. Each MMCV config key becomes kiln's piece:
``lr_config``/``momentum_config`` -> kiln schedule shapes applied by one
:class:`~kiln.engine.hooks.ParamSchedulerHook` (the schedule set is built by ``run()``, once the
epoch length is known); ``optimizer_config`` -> :class:`~kiln.engine.mmcv_hooks.MMCVOptimizerHook`;
``checkpoint_config``, ``log_config`` hooks, ``timer_config``, ``custom_hooks`` -> the registered
kiln hooks of those names. Priorities are MMCV's.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from kiln.registry import HOOKS

from .hooks.base import CallbackHook, Hook
from .hooks.misc import ParamSchedulerHook
from .mmcv_hooks import OPTIMIZER_HOOK_TYPES, MMCVOptimizerHook
from .schedulers_mm import schedulers_from_lr_config

__all__ = ["MMCVHookRegistration"]


class MMCVHookRegistration:
    """``register_hook(hook, priority='NORMAL')``, ``register_training_hooks(...)`` and its parts."""

    _schedule_shapes: dict[str, list]
    _schedule_hook: ParamSchedulerHook | None

    def register_hook(self, hook: Any, priority: int | str | None = "NORMAL", key: str | None = None) -> Hook:
        """Register ``hook`` at ``priority`` (MMCV's default: ``'NORMAL'``; ``None``: the hook's own)."""
        return super().register_hook(hook, priority, key)  # type: ignore[misc]

    def register_callback(
        self, fn: Any, stage: str = "after_train_iter", priority: int | str = "NORMAL"
    ) -> Hook:
        """kiln's ``register_callback``, keeping its ``priority`` (not MMCV's register_hook default)."""
        return self.register_hook(CallbackHook(fn, stage, priority), priority=priority)

    def register_hook_from_cfg(self, hook_cfg: Mapping) -> Hook:
        """Build a hook from ``dict(type=..., priority=..., ...)`` (priority defaults to ``'NORMAL'``)."""
        cfg = dict(hook_cfg)
        priority = cfg.pop("priority", "NORMAL")
        return self.register_hook(HOOKS.build(cfg, cfg_path=f"hooks.{cfg.get('type')}"), priority=priority)

    def register_lr_hook(self, lr_config: Any) -> None:
        """MMCV ``lr_config=dict(policy='step', step=[8, 11], warmup=...)`` as a kiln schedule (VERY_HIGH)."""
        self._register_schedule(lr_config, "lr", "VERY_HIGH")

    def register_momentum_hook(self, momentum_config: Any) -> None:
        """MMCV ``momentum_config=dict(policy='cyclic', ...)`` as a kiln schedule (HIGH)."""
        self._register_schedule(momentum_config, "momentum", "HIGH")

    def _register_schedule(self, config: Any, param: str, priority: str) -> None:
        if config is None:
            return
        if not isinstance(config, Mapping):
            self.register_hook(config, priority=priority)
            return
        if "policy" not in config:
            raise KeyError(
                f"{param}_config={dict(config)} has no 'policy'; write e.g. "
                f"dict(policy='step', step=[8, 11])."
            )
        self._schedule_shapes[param] = schedulers_from_lr_config(dict(config), param)
        if self._schedule_hook is None:
            self._schedule_hook = ParamSchedulerHook()
            self.register_hook(self._schedule_hook, priority=priority)

    def register_optimizer_hook(self, optimizer_config: Any) -> None:
        """MMCV ``optimizer_config=dict(grad_clip=None)``: the hook stepping the optimizer (ABOVE_NORMAL)."""
        if optimizer_config is None:
            return
        if isinstance(optimizer_config, Mapping):
            cfg = dict(optimizer_config)
            kind = cfg.pop("type", "OptimizerHook")
            if kind not in OPTIMIZER_HOOK_TYPES:
                raise ValueError(
                    f"optimizer_config type {kind!r} is not supported; use one of "
                    f"{sorted(OPTIMIZER_HOOK_TYPES)}."
                )
            hook: Any = MMCVOptimizerHook(**OPTIMIZER_HOOK_TYPES[kind], **cfg)
        elif isinstance(optimizer_config, MMCVOptimizerHook):
            hook = optimizer_config
        else:
            raise TypeError(
                f"optimizer_config must be a dict (dict(grad_clip=None)) or an MMCVOptimizerHook, got "
                f"{type(optimizer_config).__name__}."
            )
        self.register_hook(hook, priority="ABOVE_NORMAL")

    def register_checkpoint_hook(self, checkpoint_config: Any) -> None:
        """MMCV ``checkpoint_config=dict(interval=1)``: kiln's ``CheckpointHook`` (NORMAL)."""
        if checkpoint_config is None:
            return
        if isinstance(checkpoint_config, Mapping):
            cfg = dict(checkpoint_config)
            cfg.setdefault("type", "CheckpointHook")
            checkpoint_config = HOOKS.build(cfg, cfg_path="checkpoint_config")
        self.register_hook(checkpoint_config, priority="NORMAL")

    def register_logger_hooks(self, log_config: Any) -> None:
        """MMCV ``log_config=dict(interval=50, hooks=[dict(type='TextLoggerHook')])`` (VERY_LOW)."""
        if log_config is None:
            return
        if "interval" not in log_config or "hooks" not in log_config:
            raise KeyError(
                f"log_config={dict(log_config)} needs 'interval' and 'hooks', e.g. "
                f"dict(interval=50, hooks=[dict(type='TextLoggerHook')])."
            )
        for info in log_config["hooks"]:
            hook = HOOKS.build(
                dict(info), default_args={"interval": log_config["interval"]}, cfg_path="log_config.hooks"
            )
            self.register_hook(hook, priority="VERY_LOW")

    def register_timer_hook(self, timer_config: Any) -> None:
        """MMCV ``timer_config=dict(type='IterTimerHook')`` (LOW)."""
        if timer_config is None:
            return
        if isinstance(timer_config, Mapping):
            timer_config = HOOKS.build(copy.deepcopy(dict(timer_config)), cfg_path="timer_config")
        self.register_hook(timer_config, priority="LOW")

    def register_custom_hooks(self, custom_config: Any) -> None:
        """MMCV ``custom_hooks``: configs (their ``priority`` key, default NORMAL) or hook objects."""
        if custom_config is None:
            return
        items = custom_config if isinstance(custom_config, (list, tuple)) else [custom_config]
        for item in items:
            if isinstance(item, Mapping):
                self.register_hook_from_cfg(item)
            else:
                self.register_hook(item, priority="NORMAL")

    def register_training_hooks(
        self,
        lr_config: Any,
        optimizer_config: Any = None,
        checkpoint_config: Any = None,
        log_config: Any = None,
        momentum_config: Any = None,
        timer_config: Any = dict(type="IterTimerHook"),  # noqa: B006 (MMCV's signature; copied before use)
        custom_hooks_config: Any = None,
    ) -> None:
        """Register MMCV's default training hooks, with MMCV's priorities.

        lr (VERY_HIGH), momentum (HIGH), optimizer (ABOVE_NORMAL), checkpoint (NORMAL), timer (LOW),
        loggers (VERY_LOW), custom hooks (their own priority, default NORMAL; after the defaults).
        """
        self.register_lr_hook(lr_config)
        self.register_momentum_hook(momentum_config)
        self.register_optimizer_hook(optimizer_config)
        self.register_checkpoint_hook(checkpoint_config)
        self.register_timer_hook(timer_config)
        self.register_logger_hooks(log_config)
        self.register_custom_hooks(custom_hooks_config)
