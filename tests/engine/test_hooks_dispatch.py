"""Hook priorities, per-stage dispatch, callbacks, Detectron2 hooks, and error reporting."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
from engine_toys import MSEEvaluator, ToyRegressor, toy_batches  # noqa: E402

from kiln.engine import Runner  # noqa: E402
from kiln.engine.hooks import STAGES, Hook, HookBase, HookError, Priority, get_priority  # noqa: E402

NO_DEFAULTS = {k: None for k in ("timer", "logger", "param_scheduler", "checkpoint", "sampler_seed")}


def _runner(tmp_path, **kw):
    model = ToyRegressor()
    args = dict(
        work_dir=str(tmp_path),
        train_dataloader=toy_batches(3),
        max_epochs=2,
        optim_wrapper=torch.optim.SGD(model.parameters(), lr=0.01),
        default_hooks=NO_DEFAULTS,
    )
    args.update(kw)
    return Runner(model, **args)


class Recorder(Hook):
    """Overrides all 22 stages and records them."""

    def __init__(self, log):
        self.log = log


for _stage in STAGES:

    def _make(stage):
        def method(self, runner, *args):
            self.log.append(stage)

        return method

    setattr(Recorder, _stage, _make(_stage))


def test_there_are_22_stages_and_9_priorities():
    assert len(STAGES) == 22 and len(set(STAGES)) == 22
    assert len(Priority) == 9
    assert get_priority("very_low") == 90 and get_priority(Priority.HIGHEST) == 0 and get_priority(33) == 33


def test_invalid_priority_names_the_choices():
    with pytest.raises(ValueError, match="Unknown hook priority 'URGENT'.*HIGHEST"):
        get_priority("URGENT")
    with pytest.raises(ValueError, match=r"\[0, 100\]"):
        get_priority(101)


def test_hooks_run_by_priority_and_keep_registration_order_within_one(tmp_path):
    runner = _runner(tmp_path)
    calls = []

    class Named(Hook):
        def __init__(self, name, priority):
            self.name, self.priority = name, priority

        def before_train(self, runner):
            calls.append(self.name)

    for name, prio in [("low1", "LOW"), ("high", "HIGH"), ("low2", "LOW"), ("normal", 50), ("low3", 70)]:
        runner.register_hook(Named(name, prio))
    runner.train()
    assert calls == ["high", "normal", "low1", "low2", "low3"]


def test_only_overridden_stages_are_dispatched(tmp_path):
    class OnlyEpochEnd(Hook):
        def after_train_epoch(self, runner):
            pass

    runner = _runner(tmp_path)
    runner.register_hook(OnlyEpochEnd())
    assert len(runner.stage_callables("after_train_epoch")) == 1
    assert all(len(runner.stage_callables(s)) == 0 for s in STAGES if s != "after_train_epoch")


def test_all_22_stages_are_reached_in_order_by_train_val_test_and_checkpointing(tmp_path):
    log = []
    val = toy_batches(2, seed=5)
    runner = _runner(
        tmp_path,
        val_dataloader=val,
        test_dataloader=val,
        val_evaluator=MSEEvaluator(),
        test_evaluator=MSEEvaluator(),
        max_epochs=1,
        default_hooks={**NO_DEFAULTS, "checkpoint": {"type": "CheckpointHook", "interval": 1}},
    )
    runner.register_hook(Recorder(log))
    runner.train()
    runner2 = _runner(tmp_path, max_epochs=1, resume=True)
    runner2.register_hook(Recorder(log))
    runner2.train()
    runner.test()
    assert set(log) == set(STAGES)
    first_run = log[: log.index("after_run") + 1]
    assert first_run[:4] == ["before_run", "before_train", "before_train_epoch", "before_train_iter"]
    assert (
        first_run.index("after_val_epoch")
        < first_run.index("before_save_checkpoint")
        < first_run.index("after_train")
    )
    assert log[log.index("after_run") + 1 :].index("after_load_checkpoint") == 1


def test_register_callback_calls_a_plain_function_at_its_stage(tmp_path):
    runner = _runner(tmp_path)
    seen = []
    runner.register_callback(lambda r: seen.append(r.epoch), stage="after_train_epoch")
    runner.train()
    assert seen == [0, 1]


def test_register_callback_rejects_an_unknown_stage(tmp_path):
    runner = _runner(tmp_path)
    with pytest.raises(ValueError, match="Unknown hook stage 'after_step'.*after_train_iter"):
        runner.register_callback(print, stage="after_step")


def test_detectron2_hookbase_gets_trainer_and_step_calls(tmp_path):
    runner = _runner(tmp_path)
    events = []

    class D2Hook(HookBase):
        def before_train(self):
            events.append(("before_train", self.trainer.iter))
            assert self.trainer.max_iter == 6 and isinstance(self.trainer.optimizer, torch.optim.SGD)

        def before_step(self):
            events.append(("before_step", self.trainer.iter))

        def after_step(self):
            events.append(("after_step", self.trainer.iter))

        def after_train(self):
            events.append(("after_train", self.trainer.iter))

    runner.register_hook(D2Hook())
    runner.train()
    assert events[0] == ("before_train", 0) and events[-1] == ("after_train", 6)
    assert [e for e in events if e[0] == "after_step"] == [("after_step", i) for i in range(6)]


def test_a_failing_hook_is_named_with_its_stage(tmp_path):
    class Broken(Hook):
        def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
            raise ValueError("boom")

    runner = _runner(tmp_path)
    runner.register_hook(Broken())
    with pytest.raises(HookError, match="Broken failed in after_train_iter: ValueError: boom"):
        runner.train()


def test_a_failing_hook_in_a_rare_stage_is_named_too(tmp_path):
    class Broken(Hook):
        def before_train_epoch(self, runner):
            raise KeyError("x")

    runner = _runner(tmp_path)
    runner.register_hook(Broken())
    with pytest.raises(HookError, match="Broken failed in before_train_epoch"):
        runner.train()


def test_hooks_from_config_dicts_with_priority(tmp_path):
    runner = _runner(tmp_path, custom_hooks=[dict(type="EmptyCacheHook", priority="HIGHEST")])
    assert type(runner.hooks[0]).__name__ == "EmptyCacheHook" and runner.hooks[0].priority == 0


def test_unknown_hook_type_names_the_registry(tmp_path):
    with pytest.raises(
        KeyError, match="'TextLogerHook' is not registered in the 'hook' registry.*TextLoggerHook"
    ):
        _runner(tmp_path, custom_hooks=[dict(type="TextLogerHook")])


def test_hooks_drop_stages_they_have_nothing_to_do_in_for_this_run(tmp_path):
    runner = _runner(
        tmp_path,
        default_hooks={
            **NO_DEFAULTS,
            "param_scheduler": dict(type="ParamSchedulerHook"),
            "checkpoint": dict(type="CheckpointHook", interval=1),
        },
    )
    seen = {}
    runner.register_callback(
        lambda r: seen.update({s: [f.__self__ for f in r.stage_callables(s)] for s in STAGES}),
        stage="before_train",
    )
    runner.train()
    kinds = {s: sorted(type(h).__name__ for h in hooks) for s, hooks in seen.items()}
    # No schedule and no torch scheduler: the schedule hook is not called per iteration at all;
    # epoch-based checkpoints: the checkpoint hook is not called per iteration either.
    assert "ParamSchedulerHook" not in kinds["before_train_iter"] + kinds["after_train_iter"]
    assert (
        "CheckpointHook" not in kinds["after_train_iter"] and "CheckpointHook" in kinds["after_train_epoch"]
    )
    assert os.path.exists(tmp_path / "epoch_2.pth")
