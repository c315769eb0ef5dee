"""What training does when the loss becomes NaN or infinite.

Two policies, chosen with ``optim_wrapper=dict(..., nonfinite_loss='raise'|'skip')``:

* ``'raise'`` (the default) costs nothing per iteration. The runner reads every logged scalar once
  per log interval anyway (the metric flush, :meth:`Runner.flush_metrics`); :func:`check_columns`
  looks at the loss columns there and raises :class:`NonFiniteLossError` naming the first bad
  iteration and its loss terms. Saving a checkpoint flushes first, so no checkpoint is written
  after the loss went bad (the weights are then NaN too, typically).
* ``'skip'`` checks the total loss of every step before the optimizer sees it (one device sync per
  step; :class:`~kiln.engine.optim.OptimWrapper`): a non-finite step is not backpropagated and
  does not update the weights; the count is logged as ``nonfinite_steps``. The skipped steps'
  loss values are dropped at the flush, so they do not poison the smoothed losses.

:class:`~kiln.engine.hooks.CheckInvalidLossHook` remains the explicit per-iteration checker
(MMDetection's hook): it stops at the very iteration, at the cost of a sync every ``interval``.
"""

from __future__ import annotations

import math
from typing import Any

__all__ = ["NonFiniteLossError", "NONFINITE_POLICIES", "UNSMOOTHED", "nonfinite_message", "check_columns"]

NONFINITE_POLICIES = ("raise", "skip")

#: Logged counters that writers show as they are (a median of a count would be meaningless).
UNSMOOTHED = frozenset({"nonfinite_steps"})

Column = tuple[list, list]


class NonFiniteLossError(FloatingPointError):
    """The training loss became NaN or infinite (see :func:`nonfinite_message`).

    Not a hook failure: the runner lets it through unwrapped, whichever hook triggered the check.
    """


def _fmt(v: float) -> str:
    return f"{v:.4g}" if math.isfinite(v) else str(v)


_ADVICE = (
    "lower the lr, add grad clipping (optim_wrapper.clip_grad) or set "
    "optim_wrapper.nonfinite_loss='skip' to skip such steps"
)


def nonfinite_message(
    iteration: int, epoch: int | None, terms: dict[str, float], advice: str = _ADVICE
) -> str:
    """The error text: 1-based ``iteration`` (and ``epoch``), the loss terms, what to do about it."""
    where = f"iteration {iteration}" + (f" (epoch {epoch})" if epoch is not None else "")
    bad = [k for k, v in terms.items() if not math.isfinite(v)]
    values = ", ".join(f"{k}={_fmt(v)}" for k, v in terms.items())
    return f"loss became non-finite at {where}: {values} (non-finite: {', '.join(bad)}); {advice}"


def _is_loss(name: str) -> bool:
    # Training losses as parse_losses counts them ('loss', 'total_loss', 'loss_cls', ...).
    return "loss" in name and not name.startswith("val/")


def check_columns(
    cols: dict[str, Column], policy: str = "raise", epoch_length: int | None = None, skipped: int = 0
) -> dict[str, Column]:
    """Apply the non-finite policy to the flushed float columns (``{name: (iterations, values)}``).

    ``'raise'``: raise :class:`NonFiniteLossError` at the first iteration with a non-finite loss
    value (iterations and epochs printed 1-based, as the console line and checkpoint names count).
    ``'skip'``: drop the non-finite loss values of the ``skipped`` steps the optimizer wrapper
    skipped since the previous flush; more non-finite iterations than that means some step was
    applied anyway (it did not go through ``optim_wrapper.update_params``, e.g. Detectron2's
    ``SimpleTrainer.run_step``): raise. Returns ``cols`` (changed in place for ``'skip'``). The
    usual all-finite case costs one ``sum`` per loss column.
    """
    bad_cols = []
    for name, (_, vals) in cols.items():
        if _is_loss(name):
            if not math.isfinite(sum(vals)):
                bad_cols.append(name)
    if not bad_cols:
        return cols
    bad_its = sorted({it for name in bad_cols for it, v in zip(*cols[name]) if not math.isfinite(v)})
    if not bad_its:  # the finite values only overflowed when summed
        return cols
    if policy == "skip" and len(bad_its) <= skipped:
        for name in bad_cols:
            its, vals = cols[name]
            keep = [(i, v) for i, v in zip(its, vals) if math.isfinite(v)]
            cols[name] = ([i for i, _ in keep], [v for _, v in keep])
        return cols
    first = bad_its[0]
    terms: dict[str, Any] = {}
    for name, (its, vals) in cols.items():
        if _is_loss(name):
            for it, v in zip(its, vals):
                if it == first:
                    terms[name] = v
                    break
    epoch = first // epoch_length + 1 if epoch_length else None
    advice = _ADVICE
    if policy == "skip":
        advice = (
            f"nonfinite_loss='skip' skipped {skipped} of the {len(bad_its)} such steps since the last "
            f"check; the others were applied, as they did not go through optim_wrapper.update_params "
            f"(a custom step, or Detectron2's SimpleTrainer.run_step)"
        )
    raise NonFiniteLossError(nonfinite_message(first + 1, epoch, terms, advice))
