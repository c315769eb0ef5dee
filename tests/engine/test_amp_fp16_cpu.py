"""float16 mixed precision with dynamic loss scaling (GradScaler) on CPU: real runs, no GPU needed."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
import torch.nn as nn

sys.path.insert(0, str(Path(__file__).parent))
from engine_toys import ToyRegressor, toy_batches  # noqa: E402

from kiln.data import build_train_loader  # noqa: E402
from kiln.engine import Runner  # noqa: E402
from kiln.engine.hooks import CheckpointHook  # noqa: E402
from kiln.engine.optim import AmpOptimWrapper, _fp16_unsupported_reason, build_optim_wrapper  # noqa: E402
from kiln.engine.trainer import AMPTrainer  # noqa: E402


def _regression_data(n=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 4, generator=g)
    return x, x @ torch.randn(4, 1, generator=g)


def _linear_pair(seed=0):
    torch.manual_seed(seed)
    a = nn.Linear(4, 1)
    b = nn.Linear(4, 1)
    b.load_state_dict(a.state_dict())
    return a, b


def _total_norm(params):
    return torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(p.grad) for p in params]))


def test_fp16_autocast_on_cpu_trains_with_fp16_activations_and_fp32_master_weights():
    x, y = _regression_data()
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 1))
    ow = build_optim_wrapper(
        net, dict(type="AmpOptimWrapper", dtype="float16", optimizer=dict(type="SGD", lr=0.05, momentum=0.9))
    )
    assert isinstance(ow, AmpOptimWrapper) and ow.device_type == "cpu"
    assert ow.scaler.get_scale() == 2.0**16
    losses = []
    for _ in range(40):
        with ow.autocast():
            hidden = net[0](x)
            out = net[2](net[1](hidden))
        assert hidden.dtype == out.dtype == torch.float16
        loss = ((out.float() - y) ** 2).mean()
        ow.update_params(loss)
        losses.append(loss.item())
    assert losses[-1] < losses[0] / 20, losses
    assert all(p.dtype == torch.float32 for p in net.parameters())
    assert all(v.dtype == torch.float32 for s in ow.optimizer.state.values() for v in s.values())


def test_the_support_probe_passes_on_this_cpu_and_names_what_fails_on_a_device_without_autocast():
    # The probe behind the construction-time check (an older torch without CPU float16 autocast or
    # CPU GradScaler kernels fails it on 'cpu'); 'meta' is a real device torch cannot autocast on.
    assert _fp16_unsupported_reason("cpu") is None
    reason = _fp16_unsupported_reason("meta")
    assert reason.startswith(f"torch {torch.__version__} cannot run float16 autocast/GradScaler on meta")


def test_backward_sees_scaled_gradients_and_the_optimizer_the_unscaled_ones():
    x, y = _regression_data(16)
    ref, net = _linear_pair()
    ((ref(x) - y) ** 2).mean().backward()
    fp32_grads = [p.grad.clone() for p in ref.parameters()]
    torch.optim.SGD(ref.parameters(), lr=0.1).step()

    ow = AmpOptimWrapper(torch.optim.SGD(net.parameters(), lr=0.1), loss_scale=dict(init_scale=1024.0))
    with ow.autocast():
        out = net(x)
    ow.backward(((out.float() - y) ** 2).mean())
    for p, g in zip(net.parameters(), fp32_grads):  # what backward produced: the loss times 1024
        torch.testing.assert_close(p.grad, 1024 * g, rtol=5e-3, atol=0.0)
    ow.step()
    for p, g in zip(net.parameters(), fp32_grads):  # what the optimizer stepped with: unscaled
        torch.testing.assert_close(p.grad, g, rtol=5e-3, atol=1e-5)
    for p, q in zip(net.parameters(), ref.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-3, atol=1e-4)
    assert ow.scaler.get_scale() == 1024.0  # a good step within the growth interval keeps the scale


def test_an_overflowing_step_is_skipped_the_scale_backs_off_and_training_continues():
    x, y = _regression_data(16)
    _, net = _linear_pair()
    ow = AmpOptimWrapper(
        torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9),
        loss_scale=dict(init_scale=2.0**12, backoff_factor=0.25),
    )
    before = [p.detach().clone() for p in net.parameters()]
    with ow.autocast():
        out = net(x * 1e5)  # beyond float16's range (65504): inf activations, non-finite gradients
    loss = ((out.float() - y) ** 2).mean()
    assert not torch.isfinite(loss)
    ow.update_params(loss)
    assert all(torch.equal(p, b) for p, b in zip(net.parameters(), before))  # step skipped
    assert ow.optimizer.state_dict()["state"] == {}  # the optimizer never ran (no momentum buffer)
    assert ow.scaler.get_scale() == 2.0**10 and ow.last_loss_scale.item() == 2.0**10
    for _ in range(3):
        with ow.autocast():
            out = net(x)
        ow.update_params(((out.float() - y) ** 2).mean())
    assert all(torch.isfinite(p).all() and not torch.equal(p, b) for p, b in zip(net.parameters(), before))
    assert ow.scaler.get_scale() == 2.0**10


class Fp16Regressor(nn.Module):
    """Linear-ReLU-Linear on list-of-dict batches (the runner's model contract); samples with
    ``huge=True`` overflow float16."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 1))

    def forward(self, batch: list) -> dict:
        # 1e3: the loss stays finite but the scaled gradients overflow fp16 (the scaler skips the
        # step); an overflowing forward would make the loss itself inf, which stops training.
        x = torch.stack([s["x"] * (1e3 if s.get("huge") else 1.0) for s in batch])
        y = torch.stack([s["y"] for s in batch])
        return {"loss_mse": ((self.net(x).float() - y) ** 2).mean()}


def test_the_runner_logs_the_loss_scale_and_its_drop_at_an_overflowing_iteration():
    batches = toy_batches(5, seed=2)
    batches[2][0] = {**batches[2][0], "huge": True}
    model = Fp16Regressor()
    runner = Runner(
        model,
        train_dataloader=batches,
        optim_wrapper=dict(
            type="AmpOptimWrapper",
            dtype="float16",
            loss_scale=dict(init_scale=2.0**12),
            optimizer=dict(type="SGD", lr=0.01),
        ),
        max_epochs=1,
        default_hooks={"logger": None, "checkpoint": None},
    )
    runner.train()
    runner.flush_metrics()
    scales = runner.storage.history("grad_scale").values()
    assert scales == [(4096.0, 0), (4096.0, 1), (2048.0, 2), (2048.0, 3), (2048.0, 4)]
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_clipping_in_fp16_bounds_the_unscaled_gradient_and_reports_its_real_norm():
    x = torch.full((4, 4), 3.0)
    ref, net = _linear_pair(1)
    (ref(x) ** 2).mean().backward()
    real_norm = _total_norm(list(ref.parameters()))
    assert real_norm > 0.5  # so that clipping to 0.01 matters

    ow = AmpOptimWrapper(
        torch.optim.SGD(net.parameters(), lr=0.0),
        loss_scale=dict(init_scale=256.0),
        clip_grad=dict(max_norm=0.01, norm_type=2),
    )
    with ow.autocast():
        out = net(x)
    ow.backward((out.float() ** 2).mean())
    ow.step()
    # The norm is taken after unscaling: the real one (256x larger without the unscale), and the
    # gradients the optimizer used are clipped to 0.01 (0.01 / 256 if clipped before unscaling).
    torch.testing.assert_close(ow.last_grad_norm, real_norm, rtol=5e-3, atol=0.0)
    assert _total_norm(list(net.parameters())).item() == pytest.approx(0.01, rel=1e-3)


def test_accumulation_with_the_scaler_steps_and_updates_the_scale_once_per_window():
    x, y = _regression_data(8)
    ref, net = _linear_pair(2)
    ((ref(x) - y) ** 2).mean().backward()
    torch.optim.SGD(ref.parameters(), lr=0.1).step()

    ow = AmpOptimWrapper(
        torch.optim.SGD(net.parameters(), lr=0.1),
        accumulative_counts=2,
        loss_scale=dict(init_scale=256.0, growth_interval=2),
    )
    initial = [p.detach().clone() for p in net.parameters()]

    def call(xb, yb):
        with ow.autocast():
            out = net(xb)
        ow.update_params(((out.float() - yb) ** 2).mean())

    call(x[:4], y[:4])
    assert all(torch.equal(p, b) and p.grad is not None for p, b in zip(net.parameters(), initial))
    assert ow.scaler.get_scale() == 256.0 and ow.last_loss_scale is None  # no update yet
    call(x[4:], y[4:])
    for p, q in zip(net.parameters(), ref.parameters()):  # the two halves make one full-batch step
        torch.testing.assert_close(p, q, rtol=1e-3, atol=1e-4)
    assert all(p.grad is None for p in net.parameters())
    assert ow.scaler.get_scale() == 256.0 and ow.scaler.state_dict()["_growth_tracker"] == 1
    call(x[:4], y[:4])  # a third call: inside the window, no update (growing now would double it)
    assert ow.scaler.get_scale() == 256.0
    call(x[4:], y[4:])  # the second good update completes the growth interval
    assert ow.scaler.get_scale() == 512.0 and ow.scaler.state_dict()["_growth_tracker"] == 0


def _resume_runner(work_dir, max_iters, resume):
    g = torch.Generator().manual_seed(5)
    data = [{"x": torch.randn(4, generator=g), "y": torch.randn(1, generator=g)} for _ in range(24)]
    data[7]["huge"] = True  # one overflowing sample per epoch (6 iterations): the scale backs off
    loader = build_train_loader(data, total_batch_size=4, num_workers=0, seed=3, infinite=True)
    torch.manual_seed(0)
    return Runner(
        Fp16Regressor(),
        work_dir=str(work_dir),
        train_dataloader=loader,
        optim_wrapper=dict(
            type="AmpOptimWrapper",
            dtype="float16",
            accumulative_counts=2,
            loss_scale=dict(init_scale=2.0**10, growth_interval=2),
            optimizer=dict(type="SGD", lr=0.05, momentum=0.9),
        ),
        max_iters=max_iters,
        resume=resume,
        seed=3,
        default_hooks={"logger": None, "checkpoint": CheckpointHook(interval=1, by_epoch=False)},
    )


def test_a_stopped_and_resumed_fp16_run_ends_bit_identical_with_the_same_scaler_state(tmp_path):
    ref = _resume_runner(tmp_path / "ref", 14, False)
    ref_scales = []
    ref.register_callback(
        lambda r, *a: ref_scales.append(r.optim_wrapper.scaler.get_scale()), "after_train_iter"
    )
    ref.train()
    # The run both backed off (overflows) and grew the scale (growth_interval good updates).
    assert min(ref_scales) < 2.0**10 and any(b > a for a, b in zip(ref_scales, ref_scales[1:]))

    first = _resume_runner(tmp_path / "run", 14, False)
    # Stop after iteration 7: inside an accumulation window (pending scaled gradients saved).
    first.register_callback(lambda r, *a: r.iter + 1 == 7 and r.request_stop(), "after_train_iter")
    first.train()
    assert first.iter == 7 and first.optim_wrapper._inner_count % 2 == 1
    resumed = _resume_runner(tmp_path / "run", 14, True)
    resumed.train()
    assert resumed.iter == 14

    ref_state, res_state = ref.optim_wrapper.state_dict(), resumed.optim_wrapper.state_dict()
    assert ref_state["loss_scaler"] == res_state["loss_scaler"]
    for (k, a), b in zip(ref.model.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.equal(a, b), k
    for pid, st in ref_state["optimizer"]["state"].items():
        assert torch.equal(st["momentum_buffer"], res_state["optimizer"]["state"][pid]["momentum_buffer"])


def _infinite(batches):
    while True:
        yield from batches


def test_amp_trainer_fp16_on_cpu_trains_logs_the_scale_and_checkpoints_the_scaler(tmp_path):
    batches = toy_batches(6, seed=1)
    batches[1][0] = {**batches[1][0], "y": batches[1][0]["y"] * 1e5}  # gradients overflow float16
    model = ToyRegressor()
    before = model.fc.weight.detach().clone()
    trainer = AMPTrainer(
        model,
        _infinite(batches),
        torch.optim.SGD(model.parameters(), lr=0.05),
        grad_scaler=torch.amp.GradScaler("cpu", init_scale=2.0**10),
        log_grad_scaler=True,
    )
    trainer.output_dir = str(tmp_path)
    trainer.register_hooks([CheckpointHook(interval=6, by_epoch=False)])
    trainer.train(0, 6)
    trainer.runner.flush_metrics()
    assert not torch.equal(before, model.fc.weight) and torch.isfinite(model.fc.weight).all()
    # The scale each step's loss was multiplied by: halved after the overflow at iteration 1.
    scales = [v for v, _ in trainer.storage.history("[metric]grad_scaler").values()]
    assert scales == [2.0**10, 2.0**10, 2.0**9, 2.0**9, 2.0**9, 2.0**9]
    assert len(trainer.storage.history("total_loss")) == 6

    saved = torch.load(tmp_path / "iter_6.pth", weights_only=True)
    # The trainer's scaler is the runner's optimizer wrapper's: saved with the optimizer.
    assert saved["optimizer"]["loss_scaler"] == trainer.grad_scaler.state_dict()
    assert saved["optimizer"]["loss_scaler"]["scale"] == 2.0**9
    fresh = ToyRegressor()
    again = AMPTrainer(fresh, [], torch.optim.SGD(fresh.parameters(), lr=0.05))
    again.output_dir = str(tmp_path)
    again._get_runner().checkpointer.load(str(tmp_path / "iter_6.pth"))
    assert again.grad_scaler.get_scale() == 2.0**9
