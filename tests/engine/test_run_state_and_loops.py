"""One run state written by the loop; loops built from LOOPS; Detectron2 trainers share the Runner's step."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
from engine_toys import ToyRegressor, toy_batches  # noqa: E402

from kiln.engine import AMPTrainer, Runner, SimpleTrainer  # noqa: E402
from kiln.engine.data_position import open_loader_at  # noqa: E402
from kiln.engine.hooks import CheckpointHook, Every, Hook  # noqa: E402
from kiln.engine.hooks.eval import EvalHook  # noqa: E402
from kiln.engine.loops import (  # noqa: E402
    EpochBasedTrainLoop,
    IterBasedTrainLoop,
    train_loop_cfg,  # noqa: E402
)
from kiln.engine.optim import AmpOptimWrapper  # noqa: E402
from kiln.engine.state import RunState  # noqa: E402
from kiln.registry import LOOPS  # noqa: E402

NO_DEFAULTS = {k: None for k in ("timer", "logger", "param_scheduler", "checkpoint", "sampler_seed")}


def _runner(tmp_path=None, model=None, **kw):
    model = model or ToyRegressor()
    args = dict(
        work_dir=str(tmp_path) if tmp_path else None,
        train_dataloader=toy_batches(4),
        optim_wrapper=torch.optim.SGD(model.parameters(), lr=0.05),
        default_hooks=NO_DEFAULTS,
    )
    args.update(kw)
    return Runner(model, **args)


# ------------------------------------------------------------------------------------------ state
def test_the_counters_are_read_only_views_of_the_run_state():
    runner = _runner(max_epochs=1)
    assert isinstance(runner.state, RunState)
    for name in ("epoch", "iter", "inner_iter"):
        with pytest.raises(AttributeError):
            setattr(runner, name, 3)
    runner.state.restore(epoch=2, iter=9, inner_iter=1)
    assert (runner.epoch, runner.iter, runner.inner_iter) == (2, 9, 1)


def test_hooks_see_the_state_the_loop_writes_and_the_step_counts_inside_after_train_iter():
    seen = []

    class Spy(Hook):
        def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
            s = runner.state
            seen.append((s.epoch, s.iter, s.inner_iter, s.step_done, s.position(runner.epoch_length)))

    runner = _runner(max_epochs=2, custom_hooks=[Spy()])
    runner.train()
    # iteration 3 is the last batch of epoch 0: a checkpoint saved there resumes at epoch 1, batch 0
    assert seen[3] == (0, 3, 3, True, (1, 0, 4))
    assert seen[5] == (1, 5, 1, True, (1, 2, 6))
    assert (runner.epoch, runner.iter, runner.inner_iter, runner.state.step_done) == (2, 8, 0, False)


def test_request_stop_ends_after_the_current_iteration_and_epoch_end_hooks_still_run():
    ends = []
    runner = _runner(max_epochs=5)
    runner.register_callback(lambda r, *a: r.iter == 5 and r.request_stop(), "after_train_iter")
    runner.register_callback(lambda r: ends.append(r.epoch), "after_train_epoch")
    runner.train()
    assert runner.iter == 6 and ends == [0, 1] and runner.stop_training


# ------------------------------------------------------------------------------------------ loops
def test_train_cfg_builds_the_loop_through_the_loops_registry():
    assert LOOPS.get("EpochBasedTrainLoop") is EpochBasedTrainLoop and LOOPS.get("ValLoop") is not None
    it = _runner(train_cfg=dict(type="IterBasedTrainLoop", max_iters=6, val_interval=3))
    assert isinstance(it.train_loop, IterBasedTrainLoop) and it.max_iters == 6 and it.val_interval == 3
    short = _runner(train_cfg=dict(by_epoch=True, max_epochs=2))
    assert isinstance(short.train_loop, EpochBasedTrainLoop) and short.max_iters == 8
    short.train()
    assert short.iter == 8


def test_the_legacy_length_kwargs_become_a_train_cfg_in_one_place():
    assert train_loop_cfg(None, max_epochs=3) == {
        "type": "EpochBasedTrainLoop", "max_epochs": 3, "val_interval": 1}
    assert train_loop_cfg(None, max_iters=9, val_interval=4) == {
        "type": "IterBasedTrainLoop", "max_iters": 9, "val_interval": 4}
    assert train_loop_cfg(dict(by_epoch=False, max_iters=5))["type"] == "IterBasedTrainLoop"
    assert train_loop_cfg(None) is None


def test_bad_loop_configs_are_refused_with_the_key_named():
    with pytest.raises(ValueError, match="not both"):
        _runner(train_cfg=dict(by_epoch=True, max_epochs=2), max_epochs=2)
    with pytest.raises(KeyError, match="EpochLoop"):
        _runner(train_cfg=dict(type="EpochLoop", max_epochs=2))
    with pytest.raises(TypeError, match="train_cfg.*max_epoch"):
        _runner(train_cfg=dict(type="EpochBasedTrainLoop", max_epoch=2))
    with pytest.raises(ValueError, match="val_interval must be >= 1"):
        _runner(train_cfg=dict(type="EpochBasedTrainLoop", max_epochs=2, val_interval=0))
    with pytest.raises(ValueError, match="contradicts"):
        _runner(train_cfg=dict(type="EpochBasedTrainLoop", by_epoch=False, max_epochs=2))


def test_val_begin_and_val_interval_from_train_cfg_schedule_the_default_evaluation(tmp_path):
    from engine_toys import MSEEvaluator

    loop = dict(type="EpochBasedTrainLoop", max_epochs=7, val_interval=2, val_begin=3)
    runner = _runner(tmp_path, train_cfg=loop,
                     val_dataloader=toy_batches(1), val_evaluator=MSEEvaluator())
    seen = []
    runner.register_callback(lambda r, m: seen.append(r.epoch + 1), "after_val_epoch")
    runner.train()
    assert seen == [4, 6]


# ------------------------------------------------------------------------------------------ one best keeper
def test_eval_hook_save_best_is_kept_by_the_checkpoint_hook_alone(tmp_path):
    from engine_toys import MSEEvaluator

    runner = _runner(tmp_path, max_epochs=3, val_dataloader=toy_batches(1),
                     val_evaluator=MSEEvaluator(values=[0.1, 0.5, 0.3]),
                     default_hooks={**NO_DEFAULTS, "checkpoint": CheckpointHook(interval=10, save_last=False),
                                    "eval": EvalHook(interval=1, save_best="bbox/AP")})
    runner.train()
    assert sorted(p.name for p in tmp_path.glob("best_*.pth")) == ["best_bbox_AP_epoch_2.pth"]
    assert runner.get_hook(CheckpointHook).best.best_score == 0.5


def test_eval_hook_save_best_without_a_checkpoint_hook_is_refused(tmp_path):
    from engine_toys import MSEEvaluator

    runner = _runner(tmp_path, max_epochs=1, val_dataloader=toy_batches(1), val_evaluator=MSEEvaluator(),
                     default_hooks={**NO_DEFAULTS, "eval": EvalHook(save_best="mse")})
    with pytest.raises(Exception, match="save_best='mse'.*CheckpointHook"):
        runner.train()


# ------------------------------------------------------------------------------------------ loader position
def test_open_loader_at_replays_a_plain_loader_and_restarts_one_that_got_shorter():
    data = list(range(5))
    assert list(open_loader_at(data, 0, 2)) == [2, 3, 4]
    assert list(open_loader_at(data, 0, 7)) == [0, 1, 2, 3, 4]
    assert list(open_loader_at(iter([1, 2]), 0, 1, replay=False)) == [1, 2]


# ------------------------------------------------------------------------------------------ Detectron2 facade
def _infinite(batches):
    while True:
        yield from batches


def test_a_detectron2_trainer_and_the_runner_train_identical_parameters():
    torch.manual_seed(0)
    m1 = ToyRegressor()
    m2 = ToyRegressor()
    m2.load_state_dict(m1.state_dict())
    batches = toy_batches(4)
    trainer = SimpleTrainer(m1, _infinite(batches), torch.optim.SGD(m1.parameters(), lr=0.05, momentum=0.9))
    trainer.train(0, 10)
    runner = _runner(model=m2, train_dataloader=batches, max_epochs=None, max_iters=10,
                     optim_wrapper=torch.optim.SGD(m2.parameters(), lr=0.05, momentum=0.9))
    runner.train()
    for a, b in zip(m1.parameters(), m2.parameters()):
        assert torch.equal(a, b)


def test_the_amp_trainer_runs_the_runners_fp16_step_with_its_own_scaler():
    m1, m2 = ToyRegressor(), ToyRegressor()
    m2.load_state_dict(m1.state_dict())
    batches = toy_batches(4, seed=3)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**8, growth_interval=3)
    opt = torch.optim.SGD(m1.parameters(), lr=0.05)
    trainer = AMPTrainer(m1, _infinite(batches), opt, grad_scaler=scaler)
    trainer.train(0, 8)
    assert trainer.runner.optim_wrapper.scaler is scaler  # one AMP implementation: the wrapper's
    ow = AmpOptimWrapper(torch.optim.SGD(m2.parameters(), lr=0.05), loss_scale=dict(init_scale=2.0**8,
                                                                                    growth_interval=3))
    runner = _runner(model=m2, train_dataloader=batches, max_epochs=None, max_iters=8, optim_wrapper=ow)
    runner.train()
    assert scaler.get_scale() == ow.scaler.get_scale() == 2.0**10  # grown twice, via the public API
    for a, b in zip(m1.parameters(), m2.parameters()):
        assert torch.equal(a, b)


def test_a_subclass_overriding_run_step_still_runs_in_the_loop_with_hooks():
    calls = []

    class MyTrainer(SimpleTrainer):
        def run_step(self):
            data = next(self._data_loader_iter)
            calls.append(self.iter)
            out = self.train_step(data)
            return {"total_loss": out["loss"], "mine": 1.0}

    model = ToyRegressor()
    before = model.fc.weight.detach().clone()
    trainer = MyTrainer(model, _infinite(toy_batches(3)), torch.optim.SGD(model.parameters(), lr=0.05))
    trainer.train(0, 5)
    assert calls == [0, 1, 2, 3, 4] and not torch.equal(before, model.fc.weight)
    trainer.runner.flush_metrics()
    assert len(trainer.storage.history("mine")) == 5


# -------------------------------------------------------------------------------------- one periodic saver
def test_the_checkpoint_hook_saves_and_rotates_through_the_periodic_checkpointer(tmp_path):
    from kiln.engine import PeriodicCheckpointer

    hook = CheckpointHook(interval=1, by_epoch=False, max_keep_ckpts=2)
    assert isinstance(hook.saver, PeriodicCheckpointer)
    runner = _runner(tmp_path, max_epochs=None, max_iters=5,
                     default_hooks={**NO_DEFAULTS, "checkpoint": hook})
    runner.train()
    assert sorted(p.name for p in tmp_path.glob("*.pth")) == ["iter_4.pth", "iter_5.pth"]
    assert hook.kept == [str(tmp_path / "iter_4.pth"), str(tmp_path / "iter_5.pth")]


def test_a_hook_registered_during_training_keeps_every_periods_gating(tmp_path):
    saves = []

    class IterSaver(Hook):
        period = Every(3, by_epoch=False)

        def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
            saves.append(("iter", runner.iter + 1))

        def after_train_epoch(self, runner):  # counted in iterations: never called
            saves.append(("epoch", runner.epoch + 1))

    runner = _runner(max_epochs=3, custom_hooks=[IterSaver()])
    runner.register_callback(lambda r: r.epoch == 0 and r.register_hook(Hook()), "after_train_epoch")
    runner.train()
    assert saves == [("iter", 3), ("iter", 6), ("iter", 9), ("iter", 12)]


def test_an_amp_trainer_resumes_the_scaler_of_a_checkpoint_in_the_earlier_layout(tmp_path):
    model = ToyRegressor()
    trainer = AMPTrainer(model, _infinite(toy_batches(2)), torch.optim.SGD(model.parameters(), lr=0.05),
                         grad_scaler=torch.amp.GradScaler("cpu", init_scale=2.0**7))
    trainer.output_dir = str(tmp_path)
    trainer.register_hooks([CheckpointHook(interval=2, by_epoch=False)])
    trainer.train(0, 2)
    path = tmp_path / "iter_2.pth"
    ckpt = torch.load(path, weights_only=True)
    ckpt["grad_scaler"] = ckpt["optimizer"].pop("loss_scaler")  # how earlier versions stored it
    ckpt["grad_scaler"]["scale"] = 2.0**5
    torch.save(ckpt, path)
    again = AMPTrainer(ToyRegressor(), [], torch.optim.SGD(model.parameters(), lr=0.05))
    again.output_dir = str(tmp_path)
    again._get_runner().resume(str(path))
    assert again.grad_scaler.get_scale() == 2.0**5
