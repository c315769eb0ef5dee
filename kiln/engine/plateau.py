"""Lowering the learning rate (or momentum) when a monitored metric stops improving.

Two spellings, both stepped by :class:`~kiln.engine.hooks.ParamSchedulerHook`:

* MMEngine's ``ReduceOnPlateauLR`` (``ReduceOnPlateauMomentum``, ``ReduceOnPlateauParamScheduler``)
  in ``param_scheduler``: :class:`ReduceOnPlateauParamScheduler`. It is a schedule *shape* whose
  factor is a state (one multiplier per param group) rather than a function of the iteration, so it
  composes with the closed-form shapes (warmup, multi-step, cosine...) of the same
  :class:`~kiln.engine.schedulers.ScheduleSet`: ``lr = base * warmup(t) * ... * plateau``. Between
  two reductions nothing changes, so the closed-form fast path (no per-iteration work while no shape
  changes) is kept; a reduction re-applies the values at once.
* torch's ``ReduceLROnPlateau`` object in ``param_scheduler`` (optionally wrapped in
  :class:`MonitoredScheduler` to name the metric): stepped with the metric instead of every
  iteration.

When they are stepped (``source``): after each validation with the evaluator's metrics (``'val'``;
the default when the run validates), or, for epoch-based runs, at the end of each training epoch
with the epoch's mean of a logged training scalar such as ``'loss'`` (``'train'``; the default
without validation). Their state is saved in checkpoints, so a resumed run reduces at the same
points as an uninterrupted one.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from typing import Any

from kiln.registry import PARAM_SCHEDULERS

from .progress import trained_so_far
from .schedulers import ParamScheduler

__all__ = [
    "ReduceOnPlateauParamScheduler",
    "ReduceOnPlateauLR",
    "ReduceOnPlateauMomentum",
    "MonitoredScheduler",
    "MetricSchedulers",
    "is_metric_driven",
]

logger = logging.getLogger(__name__)

INF = float("inf")
_SOURCES = ("auto", "val", "train")


class _Plateau:
    """The improvement test and counters shared by kiln's scheduler (torch's has its own)."""

    def __init__(
        self, rule: str, threshold: float, threshold_rule: str, patience: int, cooldown: int
    ) -> None:
        if rule not in ("less", "greater"):
            raise ValueError(f"ReduceOnPlateau: rule must be 'less' or 'greater', got {rule!r}.")
        if threshold_rule not in ("rel", "abs"):
            raise ValueError(
                f"ReduceOnPlateau: threshold_rule must be 'rel' or 'abs', got {threshold_rule!r}."
            )
        if threshold < 0:
            raise ValueError(f"ReduceOnPlateau: threshold must be >= 0, got {threshold}.")
        if int(patience) < 0 or int(cooldown) < 0:
            raise ValueError(
                f"ReduceOnPlateau: patience and cooldown must be >= 0, got {patience}, {cooldown}."
            )
        self.rule, self.threshold, self.threshold_rule = rule, float(threshold), threshold_rule
        self.patience, self.cooldown = int(patience), int(cooldown)
        self.best = INF if rule == "less" else -INF
        self.num_bad_epochs = 0
        self.cooldown_counter = 0

    def is_better(self, value: float) -> bool:
        best, th = self.best, self.threshold
        if self.rule == "less":
            return value < (best * (1 - th) if self.threshold_rule == "rel" else best - th)
        return value > (best * (1 + th) if self.threshold_rule == "rel" else best + th)

    def update(self, value: float) -> bool:
        """Record one observation; whether the parameter should be reduced now."""
        if self.is_better(value):
            self.best = value
            self.num_bad_epochs = 0
        else:
            self.num_bad_epochs += 1
        if self.cooldown_counter > 0:
            self.cooldown_counter -= 1
            self.num_bad_epochs = 0  # bad observations during the cooldown do not count
        if self.num_bad_epochs > self.patience:
            self.cooldown_counter = self.cooldown
            self.num_bad_epochs = 0
            return True
        return False


class ReduceOnPlateauParamScheduler(ParamScheduler):
    """Multiply the parameter by ``factor`` when ``monitor`` has not improved for ``patience`` steps.

    MMEngine's arguments and semantics: a step is one observation of the metric (a validation, or a
    training epoch with ``source='train'``); an observation improves when it beats the best so far
    by ``threshold`` (``threshold_rule='rel'``: relative, ``'abs'``: absolute) in the direction of
    ``rule``; after more than ``patience`` observations without improvement the value of every param
    group becomes ``max(value * factor, min_value)`` (a change smaller than ``eps`` is skipped), then
    ``cooldown`` observations are ignored. Observations count only while ``begin <= n < end``, ``n``
    being the epochs (``by_epoch``) or iterations trained so far.

    Args:
        monitor: metric key (``'bbox/AP'``, ``'mse'``) or, with ``source='train'``, a logged training
            scalar (``'loss'``, ``'loss_cls'``).
        rule: ``'less'`` (lower is better, e.g. a loss) or ``'greater'`` (e.g. an AP). torch's
            ``mode='min'/'max'`` is accepted too.
        factor: multiplier, ``< 1``.
        patience, threshold, threshold_rule (or torch's ``threshold_mode``), cooldown, eps: as above.
        min_value: lower bound, one for all param groups or one per group (torch: ``min_lr``).
        source: ``'val'``, ``'train'`` or ``'auto'`` (``'val'`` when the run has a validation loop).
        begin, end, by_epoch: the window in which observations count.
        param_name: ``'lr'`` or ``'momentum'``.
    """

    discrete = True
    #: the factor is state driven by a metric, not a function of the iteration
    metric_driven = True

    def __init__(
        self,
        monitor: str = "loss",
        rule: str | None = None,
        factor: float = 0.1,
        patience: int = 10,
        threshold: float = 1e-4,
        threshold_rule: str | None = None,
        cooldown: int = 0,
        min_value: float | Sequence[float] = 0.0,
        eps: float = 1e-8,
        source: str = "auto",
        begin: float = 0,
        end: float | None = None,
        by_epoch: bool = True,
        param_name: str = "lr",
        mode: str | None = None,
        threshold_mode: str | None = None,
        min_lr: float | Sequence[float] | None = None,
        last_step: int = -1,
        verbose: bool = False,
        optimizer: Any = None,
    ) -> None:
        super().__init__(param_name=param_name, begin=begin, end=end, by_epoch=by_epoch)
        name = type(self).__name__
        if mode is not None:  # torch spelling
            if mode not in ("min", "max"):
                raise ValueError(f"{name}: mode must be 'min' or 'max', got {mode!r}.")
            if rule is not None and rule != {"min": "less", "max": "greater"}[mode]:
                raise ValueError(f"{name}: rule={rule!r} contradicts mode={mode!r}; give one of them.")
            rule = {"min": "less", "max": "greater"}[mode]
        threshold_rule = threshold_rule or threshold_mode or "rel"
        if min_lr is not None:
            min_value = min_lr
        if not 0 < float(factor) < 1:
            raise ValueError(f"{name}: factor must be in (0, 1) (new value = value * factor), got {factor}.")
        if source not in _SOURCES:
            raise ValueError(f"{name}: source must be one of {list(_SOURCES)}, got {source!r}.")
        if not isinstance(monitor, str) or not monitor:
            raise ValueError(
                f"{name}: monitor must name a metric (e.g. 'bbox/AP' or 'loss'), got {monitor!r}."
            )
        self.monitor = monitor
        self.factor_ = float(factor)
        self.min_value = min_value
        self.eps = float(eps)
        self.source = source
        self.verbose = verbose
        self.plateau = _Plateau(rule or "less", threshold, threshold_rule, patience, cooldown)
        self.scales: list[float] | None = None  # one multiplier per param group, set by the ScheduleSet

    # -- as a shape of a ScheduleSet ------------------------------------------------------------
    def factor(self, base: float, t: float) -> float:  # not a function of time: see group_factor
        raise TypeError(f"{type(self).__name__} has no closed form; ScheduleSet uses group_factor().")

    def bind(self, num_groups: int) -> None:
        """Start with a multiplier of 1 for each of the optimizer's ``num_groups`` param groups."""
        if isinstance(self.min_value, (list, tuple)) and len(self.min_value) != num_groups:
            raise ValueError(
                f"{type(self).__name__}: min_value has {len(self.min_value)} entries but the optimizer "
                f"has {num_groups} param groups; give one per group or a single number."
            )
        if self.scales is None or len(self.scales) != num_groups:
            self.scales = [1.0] * num_groups

    def group_factor(self, group: int) -> float:
        """The current multiplier of param group ``group``."""
        return self.scales[group] if self.scales is not None else 1.0

    def next_change(self, it: int, epoch_length: int) -> float:
        """Never by itself: only :meth:`observe` changes it."""
        return INF

    # -- stepping -------------------------------------------------------------------------------
    def in_window(self, n: int) -> bool:
        """Whether an observation after ``n`` epochs (iterations) of training counts."""
        return self.begin <= n < self.end

    def observe(self, value: float, param_groups: list[dict]) -> bool:
        """Record one observation of the metric; reduce the multipliers if due. Returns whether it did."""
        if not self.plateau.update(float(value)):
            return False
        key = self.param_name
        mins = (
            self.min_value
            if isinstance(self.min_value, (list, tuple))
            else [self.min_value] * len(param_groups)
        )
        changed = False
        for i, (group, low) in enumerate(zip(param_groups, mins)):
            current = group[key] if key in group else group["betas"][0]
            new = max(current * self.factor_, float(low))
            if current - new > self.eps and current > 0:
                self.scales[i] *= new / current
                changed = True
                logger.info(
                    "%s: %s of param group %d reduced to %.4g (%s did not improve for %d steps)",
                    type(self).__name__,
                    key,
                    i,
                    new,
                    self.monitor,
                    self.plateau.patience + 1,
                )
        return changed

    def state_dict(self) -> dict:
        """Best value, counters and the per-group multipliers."""
        p = self.plateau
        return {
            "best": p.best,
            "num_bad_epochs": p.num_bad_epochs,
            "cooldown_counter": p.cooldown_counter,
            "scales": list(self.scales) if self.scales is not None else None,
        }

    def load_state_dict(self, state: Mapping) -> None:
        """Restore :meth:`state_dict`."""
        p = self.plateau
        p.best, p.num_bad_epochs = float(state["best"]), int(state["num_bad_epochs"])
        p.cooldown_counter = int(state["cooldown_counter"])
        if state.get("scales") is not None:
            self.scales = [float(x) for x in state["scales"]]

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({self.param_name}, monitor={self.monitor!r}, rule={self.plateau.rule!r}, "
            f"factor={self.factor_}, patience={self.plateau.patience})"
        )


class ReduceOnPlateauLR(ReduceOnPlateauParamScheduler):
    """:class:`ReduceOnPlateauParamScheduler` for ``lr`` (MMEngine's name)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("param_name", "lr")
        super().__init__(*args, **kwargs)


class ReduceOnPlateauMomentum(ReduceOnPlateauParamScheduler):
    """:class:`ReduceOnPlateauParamScheduler` for ``momentum`` (MMEngine's name)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("param_name", "momentum")
        super().__init__(*args, **kwargs)


for _cls in (ReduceOnPlateauParamScheduler, ReduceOnPlateauLR, ReduceOnPlateauMomentum):
    if PARAM_SCHEDULERS.get(_cls.__name__) is None:
        PARAM_SCHEDULERS.register_module(module=_cls)


def _torch_plateau_type() -> type:
    import torch.optim.lr_scheduler as sched

    return sched.ReduceLROnPlateau


class MonitoredScheduler:
    """A torch ``ReduceLROnPlateau`` and the metric it watches, for ``param_scheduler``.

    Example::

        plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode='max', patience=2)
        runner = Runner(..., param_scheduler=MonitoredScheduler(plateau, monitor='bbox/AP'))

    A bare ``ReduceLROnPlateau`` in ``param_scheduler`` monitors ``'loss'``. ``source`` as in
    :class:`ReduceOnPlateauParamScheduler`. Its state is the torch scheduler's (checkpointed).
    """

    def __init__(self, scheduler: Any, monitor: str = "loss", source: str = "auto") -> None:
        if not hasattr(scheduler, "step"):
            raise TypeError(
                f"MonitoredScheduler needs a scheduler with step(metric), got {type(scheduler).__name__}."
            )
        if source not in _SOURCES:
            raise ValueError(f"MonitoredScheduler: source must be one of {list(_SOURCES)}, got {source!r}.")
        self.scheduler = scheduler
        self.monitor = monitor
        self.source = source
        self.by_epoch = True
        self.begin, self.end = 0, INF

    def in_window(self, n: int) -> bool:
        """Always (torch's scheduler has no window)."""
        return True

    def observe(self, value: float, param_groups: list[dict]) -> bool:
        """``scheduler.step(value)``; whether an lr changed."""
        before = [g["lr"] for g in param_groups]
        self.scheduler.step(float(value))
        return before != [g["lr"] for g in param_groups]

    def step(self, metrics: Any = None) -> None:
        """Forward to the torch scheduler (for callers that step it themselves)."""
        self.scheduler.step(metrics)

    def state_dict(self) -> dict:
        """The torch scheduler's state."""
        return self.scheduler.state_dict()

    def load_state_dict(self, state: Mapping) -> None:
        """Restore the torch scheduler's state."""
        self.scheduler.load_state_dict(state)

    def __repr__(self) -> str:
        return f"MonitoredScheduler({type(self.scheduler).__name__}, monitor={self.monitor!r})"


def is_metric_driven(scheduler: Any) -> bool:
    """Whether a ``param_scheduler`` object is stepped with a metric instead of every iteration."""
    return isinstance(scheduler, MonitoredScheduler) or isinstance(scheduler, _torch_plateau_type())


class MetricSchedulers:
    """The metric-driven schedulers of a run, and the stepping that :class:`ParamSchedulerHook` delegates.

    Built from the runner's ``schedule_set`` (kiln shapes) and ``torch_schedulers`` (torch objects:
    the plateau ones are taken out of the per-iteration stepping, listed in ``per_iteration``).
    """

    def __init__(self, runner: Any) -> None:
        sset = runner.schedule_set
        self.schedule_set = sset
        kiln_items = [
            s for s in (sset.schedulers if sset is not None else ()) if getattr(s, "metric_driven", False)
        ]
        self.per_iteration: list[Any] = []
        torch_items: list[Any] = []
        for s in runner.torch_schedulers:
            if is_metric_driven(s):
                torch_items.append(s if isinstance(s, MonitoredScheduler) else MonitoredScheduler(s))
            else:
                self.per_iteration.append(s)
        self.items: list[Any] = kiln_items + torch_items
        self._kiln = set(map(id, kiln_items))
        if torch_items and sset is not None and any(s.param_name == "lr" for s in sset.schedulers):
            raise ValueError(
                "param_scheduler mixes a torch ReduceLROnPlateau with kiln lr schedules; the schedules would "
                "overwrite its reductions. Use dict(type='ReduceOnPlateauLR', monitor=...) instead, which "
                "composes with them."
            )

    def resolve(self, runner: Any) -> None:
        """Fix each scheduler's ``source`` for this run; refuse combinations that would never step."""
        for s in self.items:
            source = s.source
            if source == "auto":
                source = "val" if runner.val_loop is not None else "train"
            if source == "train" and not runner.by_epoch:
                raise ValueError(
                    f"{s!r}: source='train' observes the training metric at epoch ends, but this run is "
                    f"iteration-based; monitor a validation metric (val_dataloader + val_evaluator) instead."
                )
            if source == "val" and runner.val_loop is None:
                raise ValueError(
                    f"{s!r}: source='val' but the run has no validation (val_dataloader/val_evaluator)."
                )
            if (s.begin != 0 or s.end != INF) and bool(s.by_epoch) != bool(runner.by_epoch):
                unit = "epochs" if s.by_epoch else "iterations"
                raise ValueError(
                    f"{s!r}: begin/end count {unit} (by_epoch={s.by_epoch}) but this run counts "
                    f"{'epochs' if runner.by_epoch else 'iterations'}; set by_epoch={runner.by_epoch}."
                )
            s._resolved_source = source

    def stages(self) -> list[str]:
        """The hook stages at which something is stepped."""
        sources = {getattr(s, "_resolved_source", s.source) for s in self.items}
        out = []
        if sources & {"val", "auto"}:
            out.append("after_val_epoch")
        if sources & {"train", "auto"}:
            out.append("after_train_epoch")
        return out

    def _observe(self, runner: Any, s: Any, value: float) -> None:
        groups = runner.optim_wrapper.param_groups
        if not s.observe(value, groups):
            return
        if id(s) in self._kiln:
            self.schedule_set.reapply()

    def after_val(self, runner: Any, metrics: Mapping | None) -> None:
        """Step the validation-driven schedulers with the evaluator's metrics."""
        _, n = trained_so_far(runner)
        for s in self.items:
            if getattr(s, "_resolved_source", None) != "val" or not s.in_window(n):
                continue
            if not metrics or s.monitor not in metrics:
                raise KeyError(
                    f"{s!r}: monitor {s.monitor!r} is not among the validation metrics "
                    f"{sorted(metrics or {})}; set monitor= to one of them, or source='train' to watch a "
                    f"logged training scalar such as 'loss'."
                )
            self._observe(runner, s, float(metrics[s.monitor]))

    def after_train_epoch(self, runner: Any) -> None:
        """Step the training-metric schedulers with the epoch's mean of their logged scalar."""
        todo = [s for s in self.items if getattr(s, "_resolved_source", None) == "train"]
        if not todo:
            return
        runner.flush_metrics()
        _, n = trained_so_far(runner)
        end = runner.iter  # the loop counted this epoch's iterations already
        start = end - (runner.epoch_length or 0)
        histories = runner.storage.histories()
        for s in todo:
            if not s.in_window(n):
                continue
            h = histories.get(s.monitor)
            vals = [v for v, it in (h.values() if h is not None else ()) if start <= it < end]
            if not vals:
                raise KeyError(
                    f"{s!r}: no logged training scalar {s.monitor!r} in this epoch; logged: "
                    f"{sorted(k for k in histories if not k.startswith('val/'))}."
                )
            self._observe(runner, s, math.fsum(vals) / len(vals))
