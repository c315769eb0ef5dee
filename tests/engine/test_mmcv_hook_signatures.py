"""MMCV 1.x hook signatures on kiln's own Runner: after_train_iter(self, runner), generic methods, helpers."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
from engine_toys import MSEEvaluator, ToyRegressor, toy_batches  # noqa: E402

from kiln.engine import Runner  # noqa: E402
from kiln.engine.hooks import Hook, HookError  # noqa: E402

NO_DEFAULTS = {k: None for k in ("timer", "logger", "param_scheduler", "checkpoint", "sampler_seed")}


def _runner(tmp_path, hook, **kw):
    model = ToyRegressor()
    args = dict(
        work_dir=str(tmp_path),
        train_dataloader=toy_batches(3),
        max_epochs=2,
        optim_wrapper=torch.optim.SGD(model.parameters(), lr=0.01),
        default_hooks=NO_DEFAULTS,
        custom_hooks=[hook],
    )
    args.update(kw)
    return Runner(model, **args)


class MMCVStyle(Hook):
    """Every stage in MMCV's signature: only the runner."""

    def __init__(self):
        self.log = []

    def before_train_iter(self, runner):
        self.log.append(("before_train_iter", runner.iter, runner.inner_iter))

    def after_train_iter(self, runner):
        self.log.append(("after_train_iter", runner.iter, runner.inner_iter))

    def after_val_epoch(self, runner):
        self.log.append(("after_val_epoch", runner.epoch))


def test_mmcv_signature_stage_methods_are_called_with_the_runner_only(tmp_path):
    hook = MMCVStyle()
    _runner(tmp_path, hook, val_dataloader=toy_batches(1), val_evaluator=MSEEvaluator()).train()
    iters = [e for e in hook.log if e[0] == "after_train_iter"]
    assert iters == [("after_train_iter", i, i % 3) for i in range(6)]
    assert [e for e in hook.log if e[0] == "before_train_iter"][:3] == [
        ("before_train_iter", 0, 0),
        ("before_train_iter", 1, 1),
        ("before_train_iter", 2, 2),
    ]
    assert [e for e in hook.log if e[0] == "after_val_epoch"] == [
        ("after_val_epoch", 0),
        ("after_val_epoch", 1),
    ]


class Generic(Hook):
    def __init__(self):
        self.log = []

    def before_epoch(self, runner):
        self.log.append("before_epoch")

    def after_epoch(self, runner):
        self.log.append("after_epoch")

    def after_iter(self, runner):
        self.log.append("after_iter")


def test_mmcvs_generic_methods_fan_out_to_train_and_val_stages(tmp_path):
    hook = Generic()
    runner = _runner(
        tmp_path, hook, val_dataloader=toy_batches(2), val_evaluator=MSEEvaluator(), max_epochs=1
    )
    runner.train()
    # one train epoch of 3 iterations, then validation (2 batches) from the eval hook
    assert hook.log == ["before_epoch"] + ["after_iter"] * 3 + ["after_epoch", "before_epoch"] + [
        "after_iter"
    ] * 2 + ["after_epoch"]


class OwnWins(Generic):
    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        self.log.append(("own", batch_idx, sorted(outputs)))


def test_a_stage_the_hook_overrides_itself_wins_over_the_generic_one(tmp_path):
    hook = OwnWins()
    _runner(tmp_path, hook, max_epochs=1).train()
    assert [e for e in hook.log if e != "before_epoch" and e != "after_epoch"] == [
        ("own", i, ["acc_like", "loss", "loss_l1", "loss_mse"]) for i in range(3)
    ]


class Helpers(Hook):
    def __init__(self):
        self.log = []

    def after_train_iter(self, runner):
        self.log.append(
            (
                runner.iter,
                self.every_n_iters(runner, 2),
                self.every_n_inner_iters(runner, 2),
                self.end_of_epoch(runner),
                self.is_last_iter(runner),
            )
        )

    def after_train_epoch(self, runner):
        self.log.append(("epoch", runner.epoch, self.every_n_epochs(runner, 2), self.is_last_epoch(runner)))


def test_mmcv_hook_helpers(tmp_path):
    hook = Helpers()
    _runner(tmp_path, hook).train()
    assert hook.log == [
        (0, False, False, False, False),
        (1, True, True, False, False),
        (2, False, False, True, False),
        ("epoch", 0, False, False),
        (3, True, False, False, False),
        (4, False, True, False, False),
        (5, True, False, True, True),
        ("epoch", 1, True, True),
    ]


class Broken(Hook):
    def after_train_iter(self, runner):
        raise ValueError("boom")


def test_a_failing_mmcv_style_hook_is_named(tmp_path):
    with pytest.raises(HookError, match="Broken failed in after_train_iter: ValueError: boom"):
        _runner(tmp_path, Broken()).train()
