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
import time
import warnings
from abc import ABCMeta, abstractmethod
from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn as nn

from kiln.registry import RUNNERS
from kiln.utils.rng import forked_rng

from .hooks.misc import ParamSchedulerHook
from .hooks.val_loss import loss_mode
from .log_buffer import LogBuffer
from .loops import EpochBasedTrainLoop, IterBasedTrainLoop
from .mmcv_checkpoint import MMCVCheckpointMixin
from .mmcv_hooks import MMCVOptimizerHook, WorkflowValHook, check_workflow, loader_for, one_pass
from .mmcv_runner_hooks import MMCVHookRegistration
from .optim import OptimWrapper
from .runner import Runner, parse_losses
from .schedulers import ScheduleSet

__all__ = ["BaseRunner", "EpochBasedRunner", "IterBasedRunner", "build_runner"]


_NO_DEFAULT_HOOKS = {
    "timer": None,
    "logger": None,
    "param_scheduler": None,
    "checkpoint": None,
    "sampler_seed": None,
}


def _num_samples(batch: Any) -> int:
    return len(batch) if isinstance(batch, (list, tuple)) else 1


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


class BaseRunner(MMCVHookRegistration, MMCVCheckpointMixin, Runner, metaclass=ABCMeta):
    """MMCV's ``BaseRunner(model, batch_processor, optimizer, work_dir, logger, meta, max_iters,
    max_epochs)``.

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
            raise TypeError(
                f"{type(self).__name__}: model must be a torch.nn.Module, got {type(model).__name__}."
            )
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
                    "batch_processor and model.train_step()/model.val_step() cannot both be given (as in "
                    "MMCV); drop batch_processor."
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
                f"optimizer must be a torch.optim.Optimizer, a dict of them or None, got "
                f"{type(optimizer).__name__}."
            )
        if logger is not None and not isinstance(logger, logging.Logger):
            raise TypeError(
                f"logger must be a logging.Logger (or None for kiln's), got {type(logger).__name__}."
            )
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
        """For each stage, the hooks called there (MMCV generic methods fanned out), with priorities."""
        from .hooks.base import STAGES, get_priority
        from .hooks.mmcv_compat import as_dispatch_view

        lines = []
        for stage in STAGES:
            names = [
                f"({get_priority(h.priority):<3}) {type(h).__name__}"
                for h in self._hooks
                if stage in as_dispatch_view(h).overridden_stages()
            ]
            if names:
                lines.append(f"{stage}:\n  " + "\n  ".join(names))
        return "\n".join(lines)

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
                f"{type(self).__name__}: the model follows kiln's contract (no train_step), so the runner "
                f"steps the optimizer, but it has none: pass "
                f"optimizer=torch.optim.SGD(model.parameters(), lr=...)."
            )
        if not has_hook and not runner_steps and not self._warned_no_step:
            self._warned_no_step = True
            self.logger.warning(
                "No optimizer hook is registered (optimizer_config=None): as in MMCV, the runner does not "
                "step the optimizer; the weights change only if model.train_step steps it itself. Pass "
                "optimizer_config=dict(grad_clip=None) to register_training_hooks otherwise."
            )
        if kwargs and bp is None and own is None:
            raise TypeError(
                f"run() got extra arguments {sorted(kwargs)}, which MMCV passes to model.train_step; this "
                f"model has no train_step (kiln's contract: model(batch) returns the losses)."
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
                    f"batch_processor() or model.train_step() must return a dict (loss, log_vars, "
                    f"num_samples), got {type(outputs).__name__}."
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
                f"{type(self).__name__} val phase: the model has no val_step, so its training-mode forward "
                f"must return the loss dict; got {type(losses).__name__}."
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
        own = self.batch_processor is not None or self._model_method("val_step") is not None
        # Everything up to the means runs under a forked RNG (a torch DataLoader draws its base seed
        # from it when iterated); after_val_epoch runs after the restore, so a checkpoint saved there
        # holds the training RNG state.
        with forked_rng():
            self.call_hook("before_val_epoch")
            with EventStorage(self.iter), torch.no_grad(), loss_mode(self._raw_model, own):
                for i, data_batch in enumerate(batches):
                    self.state.inner_iter = i  # MMCV: the val batch index during a val phase
                    self.data_batch = data_batch
                    self.call_hook("before_val_iter", i, data_batch)
                    outputs = self._val_step(data_batch)
                    if not isinstance(outputs, dict):
                        raise TypeError(
                            f"batch_processor() or model.val_step() must return a dict, got "
                            f"{type(outputs).__name__}."
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
        self.mode, self.data_loader, self.state.inner_iter = saved
        return means

    @staticmethod
    def _local_means(buf: LogBuffer) -> dict[str, float]:
        buf.average()
        return dict(buf.output)

    @staticmethod
    def _mean_over_ranks_dict(buf: LogBuffer) -> dict[str, float]:
        from . import comm

        local = {
            k: (sum(v * n for v, n in zip(vals, buf.n_history[k])), sum(buf.n_history[k]))
            for k, vals in buf.val_history.items()
        }
        total: dict[str, list[float]] = {}
        for part in comm.all_gather(local):
            for k, (s, w) in part.items():
                acc = total.setdefault(k, [0.0, 0.0])
                acc[0] += s
                acc[1] += w
        return {k: s / w for k, (s, w) in total.items() if w > 0}

    # ================================================================ running
    def train(self, data_loader: Any = None, **kwargs: Any) -> nn.Module:  # type: ignore[override]
        """kiln: train as set up by :meth:`run`. MMCV's one-epoch ``train(loader)`` is refused (``run``)."""
        if data_loader is not None or kwargs:
            raise TypeError(
                f"{type(self).__name__}.train(data_loader) (one MMCV epoch) is not available on its own in "
                f"kiln, whose runner owns the loop: call runner.run([data_loader], [('train', 1)])."
            )
        return super().train()

    def val(self, data_loader: Any = None, **kwargs: Any) -> dict:  # type: ignore[override]
        """MMCV: one val epoch over ``data_loader`` (losses); without one, kiln's evaluator loop."""
        if data_loader is None:
            return super().val()
        self._run_kwargs = kwargs
        with self._ensure_storage():
            return self.val_epoch(one_pass(data_loader), data_loader)

    _unit = "epoch"

    def _start(self, data_loaders: Sequence[Any], workflow: Any, kwargs: dict) -> None:
        """Build the loaders, the loop, the schedules and the val phases; then train."""
        phases = check_workflow(data_loaders, workflow)
        if self.world_size > 1 and (self._model_method("train_step") is not None):
            raise RuntimeError(
                "An MMCV-style model.train_step under distributed training is not supported: kiln's DDP "
                "wrapper synchronizes gradients in forward(); use kiln's model contract (forward returns "
                "the losses)."
            )
        built: dict[int, Any] = {}
        loaders = []
        for obj, (mode, _) in zip(data_loaders, phases):
            if id(obj) not in built:
                built[id(obj)] = loader_for(obj, mode, self.cfg, self.seed, self._unit, self.logger)
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
            "workflow: %s, max: %d %ss",
            list(workflow),
            self.max_epochs if self._unit == "epoch" else self.max_iters,
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
                    WorkflowValHook(interval=cycle, length=n, offset=done, dataloader=loader),
                    priority="LOWEST",
                )

    @abstractmethod
    def run(self, data_loaders: Sequence[Any], workflow: Sequence[tuple[str, int]], **kwargs: Any) -> None:
        """Train per ``workflow`` (each runner kind counts its length in its own unit)."""

    @abstractmethod
    def _make_loop(self, loader: Any) -> Any:
        """The kiln training loop over ``loader``."""


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

    def run(
        self,
        data_loaders: Sequence[Any],
        workflow: Sequence[tuple[str, int]],
        max_epochs: int | None = None,
        **kwargs: Any,
    ) -> None:
        """Train per ``workflow``; ``data_loaders`` has one loader (or dataset) per phase."""
        if max_epochs is not None:
            warnings.warn(
                "setting max_epochs in run is deprecated, please set max_epochs in runner_config",
                DeprecationWarning,
                stacklevel=2,
            )
            self._max_epochs = max_epochs
        if self._max_epochs is None:
            raise ValueError(
                "max_epochs is not set: give it to the runner (runner=dict(type='EpochBasedRunner', "
                "max_epochs=12)) or to run(..., max_epochs=12)."
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

    def run(
        self,
        data_loaders: Sequence[Any],
        workflow: Sequence[tuple[str, int]],
        max_iters: int | None = None,
        **kwargs: Any,
    ) -> None:
        """Train per ``workflow`` for ``max_iters`` iterations."""
        if max_iters is not None:
            warnings.warn(
                "setting max_iters in run is deprecated, please set max_iters in runner_config",
                DeprecationWarning,
                stacklevel=2,
            )
            self._max_iters = max_iters
        if self._max_iters is None:
            raise ValueError(
                "max_iters is not set: give it to the runner (runner=dict(type='IterBasedRunner', "
                "max_iters=90000)) or to run(..., max_iters=90000)."
            )
        self._start(data_loaders, workflow, kwargs)

    def _make_loop(self, loader: Any) -> Any:
        self.log_buffer.clear()
        return IterBasedTrainLoop(self, loader, self._max_iters)


class _Null:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: Any) -> None:
        return None


_null = _Null()


def build_runner(cfg: Mapping, default_args: Mapping | None = None) -> BaseRunner:
    """MMCV's ``build_runner(cfg.runner, default_args=dict(model=..., optimizer=..., work_dir=...))``.

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
