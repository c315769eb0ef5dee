"""The two hooks behind kiln's MMCV 1.x runners: the optimizer step and the workflow's val phases.

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

from .hooks.base import Hook, Priority
from .hooks.val_loss import ValLossHook
from .optim import AmpOptimWrapper, OptimWrapper

__all__ = ["MMCVOptimizerHook", "WorkflowValHook", "OPTIMIZER_HOOK_TYPES"]

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
                f"optimizer_config has keys kiln does not implement: {sorted(kwargs)} (MMCV's fp16 all-reduce "
                f"tuning coalesce/bucket_size_mb is DDP's business in kiln); supported: type, grad_clip, "
                f"cumulative_iters, loss_scale."
            )
        if detect_anomalous_params:
            raise ValueError(
                "optimizer_config detect_anomalous_params=True is not implemented in kiln; drop it (to find "
                "parameters without gradients under DDP use find_unused_parameters=True)."
            )
        if isinstance(cumulative_iters, bool) or not isinstance(cumulative_iters, int) or cumulative_iters < 1:
            raise ValueError(f"optimizer_config cumulative_iters must be an int >= 1, got {cumulative_iters!r}.")
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
                f"optimizer_config / OptimizerHook needs the runner's optimizer to be one torch.optim.Optimizer, "
                f"got {type(opt).__name__}; with a dict of optimizers (GANs) step them in model.train_step and "
                f"pass optimizer_config=None."
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


def _one_pass(loader: Any) -> Iterator[Any]:
    if hasattr(loader, "set_epoch") and hasattr(loader, "set_start"):  # a kiln ResumableLoader
        loader.set_epoch(0)
        loader.set_start(0)
    return iter(loader)


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
                metrics = runner.val_epoch(_one_pass(self.dataloader), self.dataloader)
        else:
            metrics = runner.val_epoch(self._batches(), self.dataloader)
        self._last_n = n
        runner.last_metrics["val_loss"] = metrics
        return metrics
