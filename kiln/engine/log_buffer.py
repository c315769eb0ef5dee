"""LogBuffer: MMCV 1.x's ``runner.log_buffer`` (per-iteration log variables, averaged on demand).

MMCV hooks read and write it: a runner ``update``\\ s it with each iteration's ``log_vars`` (weighted
by ``num_samples``), a logger hook ``average(interval)``\\ s it into ``output``, logs ``output`` when
``ready``, then ``clear_output()``\\ s; evaluation hooks put metrics into ``output`` and set
``ready``. kiln keeps those semantics and adds one rule, so that a hook reading
``runner.log_buffer.output['loss']`` at any iteration (seed 000's ``LossLogger``) sees a real value:

* after ``average(n)`` (``ready`` is True) ``output`` holds the averages, as in MMCV, until
  ``clear_output()``;
* otherwise (no average held) reading ``output`` gives each key's most recent value (the current
  iteration's loss, the last ``grad_norm``, ...) merged into whatever was put there by hand. ``ready`` stays
  False, so MMCV-style loggers still log only at their own intervals.

Values may be numbers or tensors. Tensors are detached when added and converted to floats in bulk
(one ``torch.stack`` for every pending value) only when something reads them, so a training step
does not wait for the device to log its losses.
"""

from __future__ import annotations

from array import array
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

import torch

__all__ = ["LogBuffer"]

# Pending tensor records are converted once this many are waiting (bounds memory held on a device).
_MAX_PENDING = 256


def _check_value(key: str, value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        if value.numel() != 1:
            raise ValueError(
                f"LogBuffer.update: '{key}' is a tensor of shape {tuple(value.shape)}; log variables must be "
                f"scalars (reduce it first, e.g. loss.mean())."
            )
        return value.detach().reshape(())
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        if hasattr(value, "item") and getattr(value, "size", 1) == 1:  # numpy scalars
            return float(value.item())
        raise TypeError(
            f"LogBuffer.update: '{key}' is {type(value).__name__} ({value!r}); log variables must be "
            f"numbers or one-element tensors."
        )
    return float(value)


class LogBuffer:
    """Per-key history of logged values and their sample counts, plus the averaged ``output``.

    Example::

        buf = LogBuffer()
        buf.update({'loss': 0.5, 'acc': 0.9}, count=2)
        buf.update({'loss': 0.3, 'acc': 1.0}, count=2)
        buf.average(2)           # buf.output == {'loss': 0.4, 'acc': 0.95}; buf.ready is True
        buf.clear_output()
    """

    def __init__(self) -> None:
        self._val_history: OrderedDict[str, array] = OrderedDict()
        self._n_history: OrderedDict[str, array] = OrderedDict()
        self._pending: list[tuple[dict[str, Any], float]] = []  # updates not converted yet
        self._output: OrderedDict[str, Any] = OrderedDict()
        self._latest: dict[str, Any] = {}  # each key's most recent value
        self._latest_shown = False
        self.ready = False

    # ------------------------------------------------------------------------------ writing
    def update(self, vars: Mapping[str, Any], count: int | float = 1) -> None:  # noqa: A002 (MMCV's name)
        """Append one record: ``{name: value}`` observed over ``count`` samples."""
        if not isinstance(vars, Mapping):
            raise TypeError(f"LogBuffer.update expects a dict of log variables, got {type(vars).__name__}.")
        if isinstance(count, torch.Tensor):
            count = float(count)
        record = {k: _check_value(k, v) for k, v in vars.items()}
        self._pending.append((record, float(count)))
        self._latest.update(record)
        self._latest_shown = False
        if len(self._pending) >= _MAX_PENDING:
            self._materialize()

    def _materialize(self) -> None:
        """Move pending records into the histories, reading all their tensors with one stack."""
        pending = self._pending
        if not pending:
            return
        tensors = [v for rec, _ in pending for v in rec.values() if isinstance(v, torch.Tensor)]
        floats = iter(torch.stack([t.float() for t in tensors]).tolist()) if tensors else iter(())
        for rec, n in pending:
            for k, v in rec.items():
                value = next(floats) if isinstance(v, torch.Tensor) else v
                if k not in self._val_history:
                    self._val_history[k] = array("d")
                    self._n_history[k] = array("d")
                self._val_history[k].append(value)
                self._n_history[k].append(n)
        self._pending = []

    # ------------------------------------------------------------------------------ reading
    @property
    def val_history(self) -> OrderedDict[str, array]:
        """``{name: values}`` of every update since the last :meth:`clear`."""
        self._materialize()
        return self._val_history

    @property
    def n_history(self) -> OrderedDict[str, array]:
        """``{name: sample counts}`` matching :attr:`val_history`."""
        self._materialize()
        return self._n_history

    def average(self, n: int = 0) -> None:
        """Put the sample-weighted mean of the last ``n`` records of each key (all when 0) in ``output``."""
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise ValueError(f"LogBuffer.average: n must be an int >= 0 (0 = all records), got {n!r}.")
        self._materialize()
        for key, values in self._val_history.items():
            counts = self._n_history[key]
            vs, ns = (values[-n:], counts[-n:]) if n else (values, counts)
            total = sum(ns)
            self._output[key] = sum(v * c for v, c in zip(vs, ns)) / total if total else float("nan")
        self.ready = True

    @property
    def output(self) -> OrderedDict[str, Any]:
        """The held averages when :attr:`ready`; else each key's latest value (see the module doc)."""
        if not self.ready and not self._latest_shown and self._latest:
            record = self._latest
            tensors = [v for v in record.values() if isinstance(v, torch.Tensor)]
            floats = iter(torch.stack([t.float() for t in tensors]).tolist()) if tensors else iter(())
            for k, v in record.items():
                self._output[k] = next(floats) if isinstance(v, torch.Tensor) else v
            self._latest_shown = True
        return self._output

    @output.setter
    def output(self, value: Mapping[str, Any]) -> None:
        self._output = OrderedDict(value)

    # ------------------------------------------------------------------------------ clearing
    def clear_output(self) -> None:
        """Drop ``output`` and set ``ready`` to False (the histories stay)."""
        self._output.clear()
        self._latest_shown = False
        self.ready = False

    def clear(self) -> None:
        """Drop the histories, the latest record and ``output``."""
        self._val_history.clear()
        self._n_history.clear()
        self._pending = []
        self._latest = {}
        self.clear_output()

    def __repr__(self) -> str:
        return f"LogBuffer(keys={list(self.val_history)}, ready={self.ready})"
