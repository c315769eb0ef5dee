"""One optimization step: forward, loss parsing, backward and optimizer update.

The one implementation of a training step in kiln: the Runner's loops call it, and the Detectron2
trainers (:mod:`kiln.engine.trainer`) call it from their ``run_step`` after fetching the batch.
Mixed precision, gradient accumulation and clipping live in the optimizer wrapper
(:class:`~kiln.engine.optim.OptimWrapper` / ``AmpOptimWrapper``), not here.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
import torch.nn as nn

from .optim import OptimWrapper
from .step_metrics import LossVars

__all__ = ["parse_losses", "make_train_step"]

_Tensor = torch.Tensor


def parse_losses(losses: Mapping[str, Any]) -> tuple[torch.Tensor, dict[str, Any]]:
    """Sum every entry whose key contains ``loss`` into the total; return ``(total, log_vars)``.

    Values may be tensors or lists of tensors (summed). ``log_vars`` keeps every entry plus
    ``loss`` = the total, as tensors detached from the autograd graph: the loop buffers them until
    the next metric flush (see :mod:`.step_metrics`), and an attached tensor would keep its whole
    graph alive (hundreds of small C++ nodes per step, scattered over the heap at the step's memory
    peak), which fragments the heap and measurably raised the process's peak RSS
    (``benchmarks/memory_peak.py``). It is a :class:`LossVars`: the runner logs ``loss`` as the sum
    of the terms' logged values. The returned total stays attached (it is what is backpropagated).
    """
    log_vars = LossVars()
    total = None
    terms = []
    for name, value in losses.items():
        if isinstance(value, (list, tuple)):
            value = sum(v.mean() for v in value)
        log_vars[name] = value.detach() if type(value) is _Tensor else value
        if "loss" in name:
            total = value if total is None else total + value
            terms.append(name)
    if total is None:
        raise KeyError(
            f"The model's training output has no key containing 'loss' (keys: {sorted(losses)}); a "
            f"training-mode forward must return a dict like {{'loss_cls': tensor, ...}}."
        )
    if "loss" not in losses:  # (a model's own 'loss' entry is one of the terms; then read the total)
        log_vars.terms = tuple(terms)
    log_vars["loss"] = total.detach() if type(total) is _Tensor else total
    return total, log_vars


def make_train_step(
    model: nn.Module, raw_model: nn.Module | None, optim_wrapper: OptimWrapper | None
) -> Callable[[Any], dict[str, Any]]:
    """The step function for ``model`` and ``optim_wrapper``, with the per-step checks hoisted out.

    The returned closure takes a batch and returns its log variables: the (unwrapped) model's own
    ``train_step(batch, optim_wrapper)`` when it defines one, else forward (under the wrapper's
    autocast) -> :func:`parse_losses` -> ``optim_wrapper.update_params``. ``model`` may be the
    DDP-wrapped module; ``raw_model`` is the module itself.
    """
    ow = optim_wrapper
    own = getattr(raw_model if raw_model is not None else model, "train_step", None)
    if own is not None:
        return lambda data_batch: own(data_batch, ow)
    if ow is None:
        raise RuntimeError("The training step has no optimizer (pass optim_wrapper=... to the Runner).")
    update = ow.update_params
    plain = ow.accumulative_counts == 1 and not ow.clips_grads and not ow.skip_nonfinite
    if type(ow) is OptimWrapper and plain:

        def fast_step(data_batch: Any) -> dict[str, Any]:  # the common, cheapest path
            total, log_vars = parse_losses(model(data_batch))
            update(total)
            return log_vars

        return fast_step

    def step(data_batch: Any) -> dict[str, Any]:
        with ow.optim_context(model):
            with ow.autocast():
                losses = model(data_batch)
            total, log_vars = parse_losses(losses)
            update(total)
        if ow.last_grad_norm is not None:
            log_vars["grad_norm"] = ow.last_grad_norm
        if ow.last_loss_scale is not None:  # fp16 loss scale (a tensor: read at the flush)
            log_vars["grad_scale"] = ow.last_loss_scale
        if ow.skip_nonfinite:
            log_vars["nonfinite_steps"] = ow.nonfinite_steps
        return log_vars

    return step
