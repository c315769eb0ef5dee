"""ValLossHook: MMCV ``workflow`` ``('val', n)`` phases, i.e. validation *losses* during training.

In MMCV, ``workflow=[('train', 2), ('val', 1)]`` trains 2 epochs, then runs 1 epoch over the val
loader computing the model's losses (no optimizer step) and logs their averages as
``Epoch(val) [2][25]  loss_cls: ..., loss: ...``, and repeats. Evaluation (mAP) is the separate
``evaluation=`` key (:class:`~kiln.engine.hooks.EvalHook`). ``Runner.from_cfg`` turns each
``('val', n)`` phase into one of these hooks.

How the losses are computed without changing training:

* ``model.val_losses(batch)`` when the (unwrapped) model defines it, called with the model in eval
  mode; otherwise the kiln model contract (``model(batch)`` returns the loss dict when
  ``model.training``): the model stays in training mode but every normalization layer with running
  statistics (``_BatchNorm``, ``SyncBatchNorm``, ``InstanceNorm*``) and every dropout layer is put in
  eval mode, so running statistics are not updated and the losses are deterministic (MMCV runs its
  val phase in ``model.eval()``). Every module's ``training`` flag is restored afterwards;
* under ``torch.no_grad()`` and the optimizer wrapper's autocast;
* under a forked RNG (python, numpy, torch CPU and CUDA states saved and restored), so a run with
  val phases trains bit-identical weights to the same run without them;
* inside a throwaway :class:`~kiln.engine.EventStorage`, so scalars the model puts while computing
  its losses (``rpn_num_pos_anchors``, ...) do not mix into the training metrics.

The losses are parsed with :func:`kiln.engine.parse_losses` (so the keys are training's: ``loss``,
``loss_cls``, ...), averaged over the samples of the pass (each batch weighs ``len(batch)``, the
MMCV ``num_samples`` weighting; a batch that is not a list/tuple weighs 1), and over ranks (sums
and weights are gathered, so the result is the mean over every sample of every rank). The means go
into the event storage as ``val/<name>`` (``smoothing_hint=False``, at the current storage
iteration, as EvalHook's metrics), are written by the file writers of the logger hooks
(``metrics.jsonl``, TensorBoard) and printed as one console line; ``runner.last_metrics['val_loss']``
holds the last ones. They are not passed to ``after_val_epoch`` (save-best and early stopping keep
listening to the evaluator's metrics only) and EMA weights are not swapped in.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Mapping
from typing import Any

import torch
import torch.nn as nn

from kiln.registry import HOOKS
from kiln.utils.rng import forked_rng

from .. import comm
from ..data_position import open_loader_at
from .base import Hook, Priority
from .period import Every

__all__ = ["ValLossHook", "loss_mode", "forked_rng"]

logger = logging.getLogger(__name__)

# Layers whose training mode changes state (running statistics) or outputs (dropout masks).
_EVAL_IN_LOSS_MODE: tuple[type, ...] = (nn.modules.batchnorm._NormBase, nn.modules.dropout._DropoutNd)


@contextlib.contextmanager
def loss_mode(model: nn.Module, eval_mode: bool = False) -> Iterator[nn.Module]:
    """Put ``model`` in the mode that computes losses without side effects; restore every flag after.

    ``eval_mode=False`` (the kiln model contract): training mode, with normalization layers that
    keep running statistics and dropout layers in eval mode. ``eval_mode=True``: ``model.eval()``.
    """
    flags = [(m, m.training) for m in model.modules()]
    try:
        if eval_mode:
            model.eval()
        else:
            if not model.training:
                model.train()
            for m in model.modules():
                if isinstance(m, _EVAL_IN_LOSS_MODE):
                    m.training = False
        yield model
    finally:
        for m, flag in flags:
            m.training = flag


def _batch_weight(batch: Any) -> int:
    return len(batch) if isinstance(batch, (list, tuple)) else 1


@HOOKS.register_module(name=["ValLossHook", "ValLossWorkflowHook"])
class ValLossHook(Hook):
    """Run MMCV-style ``('val', n)`` workflow phases: log mean validation losses during training.

    Epoch-based training: after training epochs ``offset, offset + interval, ...`` run ``length``
    passes over the val loader. Iteration-based: after training iterations ``offset, offset +
    interval, ...`` run ``length`` val batches (the val loader is cycled, continuing where the
    previous phase stopped, as MMCV's ``IterBasedRunner``). ``workflow=[('train', 2), ('val', 1)]``
    is ``ValLossHook(interval=2, length=1)``.

    Args:
        interval: training epochs (iterations) per workflow cycle.
        length: val epochs (epoch-based) or val iterations (iteration-based) per phase.
        offset: training epochs (iterations) into each cycle after which the phase runs, in
            ``[1, interval]``; default ``interval``. (A workflow with several val phases,
            ``[('train', 2), ('val', 1), ('train', 1), ('val', 1)]``, gives two hooks with interval 3
            and offsets 2 and 3.)
        at_end: also run after the last training epoch (iteration) when training ends inside a
            cycle before this phase's point, as MMCV's runner does (its val phases run after the
            train phase that reached ``max_epochs``). Also covers training stopped early.
        dataloader: the loader to compute losses on; default ``runner.val_dataloader``. It must
            yield batches the model can compute losses from (ground truth included): from a config,
            ``data.val`` with ``data.train``'s pipeline, as MMDetection's ``tools/train.py`` does.
    """

    priority = Priority.LOW

    def __init__(
        self,
        interval: int = 1,
        length: int = 1,
        offset: int | None = None,
        at_end: bool = True,
        dataloader: Any = None,
    ) -> None:
        for name, value in (("interval", interval), ("length", length)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"ValLossHook: {name} must be a positive int, got {value!r}.")
        offset = interval if offset is None else offset
        if isinstance(offset, bool) or not isinstance(offset, int) or not 1 <= offset <= interval:
            raise ValueError(
                f"ValLossHook: offset must be an int in [1, interval={interval}], got {offset!r}."
            )
        self.interval = interval
        self.length = length
        self.offset = offset
        self.at_end = bool(at_end)
        self.dataloader = dataloader
        self._stream: Iterator[Any] | None = None  # iteration-based: the current pass over the loader
        self._consumed = 0  # batches taken from the current pass (saved in checkpoints)
        self._resume_at = 0  # a resumed run opens its first pass at this batch
        self._start = 0  # training epochs (iterations) done when this run started
        self._last_n: int | None = None  # training epochs (iterations) done at the last phase
        self._by_epoch = True

    # ------------------------------------------------------------------ scheduling
    @property
    def period(self) -> Every:
        """After training epochs (iterations) ``offset, offset + interval, ...``, counted as the runner
        counts, and at the end when the run ends inside a cycle before this phase's point."""
        return Every(self.interval, start=self.offset, last=self._runs_at_end)

    def before_train(self, runner: Any) -> None:
        """Find the loader; remember where this run starts."""
        if self.dataloader is None:
            self.dataloader = runner.val_dataloader
        if self.dataloader is None:
            raise ValueError(
                "ValLossHook has no data loader: pass dataloader=..., or give the runner a val_dataloader "
                "(config: data.val with workflow=[('train', n), ('val', m)])."
            )
        self._by_epoch = bool(runner.by_epoch)
        self._start = runner.epoch if self._by_epoch else runner.iter
        self._last_n = None

    def _cycle_ends_here(self, n: int) -> bool:
        """Training stops after ``n`` inside a cycle, before this phase's point: MMCV still runs the phase."""
        cycle_start = ((n - 1) // self.interval) * self.interval
        return cycle_start + self.offset > n

    def _runs_at_end(self, max_count: int) -> bool:
        """MMCV runs the phase after the last train phase when training ends inside its cycle."""
        return self.at_end and self._cycle_ends_here(max_count)

    def after_train_epoch(self, runner: Any) -> None:
        """Epoch-based phases (called after the due epochs only)."""
        self.run_phase(runner, runner.epoch + 1)

    def after_train_iter(
        self, runner: Any, batch_idx: int, data_batch: Any = None, outputs: dict | None = None
    ) -> None:
        """Iteration-based phases (called at the due iterations only)."""
        self.run_phase(runner, runner.iter + 1)

    def after_train(self, runner: Any) -> None:
        """Training stopped early inside a cycle, before this phase's point: run it once more."""
        if not (self.at_end and runner.stop_training):
            return
        if self._by_epoch:  # a stop mid-epoch leaves runner.epoch at the unfinished epoch
            n = runner.epoch + (1 if runner.inner_iter else 0)
        else:
            n = runner.iter
        if n > self._start and n != self._last_n and self._cycle_ends_here(n):
            self.run_phase(runner, n)

    # ------------------------------------------------------------------ the pass
    def _batches(self) -> Iterator[Any]:
        loader = self.dataloader
        if self._by_epoch:
            for _ in range(self.length):
                yield from open_loader_at(loader)
            return
        if self._stream is None and self._resume_at:  # continue the checkpointed pass
            self._stream, self._consumed = open_loader_at(loader, 0, self._resume_at), self._resume_at
            self._resume_at = 0
        for _ in range(self.length):
            batch = next(self._stream, _END) if self._stream is not None else _END
            if batch is _END:  # start (another) pass over the loader
                self._stream, self._consumed = open_loader_at(loader), 0
                batch = next(self._stream, _END)
                if batch is _END:
                    self._stream = None
                    raise ValueError("ValLossHook: the val data loader is empty.")
            self._consumed += 1
            yield batch

    # ------------------------------------------------------------------ resume
    def state_dict(self) -> dict[str, int]:
        """Where the iteration-based val stream stands: a resumed run continues it exactly."""
        return {"stream_position": self._consumed if self._stream is not None else self._resume_at}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Continue the val stream at the checkpointed batch (from the next phase on)."""
        self._stream, self._consumed = None, 0
        self._resume_at = int(state.get("stream_position", 0))

    def compute(self, runner: Any) -> tuple[dict[str, float], int]:
        """Run one phase's batches; return ``({name: mean over samples and ranks}, batches on this rank)``."""
        from ..events import EventStorage
        from ..train_step import parse_losses

        model = runner.unwrapped_model
        own = getattr(model, "val_losses", None)
        ow = runner.optim_wrapper
        sums: dict[str, Any] = {}
        weights: dict[str, float] = {}
        num_batches = 0
        with forked_rng(), EventStorage(runner.iter), torch.no_grad(), loss_mode(model, own is not None):
            for batch in self._batches():
                with ow.autocast() if ow is not None else contextlib.nullcontext():
                    losses = own(batch) if own is not None else model(batch)
                if not isinstance(losses, Mapping):
                    source = "model.val_losses(batch)" if own is not None else "model(batch) in training mode"
                    raise TypeError(
                        f"ValLossHook: expected a dict of losses from {source}, got {type(losses).__name__}."
                    )
                _, log_vars = parse_losses(losses)
                w = _batch_weight(batch)
                num_batches += 1
                for k, v in log_vars.items():
                    if isinstance(v, torch.Tensor):
                        v = v.detach()
                        v = (v if v.numel() == 1 else v.float().mean()).double().reshape(())
                    elif isinstance(v, (int, float)) and not isinstance(v, bool):
                        v = float(v)
                    else:
                        continue
                    sums[k] = sums[k] + v * w if k in sums else v * w
                    weights[k] = weights.get(k, 0.0) + w
        local = {k: (float(s), weights[k]) for k, s in sums.items()}
        gathered = comm.all_gather(local) if comm.get_world_size() > 1 else [local]
        total: dict[str, list[float]] = {}
        for part in gathered:
            for k, (s, w) in part.items():
                acc = total.setdefault(k, [0.0, 0.0])
                acc[0] += s
                acc[1] += w
        # Training's order (terms first, 'loss' last).
        means = {k: s / w for k, (s, w) in total.items() if w > 0 and k != "loss"}
        if "loss" in total and total["loss"][1] > 0:
            means["loss"] = total["loss"][0] / total["loss"][1]
        return means, num_batches

    def run_phase(self, runner: Any, n: int) -> dict[str, float]:
        """Compute the phase's mean losses after ``n`` training epochs (iterations) and log them."""
        means, num_batches = self.compute(runner)
        self._last_n = n
        runner.last_metrics["val_loss"] = means
        storage = runner.storage
        if storage is not None:
            for k, v in means.items():
                storage.put_scalar(f"val/{k}", v, smoothing_hint=False)
        if comm.is_main_process():
            text = ", ".join(f"{k}: {v:.4f}" for k, v in means.items())
            # MMCV's line: [epochs (iterations) trained][val batches of the phase].
            logger.info("%s(val) [%d][%d]\t%s", "Epoch" if self._by_epoch else "Iter", n, num_batches, text)
            if storage is not None:
                self._write(runner)
        return means

    @staticmethod
    def _write(runner: Any) -> None:
        from ..writers import CommonMetricPrinter
        from .logger import LoggerHook

        for hook in runner.hooks:
            if isinstance(hook, LoggerHook):
                for w in hook.writers:
                    if not isinstance(w, CommonMetricPrinter):  # the console line is ours
                        w.write()


_END = object()

