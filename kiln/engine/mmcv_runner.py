"""MMCV 1.x's runner API on kiln's Runner: ``build_runner``, ``EpochBasedRunner``, ``IterBasedRunner``.

Scripts written for ``mmcv.runner`` run with their imports swapped::

    runner = build_runner(cfg.runner, default_args=dict(model=model, optimizer=optimizer,
                                                         work_dir=cfg.work_dir, logger=None))
    runner.register_training_hooks(cfg.lr_config, cfg.optimizer_config, cfg.checkpoint_config,
                                   cfg.log_config, cfg.get('momentum_config'))
    runner.register_hook(MyHook(), priority='LOW')      # MMCV signatures: after_train_iter(self, runner)
    runner.resume('work_dirs/x/latest.pth')
    runner.run([train_loader_or_dataset, val_loader], [('train', 1), ('val', 1)])

These classes *are* kiln runners (one loop, one state): training is kiln's epoch/iteration loop, the
hooks are kiln's dispatch (MMCV-signature hooks adapted by :mod:`kiln.engine.hooks.mmcv_compat`),
checkpoints are kiln's (exact resume: loader position, RNG, hook states), the lr/momentum configs
become kiln schedules, and ``optimizer_config`` steps through kiln's optimizer wrapper. What MMCV
adds on top lives here: the constructor, ``register_training_hooks``, ``run(loaders, workflow)``,
``runner.log_buffer``/``outputs``/``mode``/``data_loader``, the MMCV checkpoint signatures.

One training step (``make_train_step``): ``batch_processor(model, batch, train_mode=True)``, else the
model's MMCV ``train_step(batch, optimizer, **run_kwargs)``, else kiln's model contract
(``model(batch)`` -> loss dict -> :func:`~kiln.engine.parse_losses`, with ``num_samples = len(batch)``).
The result, ``dict(loss, log_vars, num_samples)``, becomes ``runner.outputs``; ``log_vars`` go into
``runner.log_buffer`` and the event storage. The optimizer is stepped by the ``optimizer_config``
hook, as in MMCV; a model using kiln's contract with no such hook is stepped by the runner itself
(kiln's rule: the runner owns the step), while a model with its own ``train_step`` and no hook is
left alone (it may step its optimizers itself, as MMCV GAN models do; a warning says so).
"""

from __future__ import annotations

import copy
import logging
import os
import re
import time
import warnings
from abc import ABCMeta, abstractmethod
from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn as nn

from kiln.registry import HOOKS, RUNNERS

from .checkpoint import format_incompatible_keys, load_checkpoint_file
from .hooks.base import Hook
from .hooks.misc import ParamSchedulerHook
from .hooks.val_loss import forked_rng, loss_mode
from .log_buffer import LogBuffer
from .loops import EpochBasedTrainLoop, IterBasedTrainLoop
from .mmcv_hooks import OPTIMIZER_HOOK_TYPES, MMCVOptimizerHook, WorkflowValHook
from .optim import OptimWrapper
from .runner import Runner, parse_losses
from .schedulers import ScheduleSet, schedulers_from_lr_config

__all__ = ["BaseRunner", "EpochBasedRunner", "IterBasedRunner", "build_runner", "DEFAULT_LOADER_SETTINGS"]

# Loader settings for datasets passed to run() when the runner has no config (cfg=None): the values
# of MMDetection 2.x's dataset configs (data=dict(samples_per_gpu=2, workers_per_gpu=2)).
DEFAULT_LOADER_SETTINGS = {"samples_per_gpu": 2, "workers_per_gpu": 2}

_WORKFLOW_EXAMPLE = "workflow=[('train', 1)] or [('train', 1), ('val', 1)]"
_NO_DEFAULT_HOOKS = {"timer": None, "logger": None, "param_scheduler": None, "checkpoint": None, "sampler_seed": None}


def _num_samples(batch: Any) -> int:
    return len(batch) if isinstance(batch, (list, tuple)) else 1


def _is_kiln_checkpoint_name(x: Any) -> bool:
    """``save_checkpoint('epoch_3')`` (kiln: a file name in work_dir) vs ``save_checkpoint(out_dir)`` (MMCV)."""
    return isinstance(x, str) and "/" not in x and os.sep not in x and not os.path.isdir(x)


class _OptimizerDict:
    """Checkpoint state of a dict of optimizers (MMCV GAN-style ``optimizer=dict(gen=..., disc=...)``)."""

    def __init__(self, optimizers: Mapping[str, torch.optim.Optimizer]) -> None:
        self.optimizers = optimizers

    def state_dict(self) -> dict:
        return {k: o.state_dict() for k, o in self.optimizers.items()}

    def load_state_dict(self, state: Mapping) -> None:
        for k, o in self.optimizers.items():
            if k in state:
                o.load_state_dict(state[k])


class BaseRunner(Runner, metaclass=ABCMeta):
    """MMCV's ``BaseRunner(model, batch_processor, optimizer, work_dir, logger, meta, max_iters, max_epochs)``.

    Args:
        model: an ``nn.Module``: with an MMCV ``train_step(data, optimizer)`` (and ``val_step``), or
            following kiln's model contract (train mode returns a loss dict).
        batch_processor: deprecated in MMCV (and here): ``fn(model, batch, train_mode) -> dict(loss,
            log_vars, num_samples)``; not allowed together with ``model.train_step``.
        optimizer: a ``torch.optim.Optimizer``, a dict of them (the model's ``train_step`` steps
            them), a kiln ``OptimWrapper`` or ``None``.
        work_dir: checkpoints and logs go here.
        logger: a ``logging.Logger`` for the runner's messages (``None``: the ``kiln`` logger).
        meta: a dict saved into every checkpoint's meta (MMDetection puts env info, seed, config).
        max_iters / max_epochs: training length (at most one; ``run()`` may give it too).
        cfg: kiln extension: the whole config, so datasets given to ``run()`` get loaders with its
            ``data`` settings and checkpoints record it (``build_runner(cfg.runner,
            default_args=dict(..., cfg=cfg))``).
    """

    default_filename_tmpl = "epoch_{}.pth"

    def __init__(
        self,
        model: nn.Module,
        batch_processor: Any = None,
        optimizer: Any = None,
        work_dir: str | None = None,
        logger: logging.Logger | None = None,
        meta: dict | None = None,
        max_iters: int | None = None,
        max_epochs: int | None = None,
        cfg: Any = None,
    ) -> None:
        if not isinstance(model, nn.Module):
            raise TypeError(f"{type(self).__name__}: model must be a torch.nn.Module, got {type(model).__name__}.")
        raw = getattr(model, "module", model)
        if batch_processor is not None:
            if not callable(batch_processor):
                raise TypeError(f"batch_processor must be callable, got {type(batch_processor).__name__}.")
            warnings.warn(
                "batch_processor is deprecated (in MMCV too): implement model.train_step()/val_step() or "
                "kiln's model contract instead.",
                DeprecationWarning,
                stacklevel=2,
            )
            if hasattr(raw, "train_step") or hasattr(raw, "val_step"):
                raise RuntimeError(
                    "batch_processor and model.train_step()/model.val_step() cannot both be given (as in MMCV); "
                    "drop batch_processor."
                )
        optimizers: Any = optimizer
        wrapper: OptimWrapper | None = None
        if isinstance(optimizer, OptimWrapper):
            wrapper, optimizers = optimizer, optimizer.optimizer
        elif isinstance(optimizer, torch.optim.Optimizer):
            wrapper = OptimWrapper(optimizer)
        elif isinstance(optimizer, Mapping):
            for name, opt in optimizer.items():
                if not isinstance(opt, torch.optim.Optimizer):
                    raise TypeError(
                        f"optimizer must be a dict of torch.optim.Optimizers, but optimizer[{name!r}] is a "
                        f"{type(opt).__name__}."
                    )
            optimizers = dict(optimizer)
        elif optimizer is not None:
            raise TypeError(
                f"optimizer must be a torch.optim.Optimizer, a dict of them or None, got {type(optimizer).__name__}."
            )
        if logger is not None and not isinstance(logger, logging.Logger):
            raise TypeError(f"logger must be a logging.Logger (or None for kiln's), got {type(logger).__name__}.")
        if meta is not None and not isinstance(meta, dict):
            raise TypeError(f"meta must be a dict or None, got {type(meta).__name__}.")
        if work_dir is not None and not isinstance(work_dir, (str, os.PathLike)):
            raise TypeError(f"work_dir must be a str or None, got {type(work_dir).__name__}.")
        if max_epochs is not None and max_iters is not None:
            raise ValueError("Only one of `max_epochs` or `max_iters` can be set.")
        seed = (meta or {}).get("seed")
        if seed is None and cfg is not None:
            seed = cfg.get("seed") if hasattr(cfg, "get") else None
        super().__init__(
            model,
            work_dir=os.fspath(work_dir) if work_dir is not None else None,
            optim_wrapper=wrapper,
            default_hooks=_NO_DEFAULT_HOOKS,  # MMCV registers hooks explicitly (register_training_hooks)
            cfg=cfg,
            seed=seed,
        )
        if isinstance(optimizers, dict):
            self.checkpointer.add_checkpointable("optimizer", _OptimizerDict(optimizers))
        self._optimizers = optimizers
        self.batch_processor = batch_processor
        self.logger = logger if logger is not None else logging.getLogger("kiln")
        self.meta = meta
        self._max_epochs = max_epochs
        self._max_iters = max_iters
        self._model_name = type(raw).__name__
        self.timestamp = time.strftime("%Y%m%d_%H%M%S", time.localtime())
        self.log_buffer = LogBuffer()
        self.mode: str | None = None
        self.outputs: dict[str, Any] = {}
        self.data_loader: Any = None
        self.data_batch: Any = None
        self._schedule_shapes: dict[str, list] = {}
        self._schedule_hook: ParamSchedulerHook | None = None
        self._run_kwargs: dict[str, Any] = {}
        self._in_run = False
        self._resume_optimizer = True
        self._warned_no_step = False

    # ================================================================ MMCV properties
    @property
    def optimizer(self) -> Any:
        """The optimizer given at construction (an ``Optimizer``, a dict of them, or ``None``)."""
        return self._optimizers

    @property
    def model_name(self) -> str:
        """The model's class name."""
        return self._model_name

    @property
    def max_epochs(self) -> int | None:
        """Training length in epochs (``None`` for iteration-based training)."""
        return self.train_loop.max_epochs if self.train_loop is not None else self._max_epochs

    @property
    def max_iters(self) -> int | None:
        """Training length in iterations (known once ``run()`` has the loaders, for epoch-based training)."""
        return self.train_loop.max_iters if self.train_loop is not None else self._max_iters

    def set_optim_wrapper(self, wrapper: OptimWrapper) -> None:
        """Use ``wrapper`` for the step and in checkpoints (``optimizer_config`` installs one)."""
        self.optim_wrapper = wrapper
        self.checkpointer.checkpointables["optimizer"] = wrapper
        if self.schedule_set is not None:
            self.schedule_set.optimizer = wrapper.optimizer

    def current_lr(self) -> list[float] | dict[str, list[float]]:
        """The learning rate of each param group (a dict per optimizer for a dict of optimizers)."""
        return self._per_optimizer(lambda o: [g["lr"] for g in o.param_groups], "lr")

    def current_momentum(self) -> list[float] | dict[str, list[float]]:
        """The momentum (or Adam's beta1) of each param group."""

        def get(o: torch.optim.Optimizer) -> list[float]:
            return [g.get("momentum", g["betas"][0] if "betas" in g else 0) for g in o.param_groups]

        return self._per_optimizer(get, "momentum")

    def _per_optimizer(self, fn: Any, what: str) -> Any:
        opt = self._optimizers
        if opt is None:
            raise RuntimeError(f"{what} is not applicable because the runner has no optimizer.")
        if isinstance(opt, dict):
            return {k: fn(o) for k, o in opt.items()}
        return fn(opt)

    def get_hook_info(self) -> str:
        """For each stage, the hooks called there with their priorities."""
        return self.hook_table()

    # ================================================================ hooks
    def register_hook(self, hook: Any, priority: int | str | None = "NORMAL", key: str | None = None) -> Hook:
        """Register ``hook`` at ``priority`` (MMCV's default: ``'NORMAL'``; ``None``: the hook's own)."""
        return super().register_hook(hook, priority, key)

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
                f"{param}_config={dict(config)} has no 'policy'; write e.g. dict(policy='step', step=[8, 11])."
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
                    f"optimizer_config type {kind!r} is not supported; use one of {sorted(OPTIMIZER_HOOK_TYPES)}."
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
            hook = HOOKS.build(dict(info), default_args={"interval": log_config["interval"]}, cfg_path="log_config.hooks")
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

    # ================================================================ the step
    def _model_method(self, name: str) -> Any:
        """The model's own MMCV ``train_step``/``val_step`` (kiln's contract has none)."""
        return getattr(self._raw_model, name, None)

    def make_train_step(self) -> Any:
        """One MMCV training iteration (see the module docstring); returns the logged variables."""
        bp = self.batch_processor
        own = self._model_method("train_step")
        model = self.model
        ow = self.optim_wrapper
        optimizer = self._optimizers
        kwargs = self._run_kwargs
        buf = self.log_buffer
        has_hook = any(isinstance(h, MMCVOptimizerHook) for h in self._hooks)
        runner_steps = bp is None and own is None and not has_hook
        if runner_steps and ow is None:
            raise RuntimeError(
                f"{type(self).__name__}: the model follows kiln's contract (no train_step), so the runner steps "
                f"the optimizer, but it has none: pass optimizer=torch.optim.SGD(model.parameters(), lr=...)."
            )
        if not has_hook and not runner_steps and not self._warned_no_step:
            self._warned_no_step = True
            self.logger.warning(
                "No optimizer hook is registered (optimizer_config=None): as in MMCV, the runner does not step "
                "the optimizer; the weights change only if model.train_step steps it itself. Pass "
                "optimizer_config=dict(grad_clip=None) to register_training_hooks otherwise."
            )
        if kwargs and bp is None and own is None:
            raise TypeError(
                f"run() got extra arguments {sorted(kwargs)}, which MMCV passes to model.train_step; this model "
                f"has no train_step (kiln's contract: model(batch) returns the losses)."
            )
        autocast = ow.autocast if ow is not None else None

        def step(data_batch: Any) -> dict[str, Any]:
            self.data_batch = data_batch
            ctx = autocast() if autocast is not None else _null
            with ctx:
                if bp is not None:
                    outputs = bp(model, data_batch, train_mode=True, **kwargs)
                elif own is not None:
                    outputs = own(data_batch, optimizer, **kwargs)
                else:
                    total, log_vars = parse_losses(model(data_batch))
                    outputs = {"loss": total, "log_vars": log_vars, "num_samples": _num_samples(data_batch)}
            if not isinstance(outputs, dict):
                raise TypeError(
                    f"batch_processor() or model.train_step() must return a dict (loss, log_vars, num_samples), "
                    f"got {type(outputs).__name__}."
                )
            log_vars = outputs.get("log_vars")
            if log_vars is not None:
                buf.update(log_vars, outputs.get("num_samples", 1))
            self.outputs = outputs
            if runner_steps:
                ow.update_params(outputs["loss"])
            return log_vars if isinstance(log_vars, dict) else {}

        return step

    def _val_step(self, data_batch: Any) -> dict[str, Any]:
        kwargs = self._run_kwargs
        if self.batch_processor is not None:
            return self.batch_processor(self.model, data_batch, train_mode=False, **kwargs)
        own = self._model_method("val_step")
        if own is not None:
            return own(data_batch, self._optimizers, **kwargs)
        losses = self.model(data_batch)
        if not isinstance(losses, Mapping):
            raise TypeError(
                f"{type(self).__name__} val phase: the model has no val_step, so its training-mode forward must "
                f"return the loss dict; got {type(losses).__name__}."
            )
        total, log_vars = parse_losses(losses)
        return {"loss": total, "log_vars": log_vars, "num_samples": _num_samples(data_batch)}

    def val_epoch(self, batches: Any, data_loader: Any = None) -> dict[str, float]:
        """One MMCV val epoch over ``batches``: val hooks, ``val_step`` per batch, no weight change.

        The model computes its losses under ``torch.no_grad()``: its own ``val_step`` in eval mode
        (MMCV), or kiln's contract in training mode with normalization and dropout layers in eval mode.
        The RNG states are restored afterwards, so val phases do not change training. Returns the
        sample-weighted means of the log variables (averaged over ranks), which are also
        ``after_val_epoch``'s metrics and the event storage's ``val/<name>`` scalars.
        """
        from . import comm
        from .events import EventStorage

        saved = (self.mode, self.data_loader, self.inner_iter)
        self.mode, self.data_loader = "val", data_loader
        buf = self.log_buffer
        buf.clear()
        self.call_hook("before_val_epoch")
        own = self.batch_processor is not None or self._model_method("val_step") is not None
        with forked_rng(), EventStorage(self.iter), torch.no_grad(), loss_mode(self._raw_model, own):
            for i, data_batch in enumerate(batches):
                self.inner_iter = i
                self.data_batch = data_batch
                self.call_hook("before_val_iter", i, data_batch)
                outputs = self._val_step(data_batch)
                if not isinstance(outputs, dict):
                    raise TypeError(
                        f"batch_processor() or model.val_step() must return a dict, got {type(outputs).__name__}."
                    )
                if "log_vars" in outputs:
                    buf.update(outputs["log_vars"], outputs.get("num_samples", 1))
                self.outputs = outputs
                self.call_hook("after_val_iter", i, data_batch, outputs)
        means = self._mean_over_ranks_dict(buf) if comm.get_world_size() > 1 else self._local_means(buf)
        if self.storage is not None:
            for k, v in means.items():
                self.storage.put_scalar(f"val/{k}", v, smoothing_hint=False)
        buf.output.clear()
        buf.output.update(means)
        buf.ready = True  # as after MMCV's LoggerHook.after_val_epoch averaged it
        self.call_hook("after_val_epoch", means)
        buf.clear()
        self.mode, self.data_loader, self.inner_iter = saved
        return means

    @staticmethod
    def _local_means(buf: LogBuffer) -> dict[str, float]:
        buf.average()
        return dict(buf.output)

    @staticmethod
    def _mean_over_ranks_dict(buf: LogBuffer) -> dict[str, float]:
        from . import comm

        local = {k: (sum(v * n for v, n in zip(vals, buf.n_history[k])), sum(buf.n_history[k]))
                 for k, vals in buf.val_history.items()}
        total: dict[str, list[float]] = {}
        for part in comm.all_gather(local):
            for k, (s, w) in part.items():
                acc = total.setdefault(k, [0.0, 0.0])
                acc[0] += s
                acc[1] += w
        return {k: s / w for k, (s, w) in total.items() if w > 0}

    # ================================================================ running
    def train(self, data_loader: Any = None, **kwargs: Any) -> nn.Module:  # type: ignore[override]
        """kiln: train as set up by :meth:`run`. MMCV's one-epoch ``train(loader)`` is refused (use ``run``)."""
        if data_loader is not None or kwargs:
            raise TypeError(
                f"{type(self).__name__}.train(data_loader) (one MMCV epoch) is not available on its own in kiln, "
                f"whose runner owns the loop: call runner.run([data_loader], [('train', 1)])."
            )
        return super().train()

    def val(self, data_loader: Any = None, **kwargs: Any) -> dict:  # type: ignore[override]
        """MMCV: one val epoch over ``data_loader`` (losses); without one, kiln's evaluator loop."""
        if data_loader is None:
            return super().val()
        self._run_kwargs = kwargs
        with self._ensure_storage():
            return self.val_epoch(iter(data_loader), data_loader)

    def _check_run_args(self, data_loaders: Any, workflow: Any) -> list[tuple[str, int]]:
        if not isinstance(data_loaders, (list, tuple)):
            raise TypeError(
                f"run() expects a list of data loaders (or datasets), one per workflow phase, got "
                f"{type(data_loaders).__name__}; e.g. runner.run([train_loader], [('train', 1)])."
            )
        if not isinstance(workflow, (list, tuple)) or not workflow:
            raise ValueError(f"workflow={workflow!r}: expected a non-empty list of (mode, n) phases, e.g. {_WORKFLOW_EXAMPLE}.")
        phases: list[tuple[str, int]] = []
        for i, entry in enumerate(workflow):
            ok = isinstance(entry, (list, tuple)) and len(entry) == 2
            mode, n = entry if ok else (None, None)
            if not ok or mode not in ("train", "val") or isinstance(n, bool) or not isinstance(n, int) or n < 1:
                raise ValueError(
                    f"workflow[{i}] = {entry!r} is not a valid phase: each is (mode, n) with mode 'train' or 'val' "
                    f"and n a positive int ({self._unit}s), e.g. {_WORKFLOW_EXAMPLE}."
                )
            phases.append((mode, n))
        if len(data_loaders) != len(workflow):
            raise ValueError(
                f"run() got {len(data_loaders)} data loader(s) for a workflow of {len(workflow)} phase(s) "
                f"{list(workflow)}; MMCV requires one per phase (len(data_loaders) == len(workflow)), e.g. "
                f"runner.run([train_loader, val_loader], [('train', 1), ('val', 1)])."
            )
        train = [i for i, (m, _) in enumerate(phases) if m == "train"]
        if not train:
            raise ValueError(f"workflow={list(workflow)!r} has no ('train', n) phase; e.g. {_WORKFLOW_EXAMPLE}.")
        if any(data_loaders[i] is not data_loaders[train[0]] for i in train):
            raise ValueError(
                "run(): the workflow's ('train', n) phases use different data loaders; kiln trains on one stream "
                "(whose position is checkpointed): pass the same loader for every train phase."
            )
        if phases[0][0] == "val":
            raise ValueError(
                f"workflow={list(workflow)!r} starts with a ('val', n) phase; kiln runs a val phase after the "
                f"training it follows: write e.g. [('train', 1), ('val', 1)]."
            )
        return phases

    def _as_loader(self, obj: Any, mode: str) -> Any:
        """``obj`` if it is a loader; a dataset gets one built from the config's ``data`` settings."""
        if not isinstance(obj, torch.utils.data.Dataset):
            if not hasattr(obj, "__iter__"):
                raise TypeError(f"run(): a {mode} phase got {type(obj).__name__}, which is neither a data loader "
                                f"nor a dataset.")
            return obj
        from kiln.data import build_dataloader

        settings = dict(DEFAULT_LOADER_SETTINGS)
        data = self.cfg.get("data") if self.cfg is not None and hasattr(self.cfg, "get") else None
        if data is not None:
            settings["samples_per_gpu"] = data.get("samples_per_gpu", data.get("imgs_per_gpu", settings["samples_per_gpu"]))
            settings["workers_per_gpu"] = data.get("workers_per_gpu", settings["workers_per_gpu"])
            source = "the config's data settings"
        else:
            source = "MMDetection's defaults (the runner has no cfg)"
        self.logger.info(
            "run(): building the %s data loader for %s with samples_per_gpu=%d, workers_per_gpu=%d (%s).",
            mode, type(obj).__name__, settings["samples_per_gpu"], settings["workers_per_gpu"], source,
        )
        return build_dataloader(
            obj,
            samples_per_gpu=settings["samples_per_gpu"],
            workers_per_gpu=settings["workers_per_gpu"],
            shuffle=mode == "train",  # val phases read the set in order (deterministic losses)
            seed=self.seed,
            runner_type="IterBasedRunner" if self._unit == "iter" else "EpochBasedRunner",
        )

    _unit = "epoch"

    def _start(self, data_loaders: Sequence[Any], workflow: Any, kwargs: dict) -> None:
        """Build the loaders, the loop, the schedules and the val phases; then train."""
        phases = self._check_run_args(data_loaders, workflow)
        if self.world_size > 1 and (self._model_method("train_step") is not None):
            raise RuntimeError(
                "An MMCV-style model.train_step under distributed training is not supported: kiln's DDP wrapper "
                "synchronizes gradients in forward(); use kiln's model contract (forward returns the losses)."
            )
        built: dict[int, Any] = {}
        loaders = []
        for obj, (mode, _) in zip(data_loaders, phases):
            if id(obj) not in built:
                built[id(obj)] = self._as_loader(obj, mode)
            loaders.append(built[id(obj)])
        train_loader = loaders[next(i for i, (m, _) in enumerate(phases) if m == "train")]
        self._run_kwargs = dict(kwargs)
        self.train_dataloader = self.data_loader = train_loader
        self.train_loop = self._make_loop(train_loader)
        shapes = [s for param in ("lr", "momentum") for s in self._schedule_shapes.get(param, [])]
        if shapes:
            if self.optim_wrapper is None:
                raise ValueError("lr_config/momentum_config need a single torch optimizer on the runner.")
            self.schedule_set = ScheduleSet(
                self.optim_wrapper, shapes, epoch_length=self.epoch_length, max_iters=self.max_iters
            )
        self._add_val_phases(phases, loaders)
        self.logger.info(
            "workflow: %s, max: %d %ss", list(workflow), self.max_epochs if self._unit == "epoch" else self.max_iters,
            self._unit,
        )
        self.mode = "train"
        self._in_run = True
        try:
            super().train()
        finally:
            self._in_run = False

    def _add_val_phases(self, phases: list[tuple[str, int]], loaders: list[Any]) -> None:
        for h in [h for h in self._hooks if isinstance(h, WorkflowValHook)]:  # from an earlier run()
            self._hooks.remove(h)
        cycle = sum(n for m, n in phases if m == "train")
        done = 0
        for (mode, n), loader in zip(phases, loaders):
            if mode == "train":
                done += n
            else:
                self.register_hook(
                    WorkflowValHook(interval=cycle, length=n, offset=done, dataloader=loader), priority="LOWEST"
                )

    @abstractmethod
    def run(self, data_loaders: Sequence[Any], workflow: Sequence[tuple[str, int]], **kwargs: Any) -> None:
        """Train per ``workflow`` (each runner kind counts its length in its own unit)."""

    @abstractmethod
    def _make_loop(self, loader: Any) -> Any:
        """The kiln training loop over ``loader``."""

    # ================================================================ checkpoints
    def _checkpoint_meta(self, meta: Mapping | None) -> dict:
        out = {k: v for k, v in (self.meta or {}).items() if k not in ("epoch", "iter", "inner_iter")}
        out.update({k: v for k, v in dict(meta or {}).items() if k not in ("epoch", "iter", "inner_iter")})
        return out

    def save_checkpoint(  # type: ignore[override]
        self,
        out_dir: str,
        filename_tmpl: str | None = None,
        save_optimizer: bool = True,
        meta: Mapping | None = None,
        create_symlink: bool = True,
    ) -> str | None:
        """MMCV: save ``out_dir/filename_tmpl.format(n)`` (n = epochs or iterations done) and link
        ``latest.pth`` to it. kiln: ``save_checkpoint('epoch_3')`` (a bare name, as kiln's hooks call
        it) saves ``work_dir/epoch_3.pth``. Either way the file is a full kiln checkpoint (exact resume).
        """
        if filename_tmpl is None and _is_kiln_checkpoint_name(out_dir):
            path = super().save_checkpoint(out_dir, save_optimizer=save_optimizer, meta=self._checkpoint_meta(meta))
        else:
            tmpl = filename_tmpl or self.default_filename_tmpl
            n = (self.epoch if self._unit == "epoch" else self.iter) + 1
            name = tmpl.format(n)
            name = name[:-4] if name.endswith(".pth") else name
            ckpt = self.checkpointer
            old_dir = ckpt.save_dir
            ckpt.save_dir = os.path.abspath(os.fspath(out_dir))
            if ckpt.save_to_disk:
                os.makedirs(ckpt.save_dir, exist_ok=True)
            try:
                path = super().save_checkpoint(name, save_optimizer=save_optimizer, meta=self._checkpoint_meta(meta))
            finally:
                ckpt.save_dir = old_dir
        if path is not None and create_symlink:
            _link_latest(path)
        return path

    def load_checkpoint(  # type: ignore[override]
        self,
        filename: str,
        map_location: Any = "cpu",
        strict: bool = False,
        revise_keys: Sequence[tuple[str, str]] = ((r"^module\.", ""),),
    ) -> dict:
        """Load model weights (MMCV signature); returns the checkpoint dict (``state_dict``, ``meta``, ...).

        ``revise_keys``: ``(pattern, replacement)`` regex substitutions applied to every key.
        ``strict``: missing/unexpected/shape-mismatched keys raise; otherwise they are skipped and
        listed in a warning. Files are read on the CPU and copied into the model wherever it lives,
        so ``map_location`` does not change the result.
        """
        ckpt = load_checkpoint_file(filename, allow_pickle=self.allow_pickle)
        state = ckpt.pop("model")
        for pattern, repl in revise_keys:
            state = {re.sub(pattern, repl, k): v for k, v in state.items()}
        model = self._raw_model
        own = model.state_dict()
        bad_shape = [(k, tuple(v.shape), tuple(own[k].shape)) for k, v in state.items()
                     if k in own and isinstance(v, torch.Tensor) and v.shape != own[k].shape]
        for k, _, _ in bad_shape:
            state.pop(k)
        result = model.load_state_dict(state, strict=False)
        from .checkpoint import IncompatibleKeys

        inc = IncompatibleKeys(list(result.missing_keys), list(result.unexpected_keys), bad_shape)
        table = format_incompatible_keys(inc, source=f"'{filename}'")
        if table and strict:
            raise RuntimeError(f"{table}\n(strict=True; pass strict=False to load what matches).")
        if table:
            self.logger.warning(table)
        self._weights_loaded = True
        return {"state_dict": state, **ckpt}

    def resume(  # type: ignore[override]
        self, checkpoint: str, resume_optimizer: bool = True, map_location: Any = "default"
    ) -> None:
        """Resume training from ``checkpoint`` (MMCV signature).

        Called before ``run()``, it loads the weights (and optimizer) at once and sets
        ``epoch``/``iter``/``meta``; when ``run()`` starts, everything else of an exact resume follows
        (loader position, RNG states, hook states, schedules, logged history), as ``kiln train
        --resume`` does. ``map_location`` does not change the result (see :meth:`load_checkpoint`).
        """
        self._resume_optimizer = bool(resume_optimizer)
        if self._in_run:
            self._resume_now(checkpoint)
            return
        keys = ["optimizer"] if resume_optimizer and "optimizer" in self.checkpointer.checkpointables else []
        extra = self.checkpointer.load(checkpoint, checkpointables=keys)
        meta = dict(extra.get("meta", {}))
        self.epoch = int(meta.get("epoch", 0))
        self.iter = int(meta.get("iter", 0))
        self.inner_iter = int(meta.get("inner_iter", 0))
        self.meta = dict(self.meta or {})
        self.meta.update(meta)
        self.resume_from = checkpoint
        self._resumed = False  # the rest of the state is restored when run() starts
        self.logger.info("resumed epoch %d, iter %d", self.epoch, self.iter)

    def _resume_now(self, path: str) -> None:
        ckpt = self.checkpointer
        opt = None if self._resume_optimizer else ckpt.checkpointables.pop("optimizer", None)
        try:
            super().resume(path)
        finally:
            if opt is not None:
                ckpt.checkpointables["optimizer"] = opt


class _MMCVEpochLoop(EpochBasedTrainLoop):
    """kiln's epoch loop, plus what MMCV's runner sets at each train epoch (mode, loader, log buffer)."""

    def run_epoch(self) -> None:
        runner = self.runner
        runner.mode, runner.data_loader = "train", self.dataloader
        runner.log_buffer.clear()  # MMCV's logger hooks clear it at every epoch start
        super().run_epoch()


@RUNNERS.register_module()
class EpochBasedRunner(BaseRunner):
    """MMCV's ``EpochBasedRunner``: ``run(data_loaders, workflow, max_epochs=None)``.

    ``workflow=[('train', 2), ('val', 1)]`` trains two epochs, runs one val epoch (losses via
    ``model.val_step``), and repeats until ``max_epochs``; a val phase also runs after the last
    epoch, as in MMCV. The cycle follows the epoch count, so a resumed run meets its val phases
    where the uninterrupted run did.
    """

    def run(self, data_loaders: Sequence[Any], workflow: Sequence[tuple[str, int]], max_epochs: int | None = None,
            **kwargs: Any) -> None:
        """Train per ``workflow``; ``data_loaders`` has one loader (or dataset) per phase."""
        if max_epochs is not None:
            warnings.warn("setting max_epochs in run is deprecated, please set max_epochs in runner_config",
                          DeprecationWarning, stacklevel=2)
            self._max_epochs = max_epochs
        if self._max_epochs is None:
            raise ValueError(
                "max_epochs is not set: give it to the runner (runner=dict(type='EpochBasedRunner', max_epochs=12)) "
                "or to run(..., max_epochs=12)."
            )
        self._start(data_loaders, workflow, kwargs)

    def _make_loop(self, loader: Any) -> Any:
        return _MMCVEpochLoop(self, loader, self._max_epochs)


@RUNNERS.register_module()
class IterBasedRunner(BaseRunner):
    """MMCV's ``IterBasedRunner``: ``run(data_loaders, workflow, max_iters=None)``.

    ``workflow=[('train', 1000), ('val', 100)]`` alternates 1000 training iterations with 100 val
    iterations (the val loader is cycled). Datasets get infinite training loaders; finite loaders
    are cycled (``runner.epoch`` counts passes). Checkpoints are named ``iter_{n}.pth``.
    """

    default_filename_tmpl = "iter_{}.pth"
    _unit = "iter"

    def run(self, data_loaders: Sequence[Any], workflow: Sequence[tuple[str, int]], max_iters: int | None = None,
            **kwargs: Any) -> None:
        """Train per ``workflow`` for ``max_iters`` iterations."""
        if max_iters is not None:
            warnings.warn("setting max_iters in run is deprecated, please set max_iters in runner_config",
                          DeprecationWarning, stacklevel=2)
            self._max_iters = max_iters
        if self._max_iters is None:
            raise ValueError(
                "max_iters is not set: give it to the runner (runner=dict(type='IterBasedRunner', max_iters=90000)) "
                "or to run(..., max_iters=90000)."
            )
        self._start(data_loaders, workflow, kwargs)

    def _make_loop(self, loader: Any) -> Any:
        self.log_buffer.clear()
        return IterBasedTrainLoop(self, loader, self._max_iters)


def _link_latest(path: str) -> None:
    """Point ``latest.pth`` next to ``path`` at it (a relative symlink; a copy where links fail)."""
    latest = os.path.join(os.path.dirname(path), "latest.pth")
    if os.path.abspath(latest) == os.path.abspath(path):
        return
    tmp = latest + ".tmp"
    try:
        if os.path.lexists(tmp):
            os.remove(tmp)
        os.symlink(os.path.basename(path), tmp)
    except OSError:
        import shutil

        shutil.copyfile(path, tmp)
    os.replace(tmp, latest)


class _Null:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: Any) -> None:
        return None


_null = _Null()


def build_runner(cfg: Mapping, default_args: Mapping | None = None) -> BaseRunner:
    """MMCV's ``build_runner(cfg.runner, default_args=dict(model=..., optimizer=..., work_dir=..., logger=...))``.

    ``cfg['type']`` is a name in ``RUNNERS`` (``EpochBasedRunner``, ``IterBasedRunner``, or a
    registered subclass); ``constructor`` may only be MMCV's ``DefaultRunnerConstructor``.
    """
    if not isinstance(cfg, Mapping):
        raise TypeError(f"build_runner expects the runner config dict, got {type(cfg).__name__}.")
    runner_cfg = copy.deepcopy(dict(cfg))
    constructor = runner_cfg.pop("constructor", "DefaultRunnerConstructor")
    if constructor != "DefaultRunnerConstructor":
        raise ValueError(
            f"runner constructor {constructor!r} is not supported; kiln builds runners with MMCV's "
            f"DefaultRunnerConstructor (drop the 'constructor' key or register a runner subclass)."
        )
    runner_cfg.setdefault("type", "EpochBasedRunner")
    return RUNNERS.build(runner_cfg, default_args=dict(default_args or {}), cfg_path="runner")

