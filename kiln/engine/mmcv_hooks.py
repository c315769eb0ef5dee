"""The MMCV 1.x runners' workflow parts: the optimizer step hook, the val phases, run()'s arguments.

* :class:`MMCVOptimizerHook` is what ``optimizer_config`` builds on an MMCV runner: after each
  training iteration it backpropagates ``runner.outputs['loss']`` and steps the optimizer, as MMCV's
  ``OptimizerHook`` does, through kiln's :class:`~kiln.engine.OptimWrapper` (so ``grad_clip``,
  ``cumulative_iters`` and fp16 loss scaling are the same code as ``kiln train``'s).
* :class:`WorkflowValHook` runs ``('val', n)`` workflow phases at the points MMCV's runner would
  (scheduling, the val stream position and the end-of-training rule are
  :class:`~kiln.engine.hooks.ValLossHook`'s); each phase is an MMCV val epoch of the runner
  (``before_val_epoch``, ``val_step`` per batch with ``before/after_val_iter``, ``after_val_epoch``).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import torch

from kiln.config.dialects.mmcv import parse_workflow

from .hooks.base import Hook, Priority
from .hooks.val_loss import ValLossHook
from .optim import AmpOptimWrapper, OptimWrapper

__all__ = [
    "MMCVOptimizerHook",
    "WorkflowValHook",
    "OPTIMIZER_HOOK_TYPES",
    "check_workflow",
    "loader_for",
    "DEFAULT_LOADER_SETTINGS",
]

# Loader settings for datasets passed to run() when the runner has no config (cfg=None): the values
# of MMDetection 2.x's dataset configs (data=dict(samples_per_gpu=2, workers_per_gpu=2)).
DEFAULT_LOADER_SETTINGS = {"samples_per_gpu": 2, "workers_per_gpu": 2}

_WORKFLOW_EXAMPLE = "workflow=[('train', 1)] or [('train', 1), ('val', 1)]"

# MMCV's optimizer hook types and what they switch on.
OPTIMIZER_HOOK_TYPES = {
    "OptimizerHook": {},
    "Fp16OptimizerHook": {"fp16": True},
    "GradientCumulativeOptimizerHook": {},
    "GradientCumulativeFp16OptimizerHook": {"fp16": True},
}


class MMCVOptimizerHook(Hook):
    """Backward ``runner.outputs['loss']`` and step the optimizer after each training iteration.

    Args:
        grad_clip: ``None`` or ``dict(max_norm=35, norm_type=2)``; the pre-clip norm is logged as
            ``grad_norm`` (in ``runner.log_buffer`` and the event storage).
        cumulative_iters: step every N iterations (gradients accumulated, the loss divided by N).
        fp16: mixed precision with a loss scaler (MMCV's ``Fp16OptimizerHook``); the runner runs
            the forward under autocast.
        loss_scale: ``'dynamic'``, a number or a dict of GradScaler arguments (with ``fp16``).
    """

    priority = Priority.ABOVE_NORMAL

    def __init__(
        self,
        grad_clip: Mapping | None = None,
        cumulative_iters: int = 1,
        fp16: bool = False,
        loss_scale: Any = "dynamic",
        detect_anomalous_params: bool = False,
        **kwargs: Any,
    ) -> None:
        # MMCV's Fp16OptimizerHook(distributed=True) all-reduces gradients itself; under kiln, DDP does.
        kwargs.pop("distributed", None)
        if kwargs:
            raise TypeError(
                f"optimizer_config has keys kiln does not implement: {sorted(kwargs)} (MMCV's fp16 "
                f"all-reduce "
                f"tuning coalesce/bucket_size_mb is DDP's business in kiln); supported: type, grad_clip, "
                f"cumulative_iters, loss_scale."
            )
        if detect_anomalous_params:
            raise ValueError(
                "optimizer_config detect_anomalous_params=True is not implemented in kiln; drop it (to find "
                "parameters without gradients under DDP use find_unused_parameters=True)."
            )
        if (
            isinstance(cumulative_iters, bool)
            or not isinstance(cumulative_iters, int)
            or cumulative_iters < 1
        ):
            raise ValueError(
                f"optimizer_config cumulative_iters must be an int >= 1, got {cumulative_iters!r}."
            )
        self.grad_clip = dict(grad_clip) if grad_clip else None
        self.cumulative_iters = cumulative_iters
        self.fp16 = bool(fp16)
        self.loss_scale = loss_scale

    def make_wrapper(self, optimizer: Any) -> OptimWrapper:
        """The kiln optimizer wrapper doing what this hook's options ask for around ``optimizer``."""
        kwargs: dict[str, Any] = {"accumulative_counts": self.cumulative_iters, "clip_grad": self.grad_clip}
        if self.fp16:
            return AmpOptimWrapper(optimizer, dtype="float16", loss_scale=self.loss_scale, **kwargs)
        return OptimWrapper(optimizer, **kwargs)

    def before_run(self, runner: Any) -> None:
        """Install this hook's wrapper on the runner (one torch optimizer is needed)."""
        import torch

        opt = runner.optimizer
        if not isinstance(opt, torch.optim.Optimizer):
            raise TypeError(
                f"optimizer_config / OptimizerHook needs the runner's optimizer to be one "
                f"torch.optim.Optimizer, got {type(opt).__name__}; with a dict of optimizers (GANs) step "
                f"them in model.train_step and pass optimizer_config=None."
            )
        runner.set_optim_wrapper(self.make_wrapper(opt))

    def after_train_iter(
        self, runner: Any, batch_idx: int, data_batch: Any = None, outputs: dict | None = None
    ) -> None:
        """``update_params(runner.outputs['loss'])``: backward, and step when the window is complete."""
        mmcv_outputs = runner.outputs
        if not isinstance(mmcv_outputs, Mapping) or "loss" not in mmcv_outputs:
            keys = sorted(mmcv_outputs) if isinstance(mmcv_outputs, Mapping) else type(mmcv_outputs).__name__
            raise KeyError(
                f"OptimizerHook: the training step's outputs have no 'loss' to backpropagate ({keys}); "
                f"model.train_step must return dict(loss=..., log_vars=..., num_samples=...)."
            )
        ow = runner.optim_wrapper
        stepping = ow.should_update()
        ow.update_params(mmcv_outputs["loss"])
        if stepping and ow.last_grad_norm is not None:
            norm = ow.last_grad_norm
            runner.log_buffer.update({"grad_norm": norm}, mmcv_outputs.get("num_samples", 1))
            if isinstance(outputs, dict):
                outputs["grad_norm"] = norm  # the step's logged variables (the event storage's flush)

    def __repr__(self) -> str:
        return (
            f"MMCVOptimizerHook(grad_clip={self.grad_clip}, cumulative_iters={self.cumulative_iters}, "
            f"fp16={self.fp16})"
        )


def one_pass(loader: Any) -> Iterator[Any]:
    """The batches of one pass over ``loader``, from its first batch; lazy (opened when first read)."""
    if hasattr(loader, "set_epoch") and hasattr(loader, "set_start"):  # a kiln ResumableLoader
        loader.set_epoch(0)
        loader.set_start(0)
    yield from loader


class WorkflowValHook(ValLossHook):
    """One ``('val', n)`` workflow phase of an MMCV runner (see the module docstring).

    Epoch-based: ``n`` val epochs over ``dataloader``, each with its epoch hooks. Iteration-based:
    ``n`` val iterations continuing the val stream, wrapped in one ``before/after_val_epoch``.
    Runs after every other hook of the training epoch (iteration), e.g. after the checkpoint is
    saved, as in MMCV where the val phase follows the train phase.
    """

    priority = Priority.LOWEST

    def run_phase(self, runner: Any, n: int) -> dict[str, float]:
        """Run the phase's val epoch(s) on the runner; returns the last epoch's mean log variables."""
        metrics: dict[str, float] = {}
        if self._by_epoch:
            for _ in range(self.length):
                metrics = runner.val_epoch(one_pass(self.dataloader), self.dataloader)
        else:
            metrics = runner.val_epoch(self._batches(), self.dataloader)
        self._last_n = n
        runner.last_metrics["val_loss"] = metrics
        return metrics


def check_workflow(data_loaders: Any, workflow: Any) -> list[tuple[str, int]]:
    """Check ``run(data_loaders, workflow)``'s arguments as MMCV does (and what kiln adds); return the phases.

    One loader per phase (``len(data_loaders) == len(workflow)``), phases ``(mode, n)`` with mode
    ``'train'``/``'val'``, at least one train phase, one training stream, no val phase first.
    """
    if not isinstance(data_loaders, (list, tuple)):
        raise TypeError(
            f"run() expects a list of data loaders (or datasets), one per workflow phase, got "
            f"{type(data_loaders).__name__}; e.g. runner.run([train_loader], [('train', 1)])."
        )
    if not isinstance(workflow, (list, tuple)) or not workflow:
        raise ValueError(
            f"workflow={workflow!r}: expected a non-empty list of (mode, n) phases, e.g. {_WORKFLOW_EXAMPLE}."
        )
    phases = parse_workflow(workflow)  # (mode, n) checks shared with the config translator
    if len(data_loaders) != len(workflow):
        raise ValueError(
            f"run() got {len(data_loaders)} data loader(s) for a workflow of {len(workflow)} phase(s) "
            f"{list(workflow)}; MMCV requires one per phase (len(data_loaders) == len(workflow)), e.g. "
            f"runner.run([train_loader, val_loader], [('train', 1), ('val', 1)])."
        )
    train = [i for i, (m, _) in enumerate(phases) if m == "train"]  # (parse_workflow: at least one)
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


def loader_for(obj: Any, mode: str, cfg: Any, seed: int | None, unit: str, logger: Any) -> Any:
    """``obj`` if it is a loader; a dataset gets one built with ``cfg``'s ``data`` settings.

    ``samples_per_gpu`` (or ``imgs_per_gpu``) and ``workers_per_gpu`` come from ``cfg.data``; without
    a config, :data:`DEFAULT_LOADER_SETTINGS` (MMDetection's). A training loader shuffles (seeded,
    resumable; infinite for iteration-based runners), a val loader reads in order.
    """
    if not isinstance(obj, torch.utils.data.Dataset):
        if not hasattr(obj, "__iter__"):
            raise TypeError(
                f"run(): a {mode} phase got {type(obj).__name__}, which is neither a data loader "
                f"nor a dataset."
            )
        return obj
    from kiln.data import build_dataloader

    settings = dict(DEFAULT_LOADER_SETTINGS)
    data = cfg.get("data") if cfg is not None and hasattr(cfg, "get") else None
    if data is not None:
        settings["samples_per_gpu"] = data.get(
            "samples_per_gpu", data.get("imgs_per_gpu", settings["samples_per_gpu"])
        )
        settings["workers_per_gpu"] = data.get("workers_per_gpu", settings["workers_per_gpu"])
        source = "the config's data settings"
    else:
        source = "MMDetection's defaults (the runner has no cfg)"
    logger.info(
        "run(): building the %s data loader for %s with samples_per_gpu=%d, workers_per_gpu=%d (%s).",
        mode,
        type(obj).__name__,
        settings["samples_per_gpu"],
        settings["workers_per_gpu"],
        source,
    )
    return build_dataloader(
        obj,
        samples_per_gpu=settings["samples_per_gpu"],
        workers_per_gpu=settings["workers_per_gpu"],
        shuffle=mode == "train",  # val phases read the set in order (deterministic losses)
        seed=seed,
        runner_type="IterBasedRunner" if unit == "iter" else "EpochBasedRunner",
    )
