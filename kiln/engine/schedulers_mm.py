"""MMCV ``lr_config`` / ``momentum_config`` policies converted to kiln schedule shapes."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .schedulers import (
    ConstantParamScheduler,
    CosineAnnealingParamScheduler,
    CosineRestartParamScheduler,
    CyclicParamScheduler,
    ExponentialParamScheduler,
    ExpWarmupParamScheduler,
    FlatCosineAnnealingParamScheduler,
    LinearParamScheduler,
    MultiStepParamScheduler,
    OneCycleParamScheduler,
    ParamScheduler,
    PolyParamScheduler,
    StepParamScheduler,
    _eta_min,
)

__all__ = ["schedulers_from_lr_config"]

_POLICIES = {
    "step",
    "fixed",
    "exp",
    "poly",
    "cosineannealing",
    "cosinerestart",
    "onecycle",
    "linearannealing",
    "flatcosineannealing",
    "cyclic",
    "inv",
}


def schedulers_from_lr_config(lr_config: Mapping | None, param_name: str = "lr") -> list[ParamScheduler]:
    """Convert an MMCV ``lr_config`` (or ``momentum_config``) into schedule shapes.

    Policies: ``fixed``, ``step`` (``step`` int or list, ``gamma``), ``exp``, ``poly``
    (``power``, ``min_lr``), ``CosineAnnealing`` (``min_lr``/``min_lr_ratio``), ``CosineRestart``
    (``periods``, ``restart_weights``), ``OneCycle``, ``LinearAnnealing``, ``FlatCosineAnnealing``
    (``start_percent``, ``min_lr``/``min_lr_ratio``), ``Cyclic`` (``target_ratio``, ``cyclic_times``,
    ``step_ratio_up``, ``anneal_strategy``, ``gamma``; iteration-based; the momentum defaults are
    MMCV's ``CyclicMomentumUpdaterHook``'s). Warmup
    (``warmup='linear'|'constant'|'exp'``, ``warmup_iters``, ``warmup_ratio``, ``warmup_by_epoch``)
    multiplies the regular schedule, as in MMCV. ``by_epoch`` defaults to True.
    """
    if not lr_config:
        return []
    cfg = dict(lr_config)
    policy = str(cfg.pop("policy", "fixed"))
    key = policy.lower()
    if key not in _POLICIES:
        raise ValueError(
            f"lr_config policy {policy!r} is not supported; use one of: step, fixed, exp, poly, "
            f"CosineAnnealing, CosineRestart, OneCycle, LinearAnnealing, FlatCosineAnnealing, Cyclic "
            f"(or param_scheduler=[...])."
        )
    by_epoch = bool(cfg.pop("by_epoch", True))
    warmup = cfg.pop("warmup", None)
    warmup_iters = cfg.pop("warmup_iters", 0)
    warmup_ratio = cfg.pop("warmup_ratio", 0.1)
    warmup_by_epoch = bool(cfg.pop("warmup_by_epoch", False))
    common = {"param_name": param_name, "by_epoch": by_epoch}
    out: list[ParamScheduler] = []
    if key == "step":
        step = cfg.pop("step")
        gamma = cfg.pop("gamma", 0.1)
        min_lr = cfg.pop("min_lr", None)
        if min_lr is not None:
            raise ValueError("lr_config: step policy with min_lr is not supported; drop min_lr.")
        if isinstance(step, int):
            out.append(StepParamScheduler(step_size=step, gamma=gamma, **common))
        else:
            out.append(MultiStepParamScheduler(milestones=list(step), gamma=gamma, **common))
    elif key == "exp":
        out.append(ExponentialParamScheduler(gamma=cfg.pop("gamma"), **common))
    elif key == "poly":
        out.append(PolyParamScheduler(power=cfg.pop("power", 1.0), eta_min=cfg.pop("min_lr", 0.0), **common))
    elif key == "cosineannealing":
        out.append(
            CosineAnnealingParamScheduler(
                eta_min=cfg.pop("min_lr", None), eta_min_ratio=cfg.pop("min_lr_ratio", None), **common
            )
        )
    elif key == "linearannealing":
        ratio = cfg.pop("min_lr_ratio", None)
        min_lr = cfg.pop("min_lr", None)
        out.append(_LinearToMin(eta_min=min_lr, eta_min_ratio=ratio, **common))
    elif key == "cosinerestart":
        out.append(
            CosineRestartParamScheduler(
                periods=cfg.pop("periods"),
                restart_weights=cfg.pop("restart_weights", (1.0,)),
                eta_min=cfg.pop("min_lr", None),
                eta_min_ratio=cfg.pop("min_lr_ratio", None),
                **common,
            )
        )
    elif key == "onecycle":
        out.append(
            OneCycleParamScheduler(
                max_lr=cfg.pop("max_lr", None),
                pct_start=cfg.pop("pct_start", 0.3),
                anneal_strategy=cfg.pop("anneal_strategy", "cos"),
                div_factor=cfg.pop("div_factor", 25.0),
                final_div_factor=cfg.pop("final_div_factor", 1e4),
                three_phase=cfg.pop("three_phase", False),
                total_steps=cfg.pop("total_steps", None),
                param_name=param_name,
                by_epoch=False,
            )
        )
    elif key == "flatcosineannealing":
        out.append(
            FlatCosineAnnealingParamScheduler(
                start_percent=cfg.pop("start_percent", 0.75),
                eta_min=cfg.pop("min_lr", None),
                eta_min_ratio=cfg.pop("min_lr_ratio", None),
                **common,
            )
        )
    elif key == "cyclic":
        if common["by_epoch"] and "by_epoch" not in lr_config:
            common["by_epoch"] = False  # MMCV's Cyclic hooks default to iterations
        default_ratio = (10.0, 1e-4) if param_name == "lr" else (0.85 / 0.95, 1.0)
        out.append(
            CyclicParamScheduler(
                target_ratio=cfg.pop("target_ratio", default_ratio),
                cyclic_times=cfg.pop("cyclic_times", 1),
                step_ratio_up=cfg.pop("step_ratio_up", 0.4),
                anneal_strategy=cfg.pop("anneal_strategy", "cos"),
                gamma=cfg.pop("gamma", 1.0),
                **common,
            )
        )
    elif key == "inv":
        raise ValueError("lr_config policy 'inv' is not supported; use 'poly' or param_scheduler=[...].")
    if cfg:
        raise KeyError(f"lr_config (policy={policy!r}) has keys kiln does not understand: {sorted(cfg)}.")
    if warmup is not None and warmup_iters:
        wcommon = {"param_name": param_name, "begin": 0, "end": warmup_iters, "by_epoch": warmup_by_epoch}
        if warmup == "linear":
            out.append(LinearParamScheduler(start_factor=warmup_ratio, end_factor=1.0, **wcommon))
        elif warmup == "constant":
            out.append(ConstantParamScheduler(factor=warmup_ratio, **wcommon))
        elif warmup == "exp":
            out.append(ExpWarmupParamScheduler(start_factor=warmup_ratio, **wcommon))
        else:
            raise ValueError(f"lr_config warmup must be 'linear', 'constant' or 'exp', got {warmup!r}.")
    return out


class _LinearToMin(ParamScheduler):
    """MMCV ``LinearAnnealing``: linear from the base value to ``min_lr`` over training."""

    def __init__(
        self, eta_min: float | None = None, eta_min_ratio: float | None = None, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.eta_min, self.eta_min_ratio = eta_min, eta_min_ratio

    def factor(self, base: float, t: float) -> float:
        """Linear interpolation to the minimum."""
        T = self.end - self.begin
        if base == 0:
            return 1.0
        lo = _eta_min(base, self.eta_min, self.eta_min_ratio)
        return (base + (lo - base) * min(t, T) / T) / base
