"""Turning the training loop's buffered step outputs into scalar series, in bulk.

The loop appends ``(iteration, outputs, data_time, time)`` after every step and nothing else: no
tensor-to-float conversion (a device sync on accelerators) and no storage work. Every few
iterations the runner flushes the buffer; this module does the flush's heavy lifting:

* :func:`split_columns` transposes the buffer into ``{name: (iterations, values)}`` columns.
  Consecutive steps returning the same keys (the usual case) are transposed with ``zip`` at C speed
  instead of a Python call per value. The loop's clock readings become the ``time`` and
  ``data_time`` columns when an :class:`IterTimerHook` asks for them.
* :func:`convert_columns` turns each column into floats: numbers as they are, one-element tensors
  read in bulk (accelerator tensors with a single ``torch.stack``: one device sync per flush), other
  values dropped (they are not scalars: lists, strings, multi-element tensors).

The rules match :meth:`EventStorage.put_scalar`: ``bool`` values are not logged, ints become
floats, a one-element tensor is its value.

One value is not read at all: the total loss of a :class:`LossVars` (what :func:`parse_losses`
returns). It is logged as the sum of the logged loss terms, as Detectron2 logs ``total_loss``, so a
step costs one tensor read less (reading a cold autograd tensor is ~2 us on a CPU; on a GPU it is
one value less in the flush's single transfer). The sum is taken in float64 over the float32 terms, so
it can differ from the float32 total tensor in the last digits.
"""

from __future__ import annotations

import itertools
import operator
from collections.abc import Callable
from typing import Any

import torch

__all__ = ["split_columns", "convert_columns", "Column", "LossVars", "SumOf"]

Column = tuple[list, list]  # (iterations, values)
_Tensor = torch.Tensor


class LossVars(dict):
    """A step's log variables whose ``total_key`` entry is the sum of the entries named in ``terms``.

    Built by :func:`kiln.engine.parse_losses`; the metric flush logs the total as the sum of the
    terms' values instead of reading the total tensor (see the module docstring).
    """

    __slots__ = ("terms", "total_key")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.terms: tuple[str, ...] = ()
        self.total_key = "loss"


class SumOf(tuple):
    """Placeholder in a column: this iteration's value is the sum of these columns' values."""

    __slots__ = ()


def split_columns(pending: list[tuple], timings: bool = False) -> dict[str, Column]:
    """``{name: (iterations, values)}`` from the loop's records, names in first-seen order, each
    column in buffer order.

    Args:
        pending: records ``(iteration, {name: value, ...})``, or, as the training loop appends
            them, ``(iteration, outputs, data_time, time)``.
        timings: add the records' ``data_time`` and ``time`` as columns of those names (after the
            outputs' columns). A name the outputs already hold keeps the outputs' values (a step
            that measures its own ``data_time``).
    """
    cols: dict[str, Column] = {}
    if not pending:
        return cols
    fields = list(zip(*pending))  # one C-level transpose of the records
    its_all, dicts = fields[0], fields[1]
    n = len(dicts)
    keysets = list(map(tuple, dicts))
    if keysets.count(keysets[0]) == n and len(set(map(type, dicts))) == 1:
        runs = [(0, n)]  # the usual case: every step returned the same names
    else:
        runs, i = [], 0
        while i < n:
            keys, kind = keysets[i], type(dicts[i])
            j = i + 1
            while j < n and keysets[j] == keys and type(dicts[j]) is kind:
                j += 1
            runs.append((i, j))
            i = j
    for i, j in runs:
        first, keys = dicts[i], keysets[i]
        its = its_all[i:j]
        if len(keys) == 1:
            transposed: Any = ([next(iter(d.values())) for d in dicts[i:j]],)
        else:
            transposed = zip(*map(dict.values, dicts[i:j]))
        derived = None
        if type(first) is LossVars and first.terms and first.total_key in keys:
            derived = first.total_key
            marker = SumOf(first.terms)
        for k, col in zip(keys, transposed):
            if k == derived:
                col = [marker] * len(its)
            c = cols.get(k)
            if c is None:
                cols[k] = (list(its), list(col))
            else:
                c[0].extend(its)
                c[1].extend(col)
    if timings and len(fields) == 4:
        for name, values in (("time", fields[3]), ("data_time", fields[2])):
            if name not in cols:
                cols[name] = (list(its_all), list(values))
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
    sums: list[tuple[str, list, list]] = []
    for name, (its, vals) in cols.items():
        kinds = set(map(type, vals))
        if SumOf in kinds:
            if kinds == {SumOf}:
                sums.append((name, its, vals))
                continue
            sums.append((name, [it for it, v in zip(its, vals) if type(v) is SumOf],
                         [v for v in vals if type(v) is SumOf]))
            its = [it for it, v in zip(its, vals) if type(v) is not SumOf]
            vals = [v for v in vals if type(v) is not SumOf]
            kinds.discard(SumOf)
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
    for name, its, markers in sums:
        _put_sums(out, name, its, markers)
    return out


def _put_sums(out: dict[str, Column], name: str, its: list, markers: list) -> None:
    """Add column ``name``: at each iteration of ``its``, the sum of the columns its marker names."""
    terms = markers[0]
    cols = [out.get(k) for k in terms]
    if markers.count(terms) == len(markers) and all(c is not None and c[0] == its for c in cols):
        # The usual case: every iteration has all the terms (C-level adds; sum() of two floats
        # is the same float as a + b).
        if len(cols) == 2:
            totals = list(map(operator.add, cols[0][1], cols[1][1]))
        else:
            totals = list(map(sum, zip(*[c[1] for c in cols])))
    else:
        lookup = {k: dict(zip(*c)) for k, c in zip(terms, cols) if c is not None}
        keep = [(it, [lookup[k][it] for k in m if it in lookup.get(k, ())]) for it, m in zip(its, markers)]
        its = [it for it, vals in keep if vals]
        totals = [sum(vals) for _, vals in keep if vals]
    if not its:
        return
    if name in out:  # the same name also logged directly at other iterations: merge in order
        merged = sorted(zip(out[name][0] + its, out[name][1] + totals), key=lambda p: p[0])
        its, totals = [p[0] for p in merged], [p[1] for p in merged]
    out[name] = (its, totals)


def _tensor_values(
    tensor_cols: list[tuple[str, list, list]],
    reduce: Callable[[torch.Tensor, list[tuple[str, int]]], torch.Tensor] | None,
) -> list[list[float]]:
    """Python floats for the tensor columns.

    Tensors on an accelerator are read with one ``stack`` + ``tolist`` for all of them: one device
    transfer per flush. CPU tensors are read one ``item()`` each, which costs half of what
    ``stack`` costs per tensor there (``stack`` makes a view of every input); nothing waits on a
    device.
    """
    flat = list(itertools.chain.from_iterable(vals for _, _, vals in tensor_cols))
    if reduce is None and flat[0].is_cpu:
        try:
            numbers = list(map(_Tensor.item, flat))
        except RuntimeError:  # a tensor that is not one element: sort them out below
            pass
        else:
            if set(map(type, numbers)) != {float}:  # int and bool tensors
                numbers = [float(x) for x in numbers]
            return _split_flat(numbers, tensor_cols)
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
    return _split_flat(numbers, tensor_cols)


def _split_flat(numbers: list[float], tensor_cols: list[tuple[str, list, list]]) -> list[list[float]]:
    """Cut the flat list of read values back into the tensor columns."""
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
