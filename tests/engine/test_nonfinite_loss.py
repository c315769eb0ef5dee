"""NaN/Inf losses: stop by default (naming iteration, epoch and terms, before a NaN checkpoint), or skip."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
from engine_toys import ToyRegressor, toy_batches  # noqa: E402

from kiln.engine import Runner  # noqa: E402
from kiln.engine.optim import OptimWrapper, build_optim_wrapper_from_mm  # noqa: E402
from kiln.engine.trainer import HookBase, SimpleTrainer  # noqa: E402


class PoisonedRegressor(ToyRegressor):
    """``loss_l1`` is NaN on batches whose first sample has ``bad`` set (data decides, so resumes agree)."""

    def forward(self, batch):
        out = super().forward(batch)
        if self.training and batch[0].get("bad"):
            out["loss_l1"] = out["loss_l1"] * float("nan")
        return out


def _batches(bad=(), n=4, seed=0):
    batches = toy_batches(n, seed=seed)
    for i in bad:
        batches[i] = [dict(s, bad=True) for s in batches[i]]
    return batches


def _runner(tmp_path, batches, max_epochs=3, ow=None, model=None, **kw):
    torch.manual_seed(0)
    model = model or PoisonedRegressor()
    ow = dict(optimizer=dict(type="SGD", lr=0.05, momentum=0.9), **(ow or {}))
    return Runner(model, work_dir=str(tmp_path), train_dataloader=batches, max_epochs=max_epochs,
                  optim_wrapper=ow, **kw)


def _jsonl(path):
    with open(path) as f:
        return [json.loads(line) for line in f]


def test_nan_loss_stops_training_naming_iteration_epoch_and_terms_before_a_checkpoint(tmp_path):
    r = _runner(tmp_path, _SecondEpochPoison(_batches()), max_epochs=3)
    with pytest.raises(FloatingPointError) as info:
        r.train()
    msg = str(info.value)
    # Iteration 6 of the run (1-based; batch 2 of epoch 2), as the console line counts.
    assert msg.startswith("loss became non-finite at iteration 6 (epoch 2): ")
    assert "loss_mse=" in msg and "loss_l1=nan" in msg and "non-finite: loss_l1, loss" in msg
    assert "nonfinite_loss='skip'" in msg and "clip_grad" in msg
    # epoch_1.pth was written; the save after epoch 2 flushed first and stopped the run.
    assert os.path.exists(tmp_path / "epoch_1.pth") and not os.path.exists(tmp_path / "epoch_2.pth")
    ckpt = torch.load(tmp_path / "epoch_1.pth", weights_only=True)
    assert all(torch.isfinite(v).all() for v in ckpt["model"].values() if v.is_floating_point())


class _SecondEpochPoison:
    """A loader whose batch 1 is poisoned from the second pass on (plain iterable with a length)."""

    def __init__(self, batches):
        self.batches = batches
        self.passes = 0

    def __len__(self):
        return len(self.batches)

    def __iter__(self):
        self.passes += 1
        for i, b in enumerate(self.batches):
            yield [dict(s, bad=True) for s in b] if (self.passes >= 2 and i == 1) else b


def test_without_logger_or_checkpoints_the_end_of_training_still_raises(tmp_path):
    r = _runner(tmp_path, _batches(bad=[3]), max_epochs=1, default_hooks=dict(logger=None, checkpoint=None))
    with pytest.raises(FloatingPointError, match=r"at iteration 4 \(epoch 1\): .*loss_l1=nan"):
        r.train()


def test_inf_loss_counts_as_non_finite_too(tmp_path):
    class InfRegressor(ToyRegressor):
        def forward(self, batch):
            out = super().forward(batch)
            if self.training:
                out["loss_mse"] = out["loss_mse"] + float("inf")
            return out

    r = _runner(tmp_path, _batches(), max_epochs=1, model=InfRegressor())
    with pytest.raises(FloatingPointError, match=r"at iteration 1 \(epoch 1\): loss_mse=inf"):
        r.train()


def test_skip_mode_drops_the_update_logs_the_count_and_keeps_losses_finite(tmp_path):
    r = _runner(tmp_path, _batches(bad=[1]), max_epochs=2, ow=dict(nonfinite_loss="skip"),
                default_hooks=dict(logger=dict(type="LoggerHook", interval=1)))
    weights = []
    r.register_callback(lambda runner, *a: weights.append(runner.unwrapped_model.fc.weight.detach().clone()),
                        "after_train_iter")
    r.train()
    # Iterations 1 and 5 (batch 1 of each epoch) were skipped: the weights did not move there.
    assert torch.equal(weights[1], weights[0]) and torch.equal(weights[5], weights[4])
    assert not torch.equal(weights[2], weights[1])
    assert all(torch.isfinite(p).all() for p in r.unwrapped_model.parameters())
    rows = {row["iteration"]: row for row in _jsonl(tmp_path / "metrics.jsonl")}
    assert [rows[i]["nonfinite_steps"] for i in range(8)] == [0, 1, 1, 1, 1, 2, 2, 2]
    # The skipped steps' NaN losses are not logged (they would poison the smoothed values).
    assert "loss_l1" not in rows[1] and "loss_l1" in rows[2]
    assert all(v == v for row in rows.values() for k, v in row.items() if "loss" in k)
    ckpt = torch.load(tmp_path / "epoch_2.pth", weights_only=True)
    assert ckpt["optimizer"]["nonfinite_steps"] == 2


def test_skip_mode_resume_is_exact_and_continues_the_count(tmp_path):
    full = _runner(tmp_path / "full", _batches(bad=[1, 2]), max_epochs=3, ow=dict(nonfinite_loss="skip"))
    full.train()
    first = _runner(tmp_path / "part", _batches(bad=[1, 2]), max_epochs=1, ow=dict(nonfinite_loss="skip"))
    first.train()
    resumed = _runner(tmp_path / "part", _batches(bad=[1, 2]), max_epochs=3, ow=dict(nonfinite_loss="skip"),
                      resume=True)
    resumed.train()
    assert resumed.optim_wrapper.nonfinite_steps == full.optim_wrapper.nonfinite_steps == 6
    full_state, resumed_state = full.unwrapped_model.state_dict(), resumed.unwrapped_model.state_dict()
    for a, b in zip(full_state.values(), resumed_state.values()):
        assert torch.equal(a, b)


def test_skip_mode_with_accumulation_drops_the_whole_window():
    torch.manual_seed(0)
    model = ToyRegressor()
    sgd = torch.optim.SGD(model.parameters(), lr=0.1)
    ow = OptimWrapper(sgd, accumulative_counts=2, nonfinite_loss="skip")
    before = model.fc.weight.detach().clone()
    good = ((model.fc.weight ** 2).sum() + model.fc.bias.sum())
    ow.update_params(torch.tensor(float("nan"), requires_grad=True))  # first half of the window: NaN
    ow.update_params(good)  # second half: finite, but the window is dropped
    assert torch.equal(model.fc.weight, before) and model.fc.weight.grad is None
    assert ow.nonfinite_steps == 1
    ow.update_params((model.fc.weight ** 2).sum())
    ow.update_params((model.fc.weight ** 2).sum())
    assert not torch.equal(model.fc.weight, before)  # the next full window updates again


def test_detectron2_simple_trainer_stops_on_nan_by_default():
    model = PoisonedRegressor()
    batches = _batches(bad=[2])

    def stream():
        while True:
            yield from batches

    trainer = SimpleTrainer(model, stream(), torch.optim.SGD(model.parameters(), lr=0.01))
    with pytest.raises(FloatingPointError, match=r"at iteration 3: .*total_loss=nan"):
        trainer.train(0, 6)


def test_policy_is_validated_and_mmcv_optimizer_config_spelling_is_accepted():
    model = ToyRegressor()
    with pytest.raises(ValueError, match=r"nonfinite_loss must be one of \['raise', 'skip'\], got 'ignore'"):
        OptimWrapper(torch.optim.SGD(model.parameters(), lr=0.1), nonfinite_loss="ignore")
    mm_cfg = dict(grad_clip=None, nonfinite_loss="skip")
    ow = build_optim_wrapper_from_mm(model, dict(type="SGD", lr=0.1), mm_cfg)
    assert ow.nonfinite_loss == "skip"


def test_detectron2_simple_trainer_honours_skip_mode_through_the_one_train_step():
    # SimpleTrainer.run_step runs the Runner's train step, so the wrapper's skip mode applies there too.
    model = PoisonedRegressor()
    batches = _batches(bad=[2])

    def stream():
        while True:
            yield from batches

    ow = OptimWrapper(torch.optim.SGD(model.parameters(), lr=0.01), nonfinite_loss="skip")
    trainer = SimpleTrainer(model, stream(), ow)
    weights = []

    class Record(HookBase):
        def after_step(self):
            weights.append(model.fc.weight.detach().clone())

    trainer.register_hooks([Record()])
    trainer.train(0, 6)
    # Iteration 2 (the poisoned batch, 0-based) was skipped: the weights did not move there.
    assert torch.equal(weights[2], weights[1]) and not torch.equal(weights[3], weights[2])
    assert all(torch.isfinite(p).all() for p in model.parameters())
    assert ow.nonfinite_steps == 1  # 6 iterations over the 4-batch stream meet the poisoned batch once
