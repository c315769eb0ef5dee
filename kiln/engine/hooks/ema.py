"""EMAHook: an exponential moving average of the weights, used for validation/test and saved."""

from __future__ import annotations

import logging
from typing import Any

import torch

from kiln.registry import HOOKS

from .base import Hook, Priority

__all__ = ["EMAHook"]

logger = logging.getLogger(__name__)


@HOOKS.register_module(name=["EMAHook", "ExpMomentumEMAHook"])
class EMAHook(Hook):
    """Keep ``ema = (1 - momentum) * ema + momentum * weights`` every ``interval`` iterations.

    The averaged weights are swapped into the model for validation and test and swapped back
    afterwards; they are saved in checkpoints (as this hook's state) so a resume continues the
    same average.

    Args:
        momentum: weight of the current parameters in each update (MMEngine convention).
        interval: update every N iterations.
        begin_iter: start averaging at this iteration (before it, the EMA copies the weights).
        update_buffers: also average float buffers (BN running stats); otherwise copy them.
    """

    priority = Priority.NORMAL

    def __init__(
        self, momentum: float = 0.0002, interval: int = 1, begin_iter: int = 0, update_buffers: bool = False
    ) -> None:
        if not 0.0 < momentum < 1.0:
            raise ValueError(f"EMAHook: momentum must be in (0, 1), got {momentum}.")
        self.momentum = float(momentum)
        self.interval = max(1, int(interval))
        self.begin_iter = int(begin_iter)
        self.update_buffers = update_buffers
        self._ema: dict[str, torch.Tensor] | None = None
        self._swapped = False

    def _model_tensors(self, runner: Any) -> dict[str, torch.Tensor]:
        model = runner.unwrapped_model
        out = {n: p for n, p in model.named_parameters()}
        out.update({n: b for n, b in model.named_buffers()})
        return out

    def before_run(self, runner: Any) -> None:
        """Start the average from the current weights (a resume then overwrites it).

        The average lives where the model does (the run's device); a state loaded earlier (from a
        checkpoint read to the CPU) moves there.
        """
        self._param_names = {n for n, _ in runner.unwrapped_model.named_parameters()}
        current = self._model_tensors(runner)
        if self._ema is None:
            self._ema = {n: t.detach().clone() for n, t in current.items()}
        else:
            self._ema = {n: e.to(current[n].device) if n in current else e for n, e in self._ema.items()}

    def after_train_iter(
        self, runner: Any, batch_idx: int, data_batch: Any = None, outputs: dict | None = None
    ) -> None:
        """Update the average."""
        if (runner.iter + 1) % self.interval:
            return
        ema = self._ema
        assert ema is not None
        with torch.no_grad():
            current = self._model_tensors(runner)
            if runner.iter < self.begin_iter:
                for n, t in current.items():
                    ema[n].copy_(t)
                return
            floats_e, floats_c = [], []
            for n, t in current.items():
                if t.is_floating_point() and (self.update_buffers or n in self._param_names):
                    floats_e.append(ema[n])
                    floats_c.append(t.detach())
                else:
                    ema[n].copy_(t)
            if floats_e:
                torch._foreach_lerp_(floats_e, floats_c, self.momentum)

    def _swap(self, runner: Any) -> None:
        if self._ema is None:
            return
        with torch.no_grad():
            for n, t in self._model_tensors(runner).items():
                tmp = t.detach().clone()
                t.copy_(self._ema[n])
                self._ema[n].copy_(tmp)
        self._swapped = not self._swapped

    def before_val_epoch(self, runner: Any) -> None:
        """Evaluate the averaged weights."""
        self._swap(runner)

    def after_val_epoch(self, runner: Any, metrics: dict | None = None) -> None:
        """Put the training weights back."""
        self._swap(runner)

    def before_test_epoch(self, runner: Any) -> None:
        """Test the averaged weights."""
        self._swap(runner)

    def after_test_epoch(self, runner: Any, metrics: dict | None = None) -> None:
        """Put the training weights back."""
        self._swap(runner)

    def state_dict(self) -> dict:
        """The averaged tensors."""
        return {"ema": {n: t.clone() for n, t in (self._ema or {}).items()}}

    def load_state_dict(self, state: dict) -> None:
        """Restore the averaged tensors (onto the device of the average they replace, if any)."""
        old = self._ema or {}
        loaded = state.get("ema", {})
        self._ema = {n: t.to(old[n].device, copy=True) if n in old else t.clone() for n, t in loaded.items()}
        self._ema = self._ema or None
