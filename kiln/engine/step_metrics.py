"""Turning the training loop's buffered step outputs into scalar series, in bulk.

The loop appends ``(iteration, outputs)`` after every step and nothing else: no tensor-to-float
conversion (a device sync on accelerators) and no storage work. Every few iterations the runner
flushes the buffer; this module does the flush's heavy lifting:

* :func:`split_columns` transposes the buffer into ``{name: (iterations, values)}`` columns.
  Consecutive steps returning the same keys (the usual case) are transposed with ``zip`` at C speed
  instead of a Python call per value.
* :func:`convert_columns` turns each column into floats: numbers as they are, one-element tensors of
  all columns with a single ``torch.stack`` (one device sync per flush), other values dropped (they
  are not scalars: lists, strings, multi-element tensors).

The rules match :meth:`EventStorage.put_scalar`: ``bool`` values are not logged, ints become
floats, a one-element tensor is its value.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

__all__ = ["split_columns", "convert_columns", "Column"]

Column = tuple[list, list]  # (iterations, values)
_Tensor = torch.Tensor


def split_columns(pending: list[tuple[int, dict[str, Any]]]) -> dict[str, Column]:
    """``{name: (iterations, values)}`` from ``[(iteration, {name: value, ...}), ...]``, names in
    first-seen order, each column in buffer order."""
    cols: dict[str, Column] = {}
    n = len(pending)
    i = 0
    while i < n:
        keys = tuple(pending[i][1])
        j = i + 1
        while j < n and tuple(pending[j][1]) == keys:
            j += 1
        run = pending[i:j]
        its = [it for it, _ in run]
        if len(keys) == 1:
            transposed: Any = ([next(iter(d.values())) for _, d in run],)
        else:
            transposed = zip(*[d.values() for _, d in run])
        for k, col in zip(keys, transposed):
            c = cols.get(k)
            if c is None:
                cols[k] = (list(its), list(col))
            else:
                c[0].extend(its)
                c[1].extend(col)
        i = j
    return cols


def _as_number(v: Any) -> float | None:
    """The float a single logged value stands for, or ``None`` when it is not a scalar."""
    tv = type(v)
    if tv is float:
        return v
    if tv is bool:
        return None
    if isinstance(v, (int, float)):
        return float(v)
    if isinstance(v, _Tensor) and v.numel() == 1:
        return v
    return None


def convert_columns(
    cols: dict[str, Column],
    reduce: Callable[[torch.Tensor, list[tuple[str, int]]], torch.Tensor] | None = None,
) -> dict[str, Column]:
    """Floats for every column of :func:`split_columns` (non-scalar values are dropped).

    Args:
        cols: the columns.
        reduce: optional ``reduce(stacked, signature)`` applied to the 1-d tensor of every tensor
            value of the flush before it is read (the runner averages over ranks with it);
            ``signature`` lists ``(name, count)`` of the tensor columns in stacking order.
    """
    out: dict[str, Column] = {}
    tensor_cols: list[tuple[str, list, list]] = []
    for name, (its, vals) in cols.items():
        kinds = set(map(type, vals))
        if kinds == {float}:
            out[name] = (its, vals)
            continue
        if all(issubclass(t, _Tensor) for t in kinds):
            tensor_cols.append((name, its, vals))
            continue
        # Mixed or unusual values: check and convert them one by one (rare; not reduced over ranks).
        keep_its, keep_vals = [], []
        for it, v in zip(its, vals):
            x = _as_number(v)
            if x is not None:
                keep_its.append(it)
                keep_vals.append(float(x))
        if keep_vals:
            out[name] = (keep_its, keep_vals)
    if tensor_cols:
        floats = _tensor_values(tensor_cols, reduce)
        for (name, its, _), vals in zip(tensor_cols, floats):
            if vals:
                out[name] = (its, vals)
    return out


def _tensor_values(
    tensor_cols: list[tuple[str, list, list]],
    reduce: Callable[[torch.Tensor, list[tuple[str, int]]], torch.Tensor] | None,
) -> list[list[float]]:
    """Python floats for the tensor columns, read with one ``stack`` + ``tolist`` for all of them."""
    flat = [v for _, _, vals in tensor_cols for v in vals]
    stacked = _stack_scalars(flat)
    if stacked is None:
        # Not all one-element tensors of one shape: drop the others, flatten (1,)-shaped ones.
        for n, (name, its, vals) in enumerate(tensor_cols):
            keep = [(it, v.reshape(())) for it, v in zip(its, vals) if v.numel() == 1]
            tensor_cols[n] = (name, [it for it, _ in keep], [x for _, x in keep])
        flat = [v for _, _, vals in tensor_cols for v in vals]
        stacked = _stack_scalars(flat)
    if stacked is None:  # tensors on different devices: convert one by one (a sync each)
        numbers = [float(t) for t in flat]
    else:
        if not stacked.is_floating_point() or stacked.dtype in (torch.float16, torch.bfloat16):
            stacked = stacked.float()
        if reduce is not None:
            stacked = reduce(stacked, [(name, len(vals)) for name, _, vals in tensor_cols])
        numbers = stacked.tolist()
    out, start = [], 0
    for _, _, vals in tensor_cols:
        out.append(numbers[start:start + len(vals)])
        start += len(vals)
    return out


def _stack_scalars(flat: list[torch.Tensor]) -> torch.Tensor | None:
    """The 1-d stack of one-element tensors of one shape and device, else ``None``."""
    if not flat:
        return torch.zeros(0)
    try:
        with torch.no_grad():
            stacked = torch.stack(flat)
    except (RuntimeError, TypeError):
        return None
    if stacked.numel() != len(flat):
        return None
    return stacked.reshape(-1)
