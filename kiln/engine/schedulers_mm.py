"""MMCV ``lr_config`` / ``momentum_config`` built as schedule shapes, and MMCV's ``LinearAnnealing`` shape.

The translation itself is a pure dict->dict function in the MMCV dialect
(:func:`kiln.config.dialects.mmcv_schedules.lr_config_to_param_scheduler`); this module only builds its
result, and registers the one MMCV policy that has no MMEngine counterpart (``LinearAnnealing``: linear
from the base value down to ``min_lr``/``min_lr_ratio`` over training).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kiln.config.dialects.mmcv_schedules import lr_config_to_param_scheduler
from kiln.registry import PARAM_SCHEDULERS

from .schedulers import ParamScheduler, _eta_min, build_param_schedulers

__all__ = ["schedulers_from_lr_config", "LinearAnnealingParamScheduler"]


def schedulers_from_lr_config(lr_config: Mapping | None, param_name: str = "lr") -> list[ParamScheduler]:
    """Build the schedule shapes of an MMCV ``lr_config`` (or ``momentum_config`` with ``'momentum'``).

    Same as ``build_param_schedulers(lr_config_to_param_scheduler(lr_config, param_name))``; see
    :func:`~kiln.config.dialects.mmcv_schedules.lr_config_to_param_scheduler` for the policies.
    """
    cfgs = lr_config_to_param_scheduler(lr_config, param_name)
    return build_param_schedulers(cfgs) if cfgs else []


@PARAM_SCHEDULERS.register_module()
class LinearAnnealingParamScheduler(ParamScheduler):
    """MMCV ``LinearAnnealing``: linear from the base value to ``eta_min`` (or ``base * eta_min_ratio``)."""

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


@PARAM_SCHEDULERS.register_module()
class LinearAnnealingLR(LinearAnnealingParamScheduler):
    """:class:`LinearAnnealingParamScheduler` for ``lr``."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("param_name", "lr")
        super().__init__(**kwargs)


@PARAM_SCHEDULERS.register_module()
class LinearAnnealingMomentum(LinearAnnealingParamScheduler):
    """:class:`LinearAnnealingParamScheduler` for ``momentum``."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("param_name", "momentum")
        super().__init__(**kwargs)
