"""MMCV ``lr_config`` / ``momentum_config`` policies -> MMEngine ``param_scheduler`` dicts.

A pure translation: the result names registered schedule shapes (``MultiStepLR``, ``LinearLR``,
``CosineAnnealingMomentum``, ...; see :mod:`kiln.engine.schedulers`) and is built like any
``param_scheduler`` the user wrote. MMCV's warmup multiplies the regular schedule, which is what two
shapes in one ``param_scheduler`` list do, so ``warmup`` becomes a second entry over
``[0, warmup_iters)``.

Example::

    >>> lr_config_to_param_scheduler(dict(policy='step', warmup='linear', warmup_iters=500,
    ...                                   warmup_ratio=1 / 3, step=[8, 11]))  # doctest: +NORMALIZE_WHITESPACE
    [{'type': 'MultiStepLR', 'milestones': [8, 11], 'gamma': 0.1, 'by_epoch': True},
     {'type': 'LinearLR', 'start_factor': 0.3333333333333333, 'end_factor': 1.0, 'begin': 0, 'end': 500,
      'by_epoch': False}]
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["lr_config_to_param_scheduler", "SUPPORTED_POLICIES"]

#: lower-cased policy name -> the name users write (for messages)
SUPPORTED_POLICIES = {
    "step": "step",
    "fixed": "fixed",
    "exp": "exp",
    "poly": "poly",
    "cosineannealing": "CosineAnnealing",
    "cosinerestart": "CosineRestart",
    "onecycle": "OneCycle",
    "linearannealing": "LinearAnnealing",
    "flatcosineannealing": "FlatCosineAnnealing",
    "cyclic": "Cyclic",
}
_SUFFIX = {"lr": "LR", "momentum": "Momentum"}


def _policy_error(policy: str, where: str) -> ValueError:
    import difflib

    close = difflib.get_close_matches(policy.lower(), list(SUPPORTED_POLICIES), n=1)
    hint = f" Did you mean {SUPPORTED_POLICIES[close[0]]!r}?" if close else ""
    return ValueError(
        f"{where} policy {policy!r} is not supported; use one of: "
        f"{', '.join(SUPPORTED_POLICIES.values())} (or write param_scheduler=[...]).{hint}"
    )


def lr_config_to_param_scheduler(
    lr_config: Mapping[str, Any] | None, param_name: str = "lr", where: str | None = None
) -> list[dict[str, Any]]:
    """Translate an MMCV ``lr_config`` (``param_name='lr'``) or ``momentum_config`` (``'momentum'``).

    Policies: ``fixed``, ``step`` (``step`` int or list, ``gamma``), ``exp``, ``poly`` (``power``,
    ``min_lr``), ``CosineAnnealing`` (``min_lr``/``min_lr_ratio``), ``CosineRestart`` (``periods``,
    ``restart_weights``), ``OneCycle``, ``LinearAnnealing``, ``FlatCosineAnnealing``
    (``start_percent``), ``Cyclic`` (``target_ratio``, ``cyclic_times``, ``step_ratio_up``,
    ``anneal_strategy``, ``gamma``; iteration-based; momentum defaults are MMCV's
    ``CyclicMomentumUpdaterHook``'s). Warmup: ``warmup='linear'|'constant'|'exp'``, ``warmup_iters``,
    ``warmup_ratio``, ``warmup_by_epoch``. ``by_epoch`` defaults to True. A key a policy does not
    take is an error naming it.
    """
    where = where or ("lr_config" if param_name == "lr" else f"{param_name}_config")
    if not lr_config:
        return []
    if param_name not in _SUFFIX:
        raise ValueError(f"{where}: param_name must be 'lr' or 'momentum', got {param_name!r}.")
    suffix = _SUFFIX[param_name]
    cfg = dict(lr_config)
    policy = str(cfg.pop("policy", "fixed"))
    key = policy.lower()
    if key == "inv":
        raise ValueError(f"{where} policy 'inv' is not supported; use 'poly' or param_scheduler=[...].")
    if key not in SUPPORTED_POLICIES:
        raise _policy_error(policy, where)
    by_epoch = bool(cfg.pop("by_epoch", True))
    warmup = cfg.pop("warmup", None)
    warmup_iters = cfg.pop("warmup_iters", 0)
    warmup_ratio = cfg.pop("warmup_ratio", 0.1)
    warmup_by_epoch = bool(cfg.pop("warmup_by_epoch", False))
    out: list[dict[str, Any]] = []

    def shape(name: str, **kwargs: Any) -> None:
        kwargs.setdefault("by_epoch", by_epoch)
        out.append(dict(type=f"{name}{suffix}", **kwargs))

    if key == "step":
        if "step" not in cfg:
            raise KeyError(f"{where}: policy 'step' needs step=... (an epoch/iteration count or a list).")
        step = cfg.pop("step")
        gamma = cfg.pop("gamma", 0.1)
        if cfg.pop("min_lr", None) is not None:
            raise ValueError(f"{where}: step policy with min_lr is not supported; drop min_lr.")
        if isinstance(step, int):
            shape("Step", step_size=step, gamma=gamma)
        else:
            shape("MultiStep", milestones=list(step), gamma=gamma)
    elif key == "exp":
        if "gamma" not in cfg:
            raise KeyError(f"{where}: policy 'exp' needs gamma=....")
        shape("Exponential", gamma=cfg.pop("gamma"))
    elif key == "poly":
        shape("Poly", power=cfg.pop("power", 1.0), eta_min=cfg.pop("min_lr", 0.0))
    elif key == "cosineannealing":
        shape("CosineAnnealing", eta_min=cfg.pop("min_lr", None), eta_min_ratio=cfg.pop("min_lr_ratio", None))
    elif key == "linearannealing":
        shape("LinearAnnealing", eta_min=cfg.pop("min_lr", None), eta_min_ratio=cfg.pop("min_lr_ratio", None))
    elif key == "cosinerestart":
        if "periods" not in cfg:
            raise KeyError(f"{where}: policy 'CosineRestart' needs periods=[...].")
        shape(
            "CosineRestart",
            periods=list(cfg.pop("periods")),
            restart_weights=list(cfg.pop("restart_weights", [1.0])),
            eta_min=cfg.pop("min_lr", None),
            eta_min_ratio=cfg.pop("min_lr_ratio", None),
        )
    elif key == "onecycle":
        shape(
            "OneCycle",
            max_lr=cfg.pop("max_lr", None),
            pct_start=cfg.pop("pct_start", 0.3),
            anneal_strategy=cfg.pop("anneal_strategy", "cos"),
            div_factor=cfg.pop("div_factor", 25.0),
            final_div_factor=cfg.pop("final_div_factor", 1e4),
            three_phase=cfg.pop("three_phase", False),
            total_steps=cfg.pop("total_steps", None),
            by_epoch=False,  # MMCV's OneCycle hook steps every iteration
        )
    elif key == "flatcosineannealing":
        shape(
            "FlatCosineAnnealing",
            start_percent=cfg.pop("start_percent", 0.75),
            eta_min=cfg.pop("min_lr", None),
            eta_min_ratio=cfg.pop("min_lr_ratio", None),
        )
    elif key == "cyclic":
        default_ratio = [10.0, 1e-4] if param_name == "lr" else [0.85 / 0.95, 1.0]
        target = cfg.pop("target_ratio", default_ratio)
        shape(
            "Cyclic",
            target_ratio=list(target) if isinstance(target, (list, tuple)) else target,
            cyclic_times=cfg.pop("cyclic_times", 1),
            step_ratio_up=cfg.pop("step_ratio_up", 0.4),
            anneal_strategy=cfg.pop("anneal_strategy", "cos"),
            gamma=cfg.pop("gamma", 1.0),
            # MMCV's Cyclic hooks count iterations unless the config says otherwise
            by_epoch=bool(lr_config["by_epoch"]) if "by_epoch" in lr_config else False,
        )
    if cfg:
        raise KeyError(f"{where} (policy={policy!r}) has keys kiln does not understand: {sorted(cfg)}.")
    if warmup is not None and warmup_iters:
        window = dict(begin=0, end=warmup_iters, by_epoch=warmup_by_epoch)
        if warmup == "linear":
            out.append(dict(type=f"Linear{suffix}", start_factor=warmup_ratio, end_factor=1.0, **window))
        elif warmup == "constant":
            out.append(dict(type=f"Constant{suffix}", factor=warmup_ratio, **window))
        elif warmup == "exp":
            out.append(dict(type=f"ExpWarmup{suffix}", start_factor=warmup_ratio, **window))
        else:
            raise ValueError(f"{where} warmup must be 'linear', 'constant' or 'exp', got {warmup!r}.")
    return out
