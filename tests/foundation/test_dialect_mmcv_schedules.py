"""MMCV lr_config/momentum_config policies -> param_scheduler dicts (pure), and that they build."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from kiln.config.dialects.mmcv_schedules import lr_config_to_param_scheduler
from kiln.engine.schedulers import ScheduleSet, build_param_schedulers


def _values(cfgs, its, lr=1.0, epoch_length=10, max_iters=120):
    opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=lr, momentum=0.9)
    sset = ScheduleSet(opt, build_param_schedulers(cfgs), epoch_length=epoch_length, max_iters=max_iters)
    return [sset.values_at(i)["lr"][0] for i in its]


def test_step_with_linear_warmup_is_multistep_plus_a_warmup_window():
    cfgs = lr_config_to_param_scheduler(dict(policy="step", warmup="linear", warmup_iters=500,
                                             warmup_ratio=1.0 / 3, step=[8, 11]))
    assert cfgs == [
        dict(type="MultiStepLR", milestones=[8, 11], gamma=0.1, by_epoch=True),
        dict(type="LinearLR", start_factor=1.0 / 3, end_factor=1.0, begin=0, end=500, by_epoch=False),
    ]


@pytest.mark.parametrize("lr_config, expected", [
    (dict(policy="step", step=3, gamma=0.5), "StepLR"),
    (dict(policy="exp", gamma=0.9), "ExponentialLR"),
    (dict(policy="poly", power=2.0, min_lr=1e-4), "PolyLR"),
    (dict(policy="CosineAnnealing", min_lr_ratio=0.01), "CosineAnnealingLR"),
    (dict(policy="CosineRestart", periods=[5, 7], restart_weights=[1, 0.5], min_lr=0), "CosineRestartLR"),
    (dict(policy="OneCycle", max_lr=0.1), "OneCycleLR"),
    (dict(policy="LinearAnnealing", min_lr=0.0), "LinearAnnealingLR"),
    (dict(policy="FlatCosineAnnealing", start_percent=0.5, min_lr=0.0), "FlatCosineAnnealingLR"),
    (dict(policy="Cyclic"), "CyclicLR"),
])
def test_every_supported_policy_names_a_registered_shape_that_builds(lr_config, expected):
    cfgs = lr_config_to_param_scheduler(lr_config)
    assert [c["type"] for c in cfgs] == [expected]
    assert len(build_param_schedulers(cfgs)) == 1


def test_linear_annealing_goes_linearly_to_min_lr_over_training():
    cfgs = lr_config_to_param_scheduler(dict(policy="LinearAnnealing", min_lr=0.2, by_epoch=False))
    assert _values(cfgs, [0, 60, 120], max_iters=120) == pytest.approx([1.0, 0.6, 0.2])


def test_momentum_config_targets_momentum_shapes():
    cfgs = lr_config_to_param_scheduler(dict(policy="CosineAnnealing", min_lr_ratio=0.5), "momentum")
    assert cfgs == [dict(type="CosineAnnealingMomentum", eta_min=None, eta_min_ratio=0.5, by_epoch=True)]


def test_constant_and_exp_warmups():
    const = lr_config_to_param_scheduler(dict(policy="fixed", warmup="constant", warmup_iters=5,
                                              warmup_ratio=0.1))
    assert const == [dict(type="ConstantLR", factor=0.1, begin=0, end=5, by_epoch=False)]
    assert _values(const, [0, 4, 5]) == pytest.approx([0.1, 0.1, 1.0])
    exp = lr_config_to_param_scheduler(dict(policy="fixed", warmup="exp", warmup_iters=5, warmup_ratio=0.1,
                                            warmup_by_epoch=True))
    assert exp == [dict(type="ExpWarmupLR", start_factor=0.1, begin=0, end=5, by_epoch=True)]


def test_errors_name_the_policy_or_key():
    with pytest.raises(ValueError, match="policy 'Cosine' is not supported.*Did you mean"):
        lr_config_to_param_scheduler(dict(policy="Cosine"))
    with pytest.raises(ValueError, match="'inv' is not supported; use 'poly'"):
        lr_config_to_param_scheduler(dict(policy="inv"))
    with pytest.raises(KeyError, match=r"momentum_config \(policy='step'\) has keys .*\['gama'\]"):
        lr_config_to_param_scheduler(dict(policy="step", step=[1], gama=0.1), "momentum")
    with pytest.raises(KeyError, match="policy 'step' needs step"):
        lr_config_to_param_scheduler(dict(policy="step"))
    with pytest.raises(ValueError, match="warmup must be 'linear', 'constant' or 'exp'"):
        lr_config_to_param_scheduler(dict(policy="fixed", warmup="cosine", warmup_iters=3))


def test_empty_config_means_no_schedule():
    assert lr_config_to_param_scheduler(None) == [] and lr_config_to_param_scheduler({}) == []
