"""Param schedules: closed-form shapes vs torch's schedulers, MMCV lr_config, resume, momentum."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from kiln.engine.schedulers import (
    CosineAnnealingParamScheduler,
    ScheduleSet,
    build_param_schedulers,
)
from kiln.engine.schedulers_mm import schedulers_from_lr_config


def _opt(lr=0.1, kind="SGD"):
    params = [nn.Parameter(torch.zeros(1))]
    if kind == "Adam":
        return torch.optim.Adam(params, lr=lr)
    return torch.optim.SGD(params, lr=lr, momentum=0.9)


def _lrs(sset, n):
    out = []
    for i in range(n):
        sset.apply(i)
        out.append(sset.optimizer.param_groups[0]["lr"])
    return out


def _torch_lrs(make_sched, n, lr=0.1):
    opt = _opt(lr)
    sched = make_sched(opt)
    out = []
    for _ in range(n):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return out


def test_seed_lr_config_step_with_linear_warmup_works_as_written():
    lr_config = dict(policy="step", warmup="linear", warmup_iters=500, warmup_ratio=1.0 / 3, step=[8, 11])
    opt = _opt(0.01)
    sset = ScheduleSet(opt, schedulers_from_lr_config(lr_config), epoch_length=100, max_iters=1200)
    v = sset.values_at
    assert v(0)["lr"][0] == pytest.approx(0.01 / 3)  # warmup starts at ratio
    assert v(250)["lr"][0] == pytest.approx(0.01 * (1 - (1 - 250 / 500) * (1 - 1 / 3)))  # MMCV formula
    assert v(500)["lr"][0] == pytest.approx(0.01)
    assert v(799)["lr"][0] == pytest.approx(0.01) and v(800)["lr"][0] == pytest.approx(0.001)  # epoch 8
    assert v(1100)["lr"][0] == pytest.approx(0.0001)  # epoch 11


@pytest.mark.parametrize(
    "cfg, make_torch",
    [
        (
            dict(type="MultiStepLR", milestones=[3, 7], gamma=0.5, by_epoch=False),
            lambda o: torch.optim.lr_scheduler.MultiStepLR(o, [3, 7], 0.5),
        ),
        (
            dict(type="StepLR", step_size=4, gamma=0.3, by_epoch=False),
            lambda o: torch.optim.lr_scheduler.StepLR(o, 4, 0.3),
        ),
        (
            dict(type="ExponentialLR", gamma=0.9, by_epoch=False),
            lambda o: torch.optim.lr_scheduler.ExponentialLR(o, 0.9),
        ),
        (
            dict(type="CosineAnnealingLR", T_max=12, eta_min=0.01, by_epoch=False, end=12),
            lambda o: torch.optim.lr_scheduler.CosineAnnealingLR(o, 12, 0.01),
        ),
        (
            dict(type="PolyLR", power=2.0, eta_min=0.0, by_epoch=False, end=12),
            lambda o: torch.optim.lr_scheduler.PolynomialLR(o, 12, 2.0),
        ),
        (
            dict(type="LinearLR", start_factor=0.25, end_factor=1.0, by_epoch=False, end=5),
            lambda o: torch.optim.lr_scheduler.LinearLR(o, 0.25, 1.0, 5),
        ),
        (
            dict(type="ConstantLR", factor=0.5, by_epoch=False, end=4),
            lambda o: torch.optim.lr_scheduler.ConstantLR(o, 0.5, 4),
        ),
        (
            dict(type="OneCycleLR", max_lr=0.1, by_epoch=False, total_steps=12),
            lambda o: torch.optim.lr_scheduler.OneCycleLR(o, 0.1, total_steps=12),
        ),
    ],
)
def test_shapes_match_torch_schedulers(cfg, make_torch):
    sset = ScheduleSet(_opt(), build_param_schedulers(cfg), max_iters=12)
    assert _lrs(sset, 12) == pytest.approx(_torch_lrs(make_torch, 12), rel=1e-6, abs=1e-9)


def test_cosine_restart_restarts_at_each_period_with_its_weight():
    sset = ScheduleSet(
        _opt(),
        build_param_schedulers(
            dict(
                type="CosineRestartLR",
                periods=[4, 4],
                restart_weights=[1.0, 0.5],
                eta_min=0.0,
                by_epoch=False,
            )
        ),
    )
    lrs = _lrs(sset, 8)
    assert (
        lrs[0] == pytest.approx(0.1) and lrs[4] == pytest.approx(0.05) and lrs[3] < lrs[0] and lrs[7] < lrs[4]
    )


def test_by_epoch_schedule_moves_at_epoch_boundaries_or_every_iteration_when_converted():
    stepwise = ScheduleSet(_opt(), [CosineAnnealingParamScheduler(by_epoch=True, end=2)], epoch_length=4)
    lrs = _lrs(stepwise, 8)
    assert lrs[0] == lrs[3] and lrs[4] == lrs[7] and lrs[4] < lrs[0]
    smooth = ScheduleSet(
        _opt(),
        [CosineAnnealingParamScheduler(by_epoch=True, end=2, convert_to_iter_based=True)],
        epoch_length=4,
    )
    lrs = _lrs(smooth, 8)
    assert all(a > b for a, b in zip(lrs, lrs[1:]))


def test_momentum_schedule_sets_adam_beta1():
    opt = _opt(kind="Adam")
    sset = ScheduleSet(
        opt, build_param_schedulers(dict(type="LinearMomentum", start_factor=0.5, by_epoch=False, end=10))
    )
    sset.apply(0)
    assert opt.param_groups[0]["betas"][0] == pytest.approx(0.45)
    sset.apply(10)
    assert opt.param_groups[0]["betas"][0] == pytest.approx(0.9)


def test_values_are_a_function_of_the_iteration_so_a_restored_set_continues_exactly():
    cfgs = [
        dict(type="LinearLR", start_factor=0.1, by_epoch=False, end=5),
        dict(type="MultiStepLR", milestones=[2], by_epoch=True),
    ]
    a = ScheduleSet(_opt(), build_param_schedulers(cfgs), epoch_length=3)
    full = _lrs(a, 9)
    opt_b = _opt()
    b = ScheduleSet(opt_b, build_param_schedulers(cfgs), epoch_length=3)
    b.apply(4)
    state = (b.state_dict(), opt_b.state_dict())
    opt_c = _opt(lr=123.0)  # a fresh optimizer with a different lr: the base comes from the state
    opt_c.load_state_dict(state[1])
    c = ScheduleSet(opt_c, build_param_schedulers(cfgs), epoch_length=3)
    c.load_state_dict(state[0])
    assert [(c.apply(i), opt_c.param_groups[0]["lr"])[1] for i in range(5, 9)] == pytest.approx(full[5:9])


def test_unknown_lr_policy_lists_the_supported_ones():
    with pytest.raises(ValueError, match="policy 'cyclicc' is not supported; use one of: step"):
        schedulers_from_lr_config(dict(policy="cyclicc"))


def test_lr_config_with_a_misspelt_key_is_reported():
    with pytest.raises(KeyError, match=r"keys kiln does not understand: \['gama'\]"):
        schedulers_from_lr_config(dict(policy="step", step=[3], gama=0.5))


def test_by_epoch_schedules_need_an_epoch_length():
    with pytest.raises(ValueError, match="infinite loader"):
        ScheduleSet(_opt(), build_param_schedulers(dict(type="MultiStepLR", milestones=[1])))


def test_mmcv_cyclic_lr_policy_rises_to_the_peak_then_anneals_to_the_floor():
    sset = ScheduleSet(_opt(0.01), schedulers_from_lr_config(dict(policy="cyclic")), max_iters=100)
    v = lambda it: sset.values_at(it)["lr"][0] / 0.01  # noqa: E731
    # defaults: target_ratio (10, 1e-4), one cycle, 40% of it going up, cosine
    assert v(0) == pytest.approx(1.0)
    assert v(20) == pytest.approx((1 + 10) / 2)  # halfway up a cosine
    assert v(40) == pytest.approx(10.0)
    assert v(70) == pytest.approx((10 + 1e-4) / 2)  # halfway down
    assert v(99) < 0.01


def test_cyclic_with_gamma_shrinks_each_later_cycle():
    cfg = dict(policy="cyclic", target_ratio=(10, 1), cyclic_times=2, step_ratio_up=0.4, gamma=0.5,
               anneal_strategy="linear")
    sset = ScheduleSet(_opt(1.0), schedulers_from_lr_config(cfg), max_iters=100)
    v = lambda it: sset.values_at(it)["lr"][0]  # noqa: E731
    assert v(20) == pytest.approx(10.0)  # first peak (cycle of 50, 20 up)
    assert v(10) == pytest.approx(5.5)  # linear halfway up
    assert v(70) == pytest.approx(1 - 0.5 + 10 * 0.5)  # second peak: excursion halved


def test_mmcv_cyclic_momentum_policy_dips_while_the_lr_peaks():
    cfg = dict(policy="cyclic", target_ratio=(0.85 / 0.95, 1), cyclic_times=1, step_ratio_up=0.4)
    opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=0.1, momentum=0.95)
    sset = ScheduleSet(opt, schedulers_from_lr_config(cfg, "momentum"), max_iters=100)
    assert sset.values_at(0)["momentum"][0] == pytest.approx(0.95)
    assert sset.values_at(40)["momentum"][0] == pytest.approx(0.85)
    assert sset.values_at(99)["momentum"][0] == pytest.approx(0.95, abs=1e-3)
    # the MMCV momentum defaults are the momentum hook's, not the lr hook's
    default = ScheduleSet(opt, schedulers_from_lr_config(dict(policy="cyclic"), "momentum"), max_iters=100)
    assert default.values_at(40)["momentum"][0] == pytest.approx(0.85)


def test_cyclic_counts_iterations_and_says_so():
    with pytest.raises(ValueError, match="Cyclic schedules count iterations; set by_epoch=False"):
        schedulers_from_lr_config(dict(policy="cyclic", by_epoch=True))


def test_mmcv_flat_cosine_annealing_stays_flat_then_anneals_by_epoch():
    cfg = dict(policy="FlatCosineAnnealing", start_percent=0.75, min_lr=0.0)
    sset = ScheduleSet(_opt(1.0), schedulers_from_lr_config(cfg), epoch_length=10, max_iters=120)
    v = lambda epoch: sset.values_at(epoch * 10 + 3)["lr"][0]  # noqa: E731
    assert [v(e) for e in range(10)] == pytest.approx([1.0] * 10)  # flat until round(12 * 0.75) = 9
    assert v(10) == pytest.approx(0.75) and v(11) == pytest.approx(0.25)  # cosine over epochs 9..12
