"""MMEngine / MMDetection 3.x runtime keys outside the run schema proper -> canonical keys.

What each becomes (every value is honoured or refused; none is dropped unread):

=================================  =========================================================================
key                                canonical effect
=================================  =========================================================================
``default_scope``                  checked: ``'mmdet'``/``'mmengine'``/``'kiln'``/``None`` name kiln's one
                                   registry tree (MMDetection's type names); another scope (``'mmyolo'``...)
                                   is refused, its modules are not kiln's
``log_processor``                  ``window_size`` -> ``default_hooks.logger.window`` (the smoothing
                                   window); ``by_epoch`` must match the train loop; ``num_digits``,
                                   ``custom_cfg``, ``log_with_hierarchy`` at their defaults only
``opencv_num_threads`` /           (MMDetection 2.x) ``env_cfg.mp_cfg``
``mp_start_method``
``visualizer``                     canonical (built by the runner builder into ``runner.visualizer``)
``auto_scale_lr``                  canonical (the builder scales ``optim_wrapper.optimizer.lr``)
``tta_model`` / ``tta_pipeline``   canonical (``kiln test --tta`` uses them; without it, as in
                                   MMDetection, they are not used)
=================================  =========================================================================
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["RUNTIME_KEYS", "runtime_to_canonical"]

#: top-level keys this translator reads
RUNTIME_KEYS = frozenset({"default_scope", "log_processor", "opencv_num_threads", "mp_start_method"})

_SCOPES = (None, "mmdet", "mmengine", "kiln")
_LOG_PROCESSOR_DEFAULTS = {"num_digits": 4, "custom_cfg": None, "log_with_hierarchy": False}


def _default_scope(scope: Any) -> None:
    if scope not in _SCOPES:
        raise ValueError(
            f"default_scope={scope!r}: kiln implements MMDetection's and MMEngine's modules under their "
            f"type names (scopes 'mmdet' and 'mmengine'); modules of {scope!r} are not part of kiln. Use "
            f"default_scope='mmdet', or register the modules you need with kiln's registries "
            f"(custom_imports=dict(imports=[...]))."
        )


def _log_processor(lp: Mapping[str, Any], out: dict[str, Any]) -> None:
    lp = dict(lp)
    kind = lp.pop("type", "LogProcessor")
    if kind != "LogProcessor":
        raise ValueError(f"log_processor.type={kind!r}: kiln's logger implements MMEngine's LogProcessor "
                         f"only.")
    window = lp.pop("window_size", 10)
    by_epoch = lp.pop("by_epoch", True)
    lp.pop("mean_pattern", None)  # which keys are averaged: kiln averages every logged scalar
    for key, default in _LOG_PROCESSOR_DEFAULTS.items():
        if key in lp and lp.pop(key) != default:
            raise ValueError(f"log_processor.{key}: kiln's console and JSON writers do not implement it; "
                             f"remove the key (default {default!r}).")
    if lp:
        raise KeyError(f"log_processor has keys kiln does not understand: {sorted(lp)}; it reads "
                       f"window_size, by_epoch.")
    if not isinstance(window, int) or window < 1:
        raise ValueError(f"log_processor.window_size={window!r}: kiln smooths over a fixed number of "
                         f"iterations; give an int >= 1 ('global' averages are not implemented).")
    train_cfg = out.get("train_cfg") or {}
    if train_cfg:
        iter_based = "Iter" in str(train_cfg.get("type", "")) or train_cfg.get("by_epoch") is False or (
            "max_iters" in train_cfg and "max_epochs" not in train_cfg)
        if bool(by_epoch) == iter_based:
            loop = "iteration" if iter_based else "epoch"
            raise ValueError(
                f"log_processor.by_epoch={by_epoch!r} but the train loop is {loop}-based; kiln's log lines "
                f"count what the loop counts. Set log_processor=dict(by_epoch={not iter_based}).")
    hooks = dict(out.get("default_hooks") or {})
    logger = hooks.get("logger")
    if logger is None and "logger" in hooks:
        return  # no logger hook: nothing to configure
    logger = dict(logger or {"type": "LoggerHook"})
    logger.setdefault("window", window)
    hooks["logger"] = logger
    out["default_hooks"] = hooks


def _mp(cfg: Mapping[str, Any], out: dict[str, Any]) -> None:
    mp = {k: cfg[k] for k in ("opencv_num_threads", "mp_start_method") if cfg.get(k) is not None}
    if not mp:
        return
    env = dict(out.get("env_cfg") or {})
    mp_cfg = dict(env.get("mp_cfg") or {})
    for key, value in mp.items():
        if key in mp_cfg and mp_cfg[key] != value:
            raise ValueError(f"{key}={value!r} and env_cfg.mp_cfg.{key}={mp_cfg[key]!r} disagree; keep one.")
        mp_cfg[key] = value
    env["mp_cfg"] = mp_cfg
    out["env_cfg"] = env


def runtime_to_canonical(cfg: Mapping[str, Any], out: dict[str, Any]) -> None:
    """Apply the keys of :data:`RUNTIME_KEYS` in ``cfg`` (the config as written) to ``out`` (canonical)."""
    _default_scope(cfg.get("default_scope"))
    lp = cfg.get("log_processor")
    if lp is not None:
        if not isinstance(lp, Mapping):
            raise TypeError(f"log_processor must be a dict, e.g. dict(window_size=50); got {lp!r}.")
        _log_processor(lp, out)
    _mp(cfg, out)
