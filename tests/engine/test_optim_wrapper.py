"""Optimizer building (paramwise options), gradient clipping, accumulation and AMP."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from kiln.engine.optim import (
    AmpOptimWrapper,
    OptimWrapper,
    build_optim_wrapper,
    build_optim_wrapper_from_mm,
    build_optimizer,
)


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.backbone = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4))
        self.dw = nn.Conv2d(4, 4, 3, groups=4)
        self.head = nn.Linear(4, 2)

    def forward(self, x):
        return self.head(self.dw(self.backbone(x)).mean((2, 3)))


def _group_of(opt, param):
    return next(g for g in opt.param_groups if any(p is param for p in g["params"]))


def test_paramwise_cfg_sets_bias_norm_dwconv_and_custom_key_multipliers():
    net = Net()
    opt = build_optimizer(
        net,
        dict(
            type="SGD",
            lr=0.1,
            weight_decay=1e-4,
            momentum=0.9,
            paramwise_cfg=dict(
                bias_lr_mult=2.0,
                bias_decay_mult=0.0,
                norm_decay_mult=0.0,
                dwconv_decay_mult=0.5,
                custom_keys={"head": dict(lr_mult=0.1)},
            ),
        ),
    )
    assert isinstance(opt, torch.optim.SGD)
    conv_b = _group_of(opt, net.backbone[0].bias)
    assert (conv_b["lr"], conv_b["weight_decay"]) == (0.2, 0.0)
    bn_w = _group_of(opt, net.backbone[1].weight)
    assert (bn_w["lr"], bn_w["weight_decay"]) == (0.1, 0.0)
    assert _group_of(opt, net.dw.weight)["weight_decay"] == pytest.approx(0.5e-4)
    head_w = _group_of(opt, net.head.weight)
    assert head_w["lr"] == pytest.approx(0.01) and head_w["weight_decay"] == 1e-4
    assert _group_of(opt, net.head.bias)["lr"] == pytest.approx(0.01)  # custom key wins over bias_lr_mult


def test_building_does_not_copy_the_parameters():
    net = Net()
    opt = build_optimizer(net, dict(type="Adam", lr=1e-3))
    assert {id(p) for g in opt.param_groups for p in g["params"]} == {id(p) for p in net.parameters()}


def test_unknown_paramwise_key_is_reported():
    with pytest.raises(KeyError, match=r"unknown keys \['bias_lr_mul'\]"):
        build_optimizer(Net(), dict(type="SGD", lr=0.1, paramwise_cfg=dict(bias_lr_mul=2.0)))


def test_unknown_optimizer_type_names_the_registry_and_a_close_match():
    with pytest.raises(
        KeyError, match="'Adamw' is not registered in the 'optimizer' registry.*Did you mean: 'Adam'"
    ):
        build_optimizer(Net(), dict(type="Adamw", lr=0.1))


def test_norm_clipping_bounds_the_gradient_and_reports_the_pre_clip_norm():
    net = nn.Linear(3, 1)
    ow = OptimWrapper(torch.optim.SGD(net.parameters(), lr=0.0), clip_grad=dict(max_norm=0.01, norm_type=2))
    loss = (net(torch.full((4, 3), 100.0)) ** 2).mean()
    loss.backward()
    grads = [p.grad.clone() for p in net.parameters()]
    ow.step()
    raw_norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))
    assert float(ow.last_grad_norm) == pytest.approx(float(raw_norm), rel=1e-5)
    clipped = torch.linalg.vector_norm(
        torch.stack([torch.linalg.vector_norm(p.grad) for p in net.parameters()])
    )
    assert float(clipped) == pytest.approx(0.01, rel=1e-3)


def test_value_clipping_caps_each_gradient_entry():
    net = nn.Linear(3, 1)
    ow = OptimWrapper(torch.optim.SGD(net.parameters(), lr=0.0), clip_grad=dict(type="value", clip_value=0.5))
    (net(torch.full((4, 3), 100.0)) ** 2).mean().backward()
    ow.step()
    assert max(float(p.grad.abs().max()) for p in net.parameters()) <= 0.5


def test_accumulating_two_half_batches_equals_one_full_batch_step():
    x, y = torch.randn(8, 3, generator=torch.Generator().manual_seed(0)), torch.randn(8, 1)
    torch.manual_seed(0)
    a = nn.Linear(3, 1)
    b = nn.Linear(3, 1)
    b.load_state_dict(a.state_dict())
    full = OptimWrapper(torch.optim.SGD(a.parameters(), lr=0.1))
    full.update_params(((a(x) - y) ** 2).mean())
    acc = OptimWrapper(torch.optim.SGD(b.parameters(), lr=0.1), accumulative_counts=2)
    initial = b.weight.detach().clone()
    acc.update_params(((b(x[:4]) - y[:4]) ** 2).mean())
    assert torch.equal(b.weight, initial) and b.weight.grad is not None  # accumulated, not stepped
    acc.update_params(((b(x[4:]) - y[4:]) ** 2).mean())
    torch.testing.assert_close(a.weight, b.weight)
    assert b.weight.grad is None  # zeroed after the step


def test_bf16_autocast_trains_on_cpu_without_a_grad_scaler():
    net = nn.Linear(3, 1)
    ow = AmpOptimWrapper(torch.optim.SGD(net.parameters(), lr=0.1), dtype="bfloat16")
    assert ow.scaler is None
    before = net.weight.detach().clone()
    with ow.autocast():
        out = net(torch.randn(4, 3))
    assert out.dtype == torch.bfloat16
    ow.update_params(out.float().pow(2).mean())
    assert not torch.equal(before, net.weight)
    assert ow.last_loss_scale is None  # nothing to log without loss scaling


def test_fp16_on_cpu_gets_a_cpu_grad_scaler_configured_by_loss_scale():
    net = nn.Linear(3, 1)
    dynamic = AmpOptimWrapper(torch.optim.SGD(net.parameters(), lr=0.1), dtype="float16")
    assert dynamic.device_type == "cpu" and dynamic.scaler.get_scale() == 2.0**16
    fixed = AmpOptimWrapper(torch.optim.SGD(net.parameters(), lr=0.1), loss_scale=512)
    assert fixed.scaler.get_scale() == 512.0 and fixed.scaler.get_growth_interval() == 2**31 - 1
    custom = AmpOptimWrapper(
        torch.optim.SGD(net.parameters(), lr=0.1), loss_scale=dict(init_scale=8.0, backoff_factor=0.25)
    )
    assert (custom.scaler.get_scale(), custom.scaler.get_backoff_factor()) == (8.0, 0.25)


def test_bad_loss_scale_values_are_reported_with_the_accepted_forms():
    opt = torch.optim.SGD(nn.Linear(3, 1).parameters(), lr=0.1)
    with pytest.raises(KeyError, match=r"unknown keys \['init'\].*init_scale"):
        AmpOptimWrapper(opt, loss_scale=dict(init=8.0))
    for bad in ("static", 0, -1.0):
        with pytest.raises(ValueError, match=f"'dynamic', a positive number.*got {bad!r}"):
            AmpOptimWrapper(opt, loss_scale=bad)


def test_wrapper_state_round_trips_optimizer_and_accumulation_counter():
    net = nn.Linear(3, 1)
    ow = OptimWrapper(torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9), accumulative_counts=3)
    ow.update_params(net(torch.randn(2, 3)).sum())
    state = ow.state_dict()
    ow2 = OptimWrapper(torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9), accumulative_counts=3)
    ow2.load_state_dict(state)
    assert ow2._inner_count == 1


def test_mm_optimizer_config_grad_clip_and_mmengine_optim_wrapper_build_the_same_thing():
    net = Net()
    mm = build_optim_wrapper_from_mm(
        net,
        dict(type="SGD", lr=0.01, momentum=0.9, weight_decay=1e-4),
        dict(grad_clip=dict(max_norm=35, norm_type=2)),
    )
    me = build_optim_wrapper(
        net,
        dict(
            optimizer=dict(type="SGD", lr=0.01, momentum=0.9, weight_decay=1e-4),
            clip_grad=dict(max_norm=35, norm_type=2),
        ),
    )
    assert mm._clip == me._clip == ("norm", 35.0, 2.0)
    assert type(mm.optimizer) is type(me.optimizer) is torch.optim.SGD


def test_mm_optimizer_config_with_unknown_keys_is_reported():
    with pytest.raises(
        KeyError, match=r"optimizer_config has keys kiln does not understand: \['grad_clipp'\]"
    ):
        build_optim_wrapper_from_mm(Net(), dict(type="SGD", lr=0.01), dict(grad_clipp=None))


def test_a_state_saved_inside_an_accumulation_window_resumes_the_same_step():
    x = torch.randn(6, 3, generator=torch.Generator().manual_seed(1))
    torch.manual_seed(0)
    a = nn.Linear(3, 1)
    b = nn.Linear(3, 1)
    b.load_state_dict(a.state_dict())
    ref = OptimWrapper(torch.optim.SGD(a.parameters(), lr=0.1, momentum=0.9), accumulative_counts=3)
    for i in range(6):
        ref.update_params(a(x[i : i + 1]).pow(2).sum())
    first = OptimWrapper(torch.optim.SGD(b.parameters(), lr=0.1, momentum=0.9), accumulative_counts=3)
    for i in range(4):  # stops inside the second window
        first.update_params(b(x[i : i + 1]).pow(2).sum())
    state = first.state_dict()
    c = nn.Linear(3, 1)
    c.load_state_dict(b.state_dict())
    resumed = OptimWrapper(torch.optim.SGD(c.parameters(), lr=0.1, momentum=0.9), accumulative_counts=3)
    resumed.load_state_dict(state)
    for i in range(4, 6):
        resumed.update_params(c(x[i : i + 1]).pow(2).sum())
    assert torch.equal(c.weight, a.weight) and torch.equal(c.bias, a.bias)
