"""The Runner: owns the model, optimizer, schedules, loaders, hooks and run state.

Build it from objects (``Runner(model=..., train_dataloader=..., optim_wrapper=..., max_epochs=12)``)
or from a config (``Runner.from_cfg(cfg)``, see :mod:`kiln.engine.runner_builder`). Config keys are
read only there; the runner and its loops work with plain objects.

Training::

    runner.train()   # -> the model; resumes first if resume=True (from resume_from or work_dir)
    runner.val()     # -> metrics dict
    runner.test()
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import torch
import torch.nn as nn

from kiln.registry import HOOKS, RUNNERS

from . import comm
from .checkpoint import Checkpointer
from .device import apply_env_cfg, follow_device, make_batch_mover, pin_loader, prepare_model, resolve_device
from .events import EventStorage
from .hooks.base import (
    STAGES,
    CallbackHook,
    Hook,
    HookBase,
    HookError,
    StageTable,
    build_stage_table,
    get_priority,
)
from .loops import build_loop, train_loop_cfg
from .nonfinite import UNSMOOTHED, NonFiniteLossError, check_columns
from .optim import OptimWrapper, build_optim_wrapper
from .preemption import PreemptionGuard, PreemptStop, TrainingPreempted
from .runner_state import RunnerCheckpointMixin, _ScheduleHolder
from .schedulers import ParamScheduler, ScheduleSet, build_param_schedulers
from .state import RunState
from .step_metrics import convert_columns, split_columns
from .train_step import make_train_step, parse_losses
from .work_dir_lock import WorkDirLock, remove_stale_temp_files

__all__ = ["Runner", "parse_losses", "train_loop_cfg"]

logger = logging.getLogger(__name__)


@RUNNERS.register_module()
class Runner(RunnerCheckpointMixin):
    """Trains, validates and tests a model with hooks.

    Args:
        model: an ``nn.Module`` following the model contract (train mode returns a loss dict).
        work_dir: where checkpoints, logs and metrics go (created on the main process).
        train_dataloader / val_dataloader / test_dataloader: iterables of batches.
        optim_wrapper: an :class:`OptimWrapper`, a ``torch.optim.Optimizer`` or an ``optim_wrapper``
            config dict (``dict(optimizer=dict(type='SGD', lr=0.01), clip_grad=...)``).
        param_scheduler: schedule shapes or their configs (MMEngine style), or torch LR schedulers
            (stepped once per iteration, as Detectron2 does).
        train_cfg / val_cfg / test_cfg: MMEngine loop configs, built through ``LOOPS``:
            ``dict(type='EpochBasedTrainLoop', max_epochs=12, val_interval=1, val_begin=1)``,
            ``dict(type='IterBasedTrainLoop', max_iters=..., val_interval=...)`` or the short
            ``dict(by_epoch=True, max_epochs=12)``; ``val_cfg=dict(type='ValLoop')`` (the default).
        max_epochs / max_iters / val_interval: the legacy spelling of ``train_cfg`` (see
            :func:`train_loop_cfg`).
        val_evaluator / test_evaluator: objects with ``reset/process/evaluate``.
        default_hooks: ``{name: hook or config or None}`` overriding the defaults (timer, logger,
            param_scheduler, checkpoint, sampler_seed); ``None`` removes one.
        custom_hooks: more hooks (objects or configs with optional ``priority``).
        load_from: a checkpoint to load weights from (optimizer etc. start fresh).
        resume: resume everything: ``True`` finds the latest checkpoint in ``work_dir``; a path
            resumes from that file.
        seed: the run seed (stored in checkpoints; seeding itself is done by ``default_setup``).
        cfg: the config text/object, stored in checkpoint meta.
        find_unused_parameters: for DDP wrapping when the world size is > 1.
        device: where to train: ``None`` (CUDA when available, the local rank's GPU under DDP;
            else the CPU), ``'cpu'``, ``'cuda'``, ``'cuda:N'``; CUDA where there is none is an
            error (see :mod:`kiln.engine.device`). The model, batches, AMP and EMA follow it;
            ``runner.device`` tells which it is.
        env_cfg: MMEngine's ``env_cfg`` (``cudnn_benchmark``, ``mp_cfg``, ``dist_cfg``).
        sync_bn: ``'torch'`` converts batch norm to ``torch.nn.SyncBatchNorm`` under DDP.
        channels_last: weights and image batches in NHWC memory order.
    """

    def __init__(
        self,
        model: nn.Module | None,
        work_dir: str | None = None,
        train_dataloader: Any = None,
        val_dataloader: Any = None,
        test_dataloader: Any = None,
        optim_wrapper: Any = None,
        param_scheduler: Any = None,
        max_epochs: int | None = None,
        max_iters: int | None = None,
        val_interval: int | None = None,
        train_cfg: Mapping[str, Any] | None = None,
        val_cfg: Mapping[str, Any] | None = None,
        test_cfg: Mapping[str, Any] | None = None,
        val_evaluator: Any = None,
        test_evaluator: Any = None,
        default_hooks: Mapping[str, Any] | None = None,
        custom_hooks: Sequence[Any] | None = None,
        load_from: str | None = None,
        resume: bool | str = False,
        seed: int | None = None,
        cfg: Any = None,
        find_unused_parameters: bool = False,
        allow_pickle: bool = False,
        device: str | torch.device | None = None,
        env_cfg: Mapping[str, Any] | None = None,
        sync_bn: str | None = None,
        channels_last: bool = False,
        visualizer: Any = None,
    ) -> None:
        self.work_dir = os.path.abspath(work_dir) if work_dir else None
        if self.work_dir and comm.is_main_process():
            os.makedirs(self.work_dir, exist_ok=True)
        self.cfg = cfg
        self.seed = seed
        self.rank, self.world_size = comm.get_rank(), comm.get_world_size()
        # ---- device: decided once (kiln.engine.device); model, batches, loaders, AMP follow it ----
        self.device = resolve_device(device, comm.get_local_rank())
        apply_env_cfg(env_cfg)
        self.channels_last = bool(channels_last)
        self._raw_model = prepare_model(
            model if model is not None else nn.Module(), self.device, sync_bn=sync_bn,
            channels_last=self.channels_last, distributed=self.world_size > 1,
        )
        self._move_batch = make_batch_mover(self.device, self.channels_last)  # None: nothing to move
        self.model = self._wrap_model(self._raw_model, find_unused_parameters)
        self.train_dataloader = train_dataloader
        self.val_dataloader = val_dataloader
        self.test_dataloader = test_dataloader
        for loader in (train_dataloader, val_dataloader, test_dataloader):
            pin_loader(loader, self.device)
        self.val_evaluator = val_evaluator
        self.test_evaluator = test_evaluator
        # What the config's `visualizer` built (DetLocalVisualizer); hooks draw through it.
        self.visualizer = visualizer
        self.load_from = load_from
        self.resume_from = resume
        self.allow_pickle = allow_pickle

        # ---- run state (written by the loops only; see RunState) ---------------------------------
        self.state = RunState()
        # Whether the metric flush logs the loop's per-iteration `time`/`data_time` (IterTimerHook).
        self.log_iter_times = False
        self.storage: EventStorage | None = None
        self.last_metrics: dict[str, dict] = {}
        self._hooks: list[Hook] = []
        self._hook_keys: dict[int, str] = {}
        self._stages: StageTable = build_stage_table([])
        self._training = False  # inside train(): the stage table is resolved for this run
        #: the SIGTERM/SIGINT handler of the running train() (None otherwise); see kiln.engine.preemption
        self.preemption: PreemptionGuard | None = None
        self._resumed = False

        # ---- optimization ---------------------------------------------------------------------
        self.optim_wrapper: OptimWrapper | None = None
        if optim_wrapper is not None:
            self.optim_wrapper = build_optim_wrapper(self._raw_model, optim_wrapper)
            follow_device(self.optim_wrapper, self.device)
        self.train_loop: Any = None
        loop_cfg = train_loop_cfg(train_cfg, max_epochs, max_iters, val_interval)
        if train_dataloader is not None:
            if loop_cfg is None:
                raise ValueError(
                    "Training needs a length: give exactly one of max_epochs / max_iters, or train_cfg="
                    "dict(by_epoch=True, max_epochs=12) (or dict(type='IterBasedTrainLoop', max_iters=...))."
                )
            if self.optim_wrapper is None:
                raise ValueError(
                    "Training needs an optimizer: pass optim_wrapper= (or optimizer= in the config)."
                )
            self.train_loop = build_loop(loop_cfg, "train_cfg", runner=self, dataloader=train_dataloader)
        self.val_loop = self._build_eval_loop(val_cfg, "ValLoop", val_dataloader, val_evaluator, "val_cfg")
        self.test_loop = self._build_eval_loop(
            test_cfg, "TestLoop", test_dataloader, test_evaluator, "test_cfg"
        )

        self.schedule_set: ScheduleSet | None = None
        self.torch_schedulers: list[Any] = []
        self._setup_schedulers(param_scheduler)

        # ---- checkpointing ----------------------------------------------------------------------
        checkpointables: dict[str, Any] = {"scheduler": _ScheduleHolder(self)}
        if self.optim_wrapper is not None:
            checkpointables["optimizer"] = self.optim_wrapper
        self.checkpointer = Checkpointer(
            self._raw_model, self.work_dir or "", allow_pickle=allow_pickle, **checkpointables
        )

        # ---- hooks ------------------------------------------------------------------------------
        self._register_default_hooks(default_hooks)
        for h in custom_hooks or ():
            self.register_hook(h)

    # ============================================================================== construction
    @classmethod
    def from_cfg(cls, cfg: Any) -> Runner:
        """Build a runner from a config in the seed-001 (MMDetection v2) or MMEngine schema."""
        from .runner_builder import build_runner_from_cfg

        return build_runner_from_cfg(cls, cfg)

    def _build_eval_loop(
        self, cfg: Mapping[str, Any] | None, default: str, loader: Any, evaluator: Any, name: str
    ) -> Any:
        if loader is None:
            return None
        cfg = {"type": default, **dict(cfg or {})}
        return build_loop(cfg, name, runner=self, dataloader=loader, evaluator=evaluator)

    def _wrap_model(self, model: nn.Module, find_unused_parameters: bool) -> nn.Module:
        if self.world_size > 1 and any(p.requires_grad for p in model.parameters()):
            import inspect

            from torch.nn.parallel import DistributedDataParallel as DDP

            kwargs: dict[str, Any] = {"find_unused_parameters": find_unused_parameters}
            # Don't re-broadcast buffers every forward (Detectron2's choice); newer torch renamed it.
            params = inspect.signature(DDP.__init__).parameters
            kwargs["forward_sync_buffers" if "forward_sync_buffers" in params else "broadcast_buffers"] = (
                False
            )
            if self.device.type == "cuda":
                return DDP(model, device_ids=[self.device.index], **kwargs)
            import torch.distributed as dist

            if dist.get_backend() == "nccl":
                raise ValueError(
                    f"device={self.device.type!r} under the nccl backend: NCCL only reduces CUDA tensors; "
                    f"train on the GPUs (leave device unset) or start the workers with gloo."
                )
            return DDP(model, **kwargs)
        return model

    # -------------------------------------------------------------- run state (read-only views)
    @property
    def epoch(self) -> int:
        """The current epoch (0-based): ``state.epoch``."""
        return self.state.epoch

    @property
    def iter(self) -> int:
        """The current iteration (0-based; in ``after_train_iter`` the one just run): ``state.iter``."""
        return self.state.iter

    @property
    def inner_iter(self) -> int:
        """The current iteration's place in its epoch: ``state.inner_iter``."""
        return self.state.inner_iter

    @property
    def stop_training(self) -> bool:
        """Whether a stop was requested (:meth:`request_stop`)."""
        return self.state.stop_requested

    @stop_training.setter
    def stop_training(self, value: bool) -> None:
        # MMEngine/MMCV hooks write `runner.stop_training = True` (kiln: runner.request_stop()).
        if value:
            self.state.request_stop()

    def request_stop(self) -> None:
        """End training after the current iteration (epoch-end and ``after_train`` hooks still run)."""
        self.state.request_stop()

    @property
    def resumed(self) -> bool:
        """Whether this runner restored a checkpoint with :meth:`resume`."""
        return self._resumed

    @property
    def val_interval(self) -> int:
        """Validate every N epochs/iterations (the training loop's ``val_interval``)."""
        return getattr(self.train_loop, "val_interval", 1)

    @property
    def val_begin(self) -> int:
        """The first epoch/iteration to validate after (the training loop's ``val_begin``)."""
        return getattr(self.train_loop, "val_begin", 1)

    @property
    def unwrapped_model(self) -> nn.Module:
        """The model without its DDP wrapper."""
        return self._raw_model

    @property
    def max_epochs(self) -> int | None:
        """Training length in epochs (``None`` for iteration-based training)."""
        return getattr(self.train_loop, "max_epochs", None)

    @property
    def max_iters(self) -> int:
        """Training length in iterations."""
        return getattr(self.train_loop, "max_iters", 0)

    @property
    def by_epoch(self) -> bool:
        """Whether training counts epochs (hooks' ``by_epoch`` defaults follow this)."""
        return bool(getattr(self.train_loop, "by_epoch", False))

    @property
    def optimizer(self) -> Any:
        """The wrapped ``torch.optim`` optimizer (Detectron2 hooks use ``trainer.optimizer``)."""
        return self.optim_wrapper.optimizer if self.optim_wrapper is not None else None

    @property
    def max_iter(self) -> int:
        """Detectron2's name for :attr:`max_iters`."""
        return self.max_iters

    @property
    def epoch_length(self) -> int | None:
        """Iterations per epoch (``None`` for an infinite loader)."""
        return getattr(self.train_loop, "epoch_length", None)

    def _setup_schedulers(self, param_scheduler: Any) -> None:
        if param_scheduler is None:
            return
        items = (
            [param_scheduler]
            if isinstance(param_scheduler, (Mapping, ParamScheduler))
            else list(param_scheduler)
        )
        shapes: list[ParamScheduler] = []
        for item in items:
            if isinstance(item, (Mapping, ParamScheduler)):
                shapes.extend(build_param_schedulers([item]))
            elif hasattr(item, "step") and hasattr(item, "state_dict"):
                self.torch_schedulers.append(item)
            else:
                raise TypeError(
                    f"param_scheduler entries must be kiln schedulers, their configs or torch LR "
                    f"schedulers; got {type(item).__name__}."
                )
        if shapes:
            if self.optim_wrapper is None:
                raise ValueError("param_scheduler was given but there is no optimizer to schedule.")
            self.schedule_set = ScheduleSet(
                self.optim_wrapper, shapes, epoch_length=self.epoch_length, max_iters=self.max_iters or None
            )

    def _register_default_hooks(self, overrides: Mapping[str, Any] | None) -> None:
        from .hooks import CheckpointHook, DistSamplerSeedHook, IterTimerHook, LoggerHook, ParamSchedulerHook
        from .hooks.eval import EvalHook

        defaults: dict[str, Any] = {
            "timer": IterTimerHook(),
            "logger": LoggerHook(),
            "param_scheduler": ParamSchedulerHook(),
            # Epoch-based: every epoch; iteration-based: only at the end unless configured.
            "checkpoint": CheckpointHook(interval=1 if self.by_epoch else -1),
            "sampler_seed": DistSamplerSeedHook(),
        }
        if not self.work_dir:  # nowhere to save: no default checkpoints (an explicit hook still fails)
            defaults["checkpoint"] = None
        if self.val_loop is not None:
            # Multiples of val_interval from val_begin on (MMEngine's loops count the same way).
            interval, begin = self.val_interval, self.val_begin
            defaults["eval"] = EvalHook(interval=interval, start=-(-begin // interval) * interval)
        for k, v in (overrides or {}).items():
            defaults[k] = v
        for name, hook in defaults.items():
            if hook is not None:
                self.register_hook(hook, key=name)

    # ================================================================================== hooks
    def register_hook(self, hook: Any, priority: int | str | None = None, key: str | None = None) -> Hook:
        """Add a hook (object, config dict with ``type``, or Detectron2 ``HookBase``).

        Hooks run in priority order (lower first); equal priorities keep registration order.
        """
        if isinstance(hook, Mapping):
            cfg = dict(hook)
            if priority is None and "priority" in cfg:
                priority = cfg.pop("priority")
            hook = HOOKS.build(cfg, cfg_path=f"hooks.{key or cfg.get('type')}")
        if not isinstance(hook, Hook):
            raise TypeError(
                f"register_hook expects a kiln Hook (or HookBase / config dict), got {type(hook).__name__}; "
                f"for a plain function use register_callback(fn, stage=...)."
            )
        if isinstance(hook, HookBase) and hook.trainer is None:
            hook.attach(self)
        prio = get_priority(priority if priority is not None else hook.priority)
        hook.priority = prio
        # Insert after every hook with priority <= prio: stable within a priority.
        pos = len(self._hooks)
        for i in range(len(self._hooks) - 1, -1, -1):
            if get_priority(self._hooks[i].priority) <= prio:
                pos = i + 1
                break
        else:
            pos = 0
        self._hooks.insert(pos, hook)
        if key is not None:
            self._hook_keys[id(hook)] = key
        # Registered while training: periods are resolved for this run at once (the next epoch's loop
        # dispatches it); before training, train() resolves them.
        self._stages = build_stage_table(self._hooks, runner=self if self._training else None)
        return hook

    def register_hooks(self, hooks: Iterable[Any]) -> None:
        """Register several hooks (``None`` entries are skipped, as in Detectron2)."""
        for h in hooks:
            if h is not None:
                self.register_hook(h)

    def register_callback(
        self, fn: Callable, stage: str = "after_train_iter", priority: int | str = "NORMAL"
    ) -> Hook:
        """Call ``fn(runner, *stage_args)`` at ``stage``; returns the wrapping hook."""
        return self.register_hook(CallbackHook(fn, stage, priority))

    @property
    def hooks(self) -> list[Hook]:
        """Registered hooks in call order."""
        return list(self._hooks)

    def get_hook(self, cls_or_key: type | str) -> Hook | None:
        """The first hook of a class, or registered under a default-hook key."""
        for h in self._hooks:
            if isinstance(cls_or_key, str):
                if self._hook_keys.get(id(h)) == cls_or_key or type(h).__name__ == cls_or_key:
                    return h
            elif isinstance(h, cls_or_key):
                return h
        return None

    def stage_callables(self, stage: str) -> tuple[Callable, ...]:
        """The callables of ``stage`` for this run, in priority order (periods not applied)."""
        return self._stages[stage]

    def stage_entries(self, stage: str) -> tuple[tuple[Callable, Any], ...]:
        """``(callable, period or None)`` of ``stage`` for this run: the loops' dispatch input."""
        return self._stages.entries(stage)

    def call_hook(self, stage: str, *args: Any) -> None:
        """Call ``stage`` on every hook overriding it (and due); a failure names the hook and stage.

        ``after_train_epoch`` skips hooks whose epoch ``period`` is not due after this epoch.
        """
        fns = self._stages[stage]
        if stage == "after_train_epoch" and self._stages.periods:
            periods, n = self._stages.periods, self.state.epoch + 1
            fns = tuple(f for f in fns if id(f) not in periods or periods[id(f)].is_due(n, self.max_epochs))
        for fn in fns:
            try:
                fn(self, *args)
            except (HookError, NonFiniteLossError):  # (the run's own verdict, not the hook's failure)
                raise
            except Exception as exc:
                owner = getattr(fn, "__self__", None)
                raise HookError(
                    f"{type(owner).__name__} failed in {stage}: {type(exc).__name__}: {exc}"
                ) from exc

    def hook_table(self) -> str:
        """A readable table: for each stage, the hooks that run there (with priorities)."""
        lines = []
        for stage in STAGES:
            names = [
                f"({get_priority(h.priority):<3}) {type(h).__name__}"
                for h in self._hooks
                if stage in h.overridden_stages()
            ]
            if names:
                lines.append(f"{stage}:\n  " + "\n  ".join(names))
        return "\n".join(lines)

    # ================================================================================== steps
    def train_step(self, data_batch: Any) -> dict[str, Any]:
        """One optimization step on ``data_batch``; returns log variables (tensors)."""
        return self.make_train_step()(data_batch)

    def make_train_step(self) -> Callable[[Any], dict[str, Any]]:
        """The step function for the current model/optimizer (:func:`.train_step.make_train_step`).

        The batch goes to the run's device first (not on the CPU: there it already is).
        """
        step = make_train_step(self.model, self._raw_model, self.optim_wrapper)
        move = self._move_batch
        return step if move is None else (lambda data_batch: step(move(data_batch)))

    def eval_step(self, data_batch: Any) -> Any:
        """The model's eval-mode outputs for ``data_batch`` (``model.val_step`` when defined)."""
        if self._move_batch is not None:
            data_batch = self._move_batch(data_batch)
        own = getattr(self._raw_model, "val_step", None)
        if own is not None:
            return own(data_batch)
        return self.model(data_batch)

    def flush_metrics(self) -> None:
        """Move the per-iteration outputs buffered by the loop into the event storage.

        The loop only appends each step's log variables to a list (no tensor-to-float syncs); this
        puts them into the storage at their own iterations, in bulk (see :mod:`.step_metrics`: one
        tensor stack for all values, one history extend per scalar). Logger, checkpoint and eval
        hooks call it.
        """
        pending = self.state.records
        storage = self.storage
        if not pending or storage is None:
            pending.clear()
            return
        cols = split_columns(pending, self.log_iter_times)
        pending.clear()
        reduce = self._mean_over_ranks if self.world_size > 1 else None
        ow = self.optim_wrapper
        out = check_columns(  # NaN/Inf losses: stop here (before any checkpoint) or drop skipped steps
            convert_columns(cols, reduce),
            ow.nonfinite_loss if ow is not None else "raise",
            self.epoch_length if self.by_epoch else None,
            ow.take_skipped() if ow is not None else 0,
        )
        for name, (its, vals) in out.items():
            storage.put_scalar_series(name, vals, its, False if name in UNSMOOTHED else None)

    def _mean_over_ranks(self, stacked: torch.Tensor, signature: list) -> torch.Tensor:
        """Average the buffered scalars over ranks (one all_reduce per flush, as Detectron2 logs).

        Ranks flush at the same points; if their buffers differ (a loss present on some ranks
        only), the local values are logged instead, with a warning.
        """
        import zlib

        import torch.distributed as dist

        crc = zlib.crc32(repr(signature).encode())  # str hashes differ between processes
        if len(set(comm.all_gather(crc))) != 1:
            if not getattr(self, "_warned_reduce", False):
                logger.warning("Logged metrics differ between ranks; logging each rank's own values.")
                self._warned_reduce = True
            return stacked
        if dist.get_backend() == "nccl" and stacked.device.type != "cuda":
            stacked = stacked.cuda()
        dist.all_reduce(stacked)
        return stacked / self.world_size

    def progress(self, iterable: Any, desc: str) -> Any:
        """Show an eval loader's progress on the main process: a bar in a terminal, a log line every
        10 s when output goes to a file (:func:`kiln.utils.progress.progress`)."""
        if not comm.is_main_process():
            return iterable
        from kiln.utils.progress import progress

        return progress(iterable, desc, logger=logger)

    # ================================================================================== running
    def _ensure_storage(self) -> EventStorage:
        if self.storage is None:
            self.storage = EventStorage(self.iter)
        return self.storage

    def open_storage(self) -> EventStorage:
        """The run's event storage (created at the current iteration); use it as a context manager."""
        return self._ensure_storage()

    def train(self) -> nn.Module:
        """Train (resuming or loading weights first as configured); returns the model."""
        if self.train_loop is None:
            raise RuntimeError("Runner.train(): no train_dataloader was given.")
        # One training per work_dir (rank 0 holds the lock); then no save can be in progress there, so
        # the temp files of saves an earlier run was killed in can go.
        lock = WorkDirLock(self.work_dir) if self.work_dir and comm.is_main_process() else None
        if lock is not None:
            lock.acquire()
            remove_stale_temp_files(self.work_dir)
        try:
            return self._train()
        finally:
            if lock is not None:
                lock.release()

    def _train(self) -> nn.Module:
        storage = self._ensure_storage()
        self.state.last_step_end = None  # this run's first `time` starts at its first batch
        with storage:
            self.call_hook("before_run")
            try:
                self._init_model_weights()
                self._load_or_resume()
                storage.iter = self.iter
                # Now that the run is known, hooks may drop stages they have nothing to do in.
                self._stages = build_stage_table(self._hooks, runner=self)
                self._training = True
                if self.iter >= self.max_iters:
                    logger.info("Training already finished (iteration %d of %d).", self.iter, self.max_iters)
                else:
                    # 1-based, as the console lines and the checkpoint files count.
                    where = f"epoch {self.epoch + 1}, " if self.by_epoch else ""
                    n, total = self.iter + 1, self.max_iters
                    logger.info("Start training at %siteration %d of %d", where, n, total)
                self.preemption = PreemptionGuard(self.state)
                with self.preemption:
                    self.train_loop.run()
            except PreemptStop as stop:
                with contextlib.suppress(NonFiniteLossError):
                    self.flush_metrics()
                raise self._save_preempted(stop.signum) from None
            except BaseException:
                # Keep what the failed run logged, without a NaN-loss error masking this one.
                with contextlib.suppress(NonFiniteLossError):
                    self.flush_metrics()
                raise
            else:
                self.flush_metrics()  # (raises NonFiniteLossError for a NaN loss in the last steps)
            finally:
                self._training = False
                self.preemption = None
                self.call_hook("after_run")
        return self.model

    def _save_preempted(self, signum: int) -> TrainingPreempted:
        """Checkpoint the position a preemption signal stopped at; the exception to raise."""
        path = None
        if self.work_dir:
            path = self.save_checkpoint(f"preempted_iter_{self.iter}")
        stopped = TrainingPreempted(signum, self.iter, path)
        if comm.is_main_process():
            if path:
                logger.warning("%s. Resume with `kiln train CONFIG --resume` (or Runner(resume=True)).",
                               stopped)
            else:
                logger.warning("%s.", stopped)
        return stopped

    def _init_model_weights(self) -> None:
        """Load the pretrained weights a model's config names (``init_cfg``/``pretrained``) before the
        checkpoint a run loads or resumes from, as MMEngine's ``train()`` does; models read no file at
        build time. Skipped when resuming from a named checkpoint (it replaces every weight)."""
        model = self._raw_model
        if getattr(model, "pretrained_pending", False) and not isinstance(self.resume_from, str):
            model.load_pending_pretrained()

    def val(self) -> dict:
        """Run the validation loop once; returns metrics."""
        if self.val_loop is None:
            raise RuntimeError("Runner.val(): no val_dataloader was given.")
        with self._ensure_storage():
            return self.val_loop.run()

    def test(self) -> dict:
        """Run the test loop once; returns metrics."""
        if self.test_loop is None:
            raise RuntimeError("Runner.test(): no test_dataloader was given.")
        with self._ensure_storage():
            # load_from only if nothing was loaded yet (a CLI `test` loads its checkpoint first).
            if self.load_from and not self._resumed and not getattr(self, "_weights_loaded", False):
                self.load_checkpoint(self.load_from)
            return self.test_loop.run()

    def __repr__(self) -> str:
        return (
            f"Runner(model={type(self._raw_model).__name__}, work_dir={self.work_dir!r}, "
            f"epoch={self.epoch}, iter={self.iter}/{self.max_iters}, hooks={len(self._hooks)})"
        )
