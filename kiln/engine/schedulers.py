"""Parameter schedules (lr, momentum) as closed-form functions of the iteration.

Each scheduler is a *shape*: within its window ``[begin, end)`` it multiplies the base value of a
parameter by ``factor(base, t)``. A :class:`ScheduleSet` applies all shapes for an optimizer at an
iteration: ``value = base * prod(factor_i)``. Because the value is a pure function of the iteration
(and the bases, which live in the optimizer's param groups as ``initial_lr``/``initial_momentum``),
resuming is exact by construction: set the iteration, get the same learning rate.

Windows are in epochs when ``by_epoch=True`` (converted to iterations with the loader length;
``convert_to_iter_based=True`` makes the shape move every iteration instead of at epoch boundaries)
and in iterations otherwise.

Example (MMEngine style)::

    param_scheduler = [
        dict(type='LinearLR', start_factor=1/3, by_epoch=False, begin=0, end=500),
        dict(type='MultiStepLR', milestones=[8, 11], gamma=0.1, by_epoch=True),
    ]

and the MMCV ``lr_config=dict(policy='step', warmup='linear', warmup_iters=500, warmup_ratio=1/3,
step=[8, 11])`` converts to exactly that (:mod:`kiln.config.dialects.mmcv_schedules`).
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Mapping, Sequence
from typing import Any

from kiln.registry import PARAM_SCHEDULERS

__all__ = [
    "ParamScheduler",
    "ConstantParamScheduler",
    "LinearParamScheduler",
    "ExponentialParamScheduler",
    "StepParamScheduler",
    "MultiStepParamScheduler",
    "CosineAnnealingParamScheduler",
    "CosineRestartParamScheduler",
    "PolyParamScheduler",
    "OneCycleParamScheduler",
    "ExpWarmupParamScheduler",
    "ScheduleSet",
    "build_param_schedulers",
]

INF = float("inf")


class ParamScheduler:
    """Base of schedule shapes.

    Args:
        param_name: ``'lr'`` or ``'momentum'`` (Adam-like optimizers: ``betas[0]``).
        begin, end: the window, in epochs if ``by_epoch`` else iterations; ``end=None`` means the
            end of training (filled in by :class:`ScheduleSet`).
        by_epoch: whether ``begin``/``end`` and the shape's own periods count epochs.
        convert_to_iter_based: for ``by_epoch`` shapes, move every iteration (fractional epochs).
        optimizer: accepted (and ignored) so MMEngine configs built with ``default_args`` work.
    """

    #: whether the factor only changes at discrete points (lets the set skip recomputation)
    discrete = False

    def __init__(
        self,
        param_name: str = "lr",
        begin: float = 0,
        end: float | None = None,
        by_epoch: bool = True,
        convert_to_iter_based: bool = False,
        optimizer: Any = None,
    ) -> None:
        if param_name not in ("lr", "momentum"):
            raise ValueError(
                f"{type(self).__name__}: param_name must be 'lr' or 'momentum', got {param_name!r}."
            )
        if end is not None and end <= begin:
            raise ValueError(f"{type(self).__name__}: end ({end}) must be greater than begin ({begin}).")
        self.param_name = param_name
        self.begin = begin
        self.end = INF if end is None else end
        self._end_given = end is not None
        self.by_epoch = by_epoch
        self.convert_to_iter_based = convert_to_iter_based

    # -- shape ---------------------------------------------------------------
    def factor(self, base: float, t: float) -> float:
        """Multiplier at local time ``t`` (0 at ``begin``; clamped to ``end - begin``)."""
        raise NotImplementedError

    def change_points(self) -> Sequence[float]:
        """For discrete shapes: local times where the factor changes (sorted)."""
        return ()

    # -- time ----------------------------------------------------------------
    def _time(self, it: int, epoch_length: int) -> float:
        if not self.by_epoch:
            return it
        if self.convert_to_iter_based:
            return it / epoch_length
        return it // epoch_length

    def _to_iter(self, t: float, epoch_length: int) -> float:
        if t == INF:
            return INF
        return math.ceil(t * epoch_length) if self.by_epoch else math.ceil(t)

    def factor_at(self, base: float, it: int, epoch_length: int) -> float:
        """Multiplier at global iteration ``it`` (1.0 before the window starts)."""
        t = self._time(it, epoch_length)
        if t < self.begin:
            return 1.0
        return self.factor(base, min(t, self.end) - self.begin)

    def next_change(self, it: int, epoch_length: int) -> float:
        """The first iteration after ``it`` at which this shape's factor may differ."""
        t = self._time(it, epoch_length)
        if t < self.begin:
            return max(it + 1, self._to_iter(self.begin, epoch_length))
        if t >= self.end:
            return INF
        if self.by_epoch and not self.convert_to_iter_based:
            candidate = self._to_iter(t + 1, epoch_length) if not self.discrete else None
        else:
            candidate = it + 1 if not self.discrete else None
        if candidate is None:  # discrete: next change point (or the window end)
            local = t - self.begin
            points = self.change_points()
            i = bisect.bisect_right(points, local)
            nxt = points[i] + self.begin if i < len(points) else self.end
            candidate = self._to_iter(min(nxt, self.end), epoch_length)
        return max(it + 1, candidate)

    def __repr__(self) -> str:
        unit = "epoch" if self.by_epoch else "iter"
        return f"{type(self).__name__}({self.param_name}, [{self.begin}, {self.end}) {unit})"


class ConstantParamScheduler(ParamScheduler):
    """Multiply by ``factor`` inside the window, then return to the base value (constant warmup)."""

    discrete = True

    def __init__(self, factor: float = 1.0 / 3, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if not 0 < factor <= 1:
            raise ValueError(f"ConstantParamScheduler: factor must be in (0, 1], got {factor}.")
        self.value = factor

    def factor(self, base: float, t: float) -> float:
        """``factor`` before the end, 1 at the end."""
        return 1.0 if t >= self.end - self.begin else self.value

    def change_points(self) -> Sequence[float]:
        """The window end."""
        return (self.end - self.begin,)


class LinearParamScheduler(ParamScheduler):
    """Move the multiplier linearly from ``start_factor`` to ``end_factor`` over the window (warmup)."""

    def __init__(self, start_factor: float = 1.0 / 3, end_factor: float = 1.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if not self._end_given:
            raise ValueError(f"{type(self).__name__} needs end= (the length of the ramp).")
        self.start_factor, self.end_factor = start_factor, end_factor

    def factor(self, base: float, t: float) -> float:
        """Linear interpolation between the two factors."""
        span = self.end - self.begin
        return self.start_factor + (self.end_factor - self.start_factor) * (t / span)


class ExpWarmupParamScheduler(ParamScheduler):
    """MMCV's ``warmup='exp'``: multiplier ``start_factor ** (1 - t / length)``."""

    def __init__(self, start_factor: float = 0.1, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if not self._end_given:
            raise ValueError("ExpWarmupParamScheduler needs end= (the warmup length).")
        self.start_factor = start_factor

    def factor(self, base: float, t: float) -> float:
        """Exponential ramp up to 1."""
        return self.start_factor ** (1 - t / (self.end - self.begin))


class ExponentialParamScheduler(ParamScheduler):
    """Multiply by ``gamma`` every unit of time."""

    def __init__(self, gamma: float, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.gamma = gamma

    def factor(self, base: float, t: float) -> float:
        """``gamma ** t``."""
        return self.gamma**t


class StepParamScheduler(ParamScheduler):
    """Multiply by ``gamma`` every ``step_size`` units."""

    discrete = True

    def __init__(self, step_size: int, gamma: float = 0.1, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if step_size <= 0:
            raise ValueError(f"StepParamScheduler: step_size must be positive, got {step_size}.")
        self.step_size, self.gamma = step_size, gamma

    def factor(self, base: float, t: float) -> float:
        """``gamma ** floor(t / step_size)``."""
        return self.gamma ** (int(t) // self.step_size)

    def change_points(self) -> Sequence[float]:
        """Multiples of the step size inside the window (lazily bounded)."""
        span = self.end - self.begin
        if span == INF:
            span = self.step_size * 10_000
        return tuple(range(self.step_size, int(span) + 1, self.step_size))


class MultiStepParamScheduler(ParamScheduler):
    """Multiply by ``gamma`` at each milestone (counted from ``begin``)."""

    discrete = True

    def __init__(self, milestones: Sequence[int], gamma: float = 0.1, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        ms = list(milestones)
        if ms != sorted(ms):
            raise ValueError(f"MultiStepParamScheduler: milestones must be increasing, got {ms}.")
        self.milestones, self.gamma = tuple(ms), gamma

    def factor(self, base: float, t: float) -> float:
        """``gamma ** (number of milestones <= t)``."""
        return self.gamma ** bisect.bisect_right(self.milestones, t)

    def change_points(self) -> Sequence[float]:
        """The milestones."""
        return self.milestones


def _eta_min(base: float, eta_min: float | None, eta_min_ratio: float | None) -> float:
    if eta_min_ratio is not None:
        return base * eta_min_ratio
    return eta_min or 0.0


class CosineAnnealingParamScheduler(ParamScheduler):
    """Cosine from the base value down to ``eta_min`` (or ``base * eta_min_ratio``) over ``T_max``.

    ``T_max`` defaults to the window length (``end - begin``).
    """

    def __init__(
        self,
        T_max: float | None = None,
        eta_min: float | None = None,
        eta_min_ratio: float | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if eta_min is not None and eta_min_ratio is not None:
            raise ValueError("CosineAnnealingParamScheduler: give eta_min or eta_min_ratio, not both.")
        self.T_max = T_max
        self.eta_min, self.eta_min_ratio = eta_min, eta_min_ratio

    def factor(self, base: float, t: float) -> float:
        """Half a cosine period from 1 to ``eta_min / base``."""
        T = self.T_max if self.T_max is not None else self.end - self.begin
        if T == INF:
            raise ValueError("CosineAnnealingParamScheduler needs T_max or an end to the window.")
        if base == 0:
            return 1.0
        lo = _eta_min(base, self.eta_min, self.eta_min_ratio)
        value = lo + (base - lo) * (1 + math.cos(math.pi * min(t, T) / T)) / 2
        return value / base


class CosineRestartParamScheduler(ParamScheduler):
    """Cosine annealing restarted after each of ``periods``, peak scaled by ``restart_weights``."""

    def __init__(
        self,
        periods: Sequence[float],
        restart_weights: Sequence[float] = (1.0,),
        eta_min: float | None = None,
        eta_min_ratio: float | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if len(restart_weights) == 1 and len(periods) > 1:
            restart_weights = list(restart_weights) * len(periods)
        if len(periods) != len(restart_weights):
            raise ValueError(
                f"CosineRestartParamScheduler: periods ({len(periods)}) and restart_weights "
                f"({len(restart_weights)}) must have the same length."
            )
        self.periods, self.weights = list(periods), list(restart_weights)
        self.cum = [sum(self.periods[: i + 1]) for i in range(len(self.periods))]
        self.eta_min, self.eta_min_ratio = eta_min, eta_min_ratio

    def factor(self, base: float, t: float) -> float:
        """Find the current period, then half a cosine inside it."""
        if base == 0:
            return 1.0
        idx = bisect.bisect_right(self.cum, t)
        if idx >= len(self.periods):
            idx, inner = len(self.periods) - 1, self.periods[-1]
        else:
            inner = t - (self.cum[idx - 1] if idx > 0 else 0)
        lo = _eta_min(base, self.eta_min, self.eta_min_ratio)
        peak = base * self.weights[idx]
        value = lo + (peak - lo) * (1 + math.cos(math.pi * inner / self.periods[idx])) / 2
        return value / base


class PolyParamScheduler(ParamScheduler):
    """Polynomial decay ``(1 - t / T) ** power`` from the base value to ``eta_min`` over the window."""

    def __init__(self, power: float = 1.0, eta_min: float = 0.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.power, self.eta_min = power, eta_min

    def factor(self, base: float, t: float) -> float:
        """Polynomial interpolation between base and ``eta_min``."""
        T = self.end - self.begin
        if T == INF:
            raise ValueError(
                "PolyParamScheduler needs an end to its window (end=... or the training length)."
            )
        if base == 0:
            return 1.0
        return (self.eta_min + (base - self.eta_min) * (1 - min(t, T) / T) ** self.power) / base


class OneCycleParamScheduler(ParamScheduler):
    """The 1cycle policy: warm up to ``max_lr`` for ``pct_start`` of the window, then anneal.

    ``max_lr`` defaults to the base value; the start is ``max_lr / div_factor`` and the final value
    ``start / final_div_factor``. ``anneal_strategy`` is ``'cos'`` or ``'linear'``.
    """

    def __init__(
        self,
        max_lr: float | None = None,
        pct_start: float = 0.3,
        anneal_strategy: str = "cos",
        div_factor: float = 25.0,
        final_div_factor: float = 1e4,
        three_phase: bool = False,
        total_steps: int | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if anneal_strategy not in ("cos", "linear"):
            raise ValueError(
                f"OneCycleParamScheduler: anneal_strategy must be 'cos' or 'linear', got {anneal_strategy!r}."
            )
        if total_steps is not None:
            self.end = self.begin + total_steps
        self.max_lr, self.pct_start = max_lr, pct_start
        self.anneal = anneal_strategy
        self.div_factor, self.final_div_factor, self.three_phase = div_factor, final_div_factor, three_phase

    def _interp(self, start: float, end: float, pct: float) -> float:
        if self.anneal == "cos":
            return end + (start - end) / 2 * (math.cos(math.pi * pct) + 1)
        return (end - start) * pct + start

    def factor(self, base: float, t: float) -> float:
        """Piecewise warm-up/anneal of the absolute value, divided by the base."""
        T = self.end - self.begin
        if T == INF:
            raise ValueError("OneCycleParamScheduler needs total_steps or an end to its window.")
        if base == 0:
            return 1.0
        peak = self.max_lr if self.max_lr is not None else base
        initial = peak / self.div_factor
        final = initial / self.final_div_factor
        # Phase ends as in torch's OneCycleLR (step indices).
        total = T - 1
        up = self.pct_start * T - 1
        if self.three_phase:
            phases = [
                (up, initial, peak),
                (2 * self.pct_start * T - 2, peak, initial),
                (total, initial, final),
            ]
        else:
            phases = [(up, initial, peak), (total, peak, final)]
        start_t = 0.0
        for end_t, a, b in phases:
            if t <= end_t or end_t == phases[-1][0]:
                pct = 0.0 if end_t == start_t else min(1.0, (t - start_t) / (end_t - start_t))
                return self._interp(a, b, pct) / base
            start_t = end_t
        return final / base


class FlatCosineAnnealingParamScheduler(ParamScheduler):
    """MMCV's ``FlatCosineAnnealing``: the base value for the first ``start_percent`` of the window,
    then a cosine down to ``eta_min`` (or ``base * eta_min_ratio``) at its end.

    The flat part ends at ``round(length * start_percent)`` (epochs or iterations, as MMCV rounds).
    """

    discrete = False

    def __init__(
        self,
        start_percent: float = 0.75,
        eta_min: float | None = None,
        eta_min_ratio: float | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if not 0 <= start_percent < 1:
            raise ValueError(f"FlatCosineAnnealing: start_percent must be in [0, 1), got {start_percent}.")
        if eta_min is not None and eta_min_ratio is not None:
            raise ValueError(
                "FlatCosineAnnealing: give eta_min (min_lr) or eta_min_ratio (min_lr_ratio), not both."
            )
        self.start_percent = start_percent
        self.eta_min, self.eta_min_ratio = eta_min, eta_min_ratio

    def factor(self, base: float, t: float) -> float:
        """1 until the flat part ends, then half a cosine period down to the minimum."""
        length = self.end - self.begin
        if length == INF:
            raise ValueError("FlatCosineAnnealing needs an end to the window (the training length).")
        start = round(length * self.start_percent)
        if t < start or base == 0:
            return 1.0
        lo = _eta_min(base, self.eta_min, self.eta_min_ratio)
        value = lo + (base - lo) * (1 + math.cos(math.pi * (t - start) / (length - start))) / 2
        return value / base


class CyclicParamScheduler(ParamScheduler):
    """MMCV's ``Cyclic`` policy (iteration-based): in each of ``cyclic_times`` cycles the multiplier
    goes from 1 up to ``target_ratio[0]`` over the first ``step_ratio_up`` of the cycle, then to
    ``target_ratio[1]`` by its end; ``anneal_strategy`` ``'cos'`` or ``'linear'``. With ``gamma < 1``
    the excursion of cycle ``k`` from 1 is scaled by ``gamma ** k``.

    For lr the MMCV defaults are ``target_ratio=(10, 1e-4)``; for momentum ``(0.85 / 0.95, 1)``.
    A single number ``r`` means ``(r, r / 1e5)``.
    """

    def __init__(
        self,
        target_ratio: float | Sequence[float] = (10.0, 1e-4),
        cyclic_times: int = 1,
        step_ratio_up: float = 0.4,
        anneal_strategy: str = "cos",
        gamma: float = 1.0,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("by_epoch", False)
        super().__init__(**kwargs)
        if self.by_epoch:
            raise ValueError("Cyclic schedules count iterations; set by_epoch=False.")
        if isinstance(target_ratio, (int, float)):
            target_ratio = (float(target_ratio), float(target_ratio) / 1e5)
        target_ratio = tuple(float(r) for r in target_ratio)
        if len(target_ratio) != 2:
            raise ValueError(f"Cyclic: target_ratio must be a number or two numbers, got {target_ratio}.")
        if int(cyclic_times) < 1:
            raise ValueError(f"Cyclic: cyclic_times must be >= 1, got {cyclic_times}.")
        if not 0 <= step_ratio_up < 1:
            raise ValueError(f"Cyclic: step_ratio_up must be in [0, 1), got {step_ratio_up}.")
        if anneal_strategy not in ("cos", "linear"):
            raise ValueError(f"Cyclic: anneal_strategy must be 'cos' or 'linear', got {anneal_strategy!r}.")
        if not 0 < gamma <= 1:
            raise ValueError(f"Cyclic: gamma must be in (0, 1], got {gamma}.")
        self.target_ratio = target_ratio
        self.cyclic_times = int(cyclic_times)
        self.step_ratio_up = step_ratio_up
        self.anneal_strategy = anneal_strategy
        self.gamma = gamma

    def _anneal(self, a: float, b: float, pct: float) -> float:
        if self.anneal_strategy == "linear":
            return a + (b - a) * pct
        return b + (a - b) * (1 + math.cos(math.pi * pct)) / 2

    def factor(self, base: float, t: float) -> float:
        """The multiplier at iteration ``t`` of the window."""
        length = self.end - self.begin
        if length == INF:
            raise ValueError(
                "Cyclic schedules need an end to the window (the training length in iterations)."
            )
        per_cycle = max(int(length) // self.cyclic_times, 1)
        up = int(self.step_ratio_up * per_cycle)
        cur, cycle = int(t) % per_cycle, int(t) // per_cycle
        scale = self.gamma**cycle
        peak, final = self.target_ratio
        if cur < up:
            return self._anneal(1.0, 1 - scale + peak * scale, cur / up)
        return self._anneal(1 - scale + peak * scale, final, (cur - up) / (per_cycle - up))


_SHAPES = {
    "Constant": ConstantParamScheduler,
    "Linear": LinearParamScheduler,
    "Exponential": ExponentialParamScheduler,
    "Step": StepParamScheduler,
    "MultiStep": MultiStepParamScheduler,
    "CosineAnnealing": CosineAnnealingParamScheduler,
    "CosineRestart": CosineRestartParamScheduler,
    "Poly": PolyParamScheduler,
    "OneCycle": OneCycleParamScheduler,
    "ExpWarmup": ExpWarmupParamScheduler,
    "FlatCosineAnnealing": FlatCosineAnnealingParamScheduler,
    "Cyclic": CyclicParamScheduler,
}


def _register_shapes() -> None:
    """Register ``<Shape>ParamScheduler``, ``<Shape>LR`` and ``<Shape>Momentum`` for every shape."""
    for name, cls in _SHAPES.items():
        PARAM_SCHEDULERS.register_module(name=f"{name}ParamScheduler", module=cls)
        for suffix, param in (("LR", "lr"), ("Momentum", "momentum")):
            sub = type(
                f"{name}{suffix}",
                (cls,),
                {
                    "__doc__": f"{cls.__name__} for ``{param}``.",
                    "__init__": _fixed_param_init(cls, param),
                    "__module__": __name__,
                },
            )
            globals()[sub.__name__] = sub
            PARAM_SCHEDULERS.register_module(module=sub)


def _fixed_param_init(cls: type, param: str) -> Any:
    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("param_name", param)
        cls.__init__(self, *args, **kwargs)

    return __init__


_register_shapes()


class ScheduleSet:
    """Applies schedule shapes to an optimizer's param groups as a function of the iteration.

    Args:
        optimizer: a ``torch.optim.Optimizer`` (or an object with ``.optimizer``).
        schedulers: the shapes.
        epoch_length: iterations per epoch (needed by ``by_epoch`` shapes).
        max_iters: training length, used to close windows with ``end=None``.

    The base values are recorded once in each param group (``initial_lr``, ``initial_momentum``),
    which the optimizer's state dict carries across a resume.
    """

    def __init__(
        self,
        optimizer: Any,
        schedulers: Sequence[ParamScheduler],
        epoch_length: int | None = None,
        max_iters: int | None = None,
    ) -> None:
        self.optimizer = getattr(optimizer, "optimizer", optimizer)
        self.schedulers = list(schedulers)
        timed = [s for s in self.schedulers if not getattr(s, "metric_driven", False)]
        if any(s.by_epoch for s in timed) and not epoch_length:
            raise ValueError(
                "by_epoch schedulers need the number of iterations per epoch, but the train loader's "
                "length is unknown (an infinite loader?). Use by_epoch=False schedules with iteration counts."
            )
        self.epoch_length = int(epoch_length or 1)
        # Metric-driven shapes (ReduceOnPlateau): a state per param group instead of a closed form.
        self.metric_driven = [s for s in self.schedulers if getattr(s, "metric_driven", False)]
        for s in self.metric_driven:
            s.bind(len(self.optimizer.param_groups))
        for s in self.schedulers:
            if (
                s.end == INF
                and not getattr(s, "metric_driven", False)
                and max_iters is not None
                and not isinstance(
                    s, (StepParamScheduler, MultiStepParamScheduler, ExponentialParamScheduler)
                )
            ):
                s.end = max_iters / self.epoch_length if s.by_epoch else max_iters
        self._by_param: dict[str, list[ParamScheduler]] = {}
        for s in self.schedulers:
            self._by_param.setdefault(s.param_name, []).append(s)
        for group in self.optimizer.param_groups:
            group.setdefault("initial_lr", group["lr"])
            if "momentum" in self._by_param:
                if "momentum" in group:
                    group.setdefault("initial_momentum", group["momentum"])
                elif "betas" in group:
                    group.setdefault("initial_momentum", group["betas"][0])
                else:
                    raise ValueError(
                        f"A momentum scheduler was given, but {type(self.optimizer).__name__} has no "
                        f"'momentum' or 'betas' in its param groups."
                    )
        self.last_iter = -1
        self._valid_until = -1.0

    def values_at(self, it: int) -> dict[str, list[float]]:
        """The scheduled value of each parameter, per param group, at iteration ``it``."""
        out: dict[str, list[float]] = {}
        for param, scheds in self._by_param.items():
            vals = []
            for gi, group in enumerate(self.optimizer.param_groups):
                base = group[f"initial_{param}"]
                v = base
                for s in scheds:
                    if getattr(s, "metric_driven", False):
                        v *= s.group_factor(gi)
                    else:
                        v *= s.factor_at(base, it, self.epoch_length)
                vals.append(v)
            out[param] = vals
        return out

    def apply(self, it: int) -> None:
        """Set the param groups to their values at iteration ``it`` (skipped while nothing changes)."""
        if self.last_iter < it < self._valid_until:
            self.last_iter = it
            return
        for param, vals in self.values_at(it).items():
            for group, v in zip(self.optimizer.param_groups, vals):
                if param == "lr":
                    group["lr"] = v
                elif "momentum" in group:
                    group["momentum"] = v
                else:
                    group["betas"] = (v, *tuple(group["betas"])[1:])
        self.last_iter = it
        self._valid_until = min((s.next_change(it, self.epoch_length) for s in self.schedulers), default=INF)

    def next_update(self, it: int) -> float:
        """The first iteration ``>= it`` at which :meth:`apply` would change a value (``inf``: never)."""
        if self.last_iter < it < self._valid_until:
            return math.ceil(self._valid_until) if self._valid_until != INF else INF
        return it

    def reapply(self) -> None:
        """Set the values again at the last applied iteration (a metric-driven shape changed).

        Metric-driven factors stay constant until their next change, so the other shapes' next
        change points (what the fast path waits for) are unaffected.
        """
        self._valid_until = -1.0
        self.apply(max(self.last_iter, 0))

    def state_dict(self) -> dict:
        """The last applied iteration (values are recomputed from it) and metric-driven states."""
        state: dict[str, Any] = {"last_iter": self.last_iter}
        if self.metric_driven:
            state["metric_driven"] = [s.state_dict() for s in self.metric_driven]
        return state

    def load_state_dict(self, state: Mapping) -> None:
        """Restore; the next :meth:`apply` recomputes the values."""
        self.last_iter = int(state.get("last_iter", -1))
        self._valid_until = -1.0
        saved = state.get("metric_driven", [])
        if len(saved) != len(self.metric_driven):
            raise ValueError(
                f"The checkpoint holds {len(saved)} metric-driven schedulers (ReduceOnPlateau) but the "
                f"config has {len(self.metric_driven)}; resume with the param_scheduler it was saved with."
            )
        for s, st in zip(self.metric_driven, saved):
            s.load_state_dict(st)

    def __repr__(self) -> str:
        return f"ScheduleSet({self.schedulers}, epoch_length={self.epoch_length})"


def build_param_schedulers(cfgs: Sequence[Mapping] | Mapping) -> list[ParamScheduler]:
    """Build shapes from MMEngine-style ``param_scheduler`` configs (a dict or a list of dicts)."""
    if isinstance(cfgs, Mapping):
        cfgs = [cfgs]
    out = []
    for i, cfg in enumerate(cfgs):
        if isinstance(cfg, ParamScheduler):
            out.append(cfg)
        else:
            out.append(PARAM_SCHEDULERS.build(dict(cfg), cfg_path=f"param_scheduler.{i}"))
    return out

