"""Periodic after_train_iter hooks are called only at the iterations where they act."""

from __future__ import annotations

import itertools
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
from engine_toys import ToyRegressor, toy_batches  # noqa: E402

from kiln.engine import Runner  # noqa: E402
from kiln.engine.hooks import CheckpointHook, Hook, LoggerHook  # noqa: E402
from kiln.engine.hooks.eval import EvalHook  # noqa: E402
from kiln.engine.trainer import _TestHook  # noqa: E402

NO_DEFAULTS = {k: None for k in ("timer", "logger", "param_scheduler", "checkpoint", "sampler_seed")}


def _fake_runner(max_iters, epoch_length, by_epoch):
    return SimpleNamespace(
        max_iters=max_iters, epoch_length=epoch_length, by_epoch=by_epoch, work_dir="/nonexistent",
        val_loop=object(), iter=0, last_metrics={}, unwrapped_model=None, call_hook=lambda *a: None,
    )


def _check_due_matches_actions(hook, runner, acted):
    """For every iteration: next_due_iter == the first iteration >= it at which the hook acts."""
    n, length = runner.max_iters, runner.epoch_length or runner.max_iters
    acts = []
    for j in range(n):
        runner.iter = j
        acted.clear()
        hook.after_train_iter(runner, j % length, None, {})
        if acted:
            acts.append(j)
    assert acts, "the configuration should make the hook act at least once"
    for it in range(n):
        expected = next((j for j in acts if j >= it), None)
        due = hook.next_due_iter(runner, "after_train_iter", it, it % length)
        if expected is None:
            assert due >= n, (it, due)
        else:
            assert due == expected, (it, due, expected)


@pytest.mark.parametrize(
    "interval,max_iters,epoch_length,by_epoch,ignore_last",
    [(5, 23, None, False, False), (4, 30, 7, True, False), (4, 30, 7, True, True), (50, 12, 5, True, False),
     (1, 9, 3, True, False), (7, 7, None, False, True)],
)
def test_logger_hook_is_due_exactly_where_it_writes(interval, max_iters, epoch_length, by_epoch, ignore_last):
    hook = LoggerHook(interval=interval, ignore_last=ignore_last)
    runner = _fake_runner(max_iters, epoch_length, by_epoch)
    hook.before_train(runner)
    acted = []
    hook._write = lambda r: acted.append(r.iter)
    _check_due_matches_actions(hook, runner, acted)


@pytest.mark.parametrize(
    "interval,save_last,max_iters", [(4, True, 18), (4, False, 18), (-1, True, 9), (1, True, 5)]
)
def test_checkpoint_hook_is_due_exactly_where_it_saves(interval, save_last, max_iters):
    hook = CheckpointHook(interval=interval, save_last=save_last, by_epoch=False)
    runner = _fake_runner(max_iters, None, False)
    hook.before_train(runner)
    acted = []
    hook._save = lambda r, unit, n: acted.append(n)
    _check_due_matches_actions(hook, runner, acted)


@pytest.mark.parametrize("interval,start,max_iters", [(3, None, 20), (4, 2, 20), (5, 11, 30), (1, None, 4)])
def test_eval_hook_is_due_exactly_where_it_validates(interval, start, max_iters):
    hook = EvalHook(interval=interval, start=start, by_epoch=False)
    runner = _fake_runner(max_iters, None, False)
    hook.before_train(runner)
    acted = []
    hook._evaluate = lambda r: acted.append(r.iter)
    _check_due_matches_actions(hook, runner, acted)


@pytest.mark.parametrize("period,max_iters", [(4, 18), (5, 10), (50, 7)])
def test_detectron2_test_hook_is_due_exactly_where_it_evaluates(period, max_iters):
    acted = []
    hook = _TestHook.__new__(_TestHook)
    hook.period = period
    hook.trainer = SimpleNamespace(cfg=None)
    hook.trainer_cls = SimpleNamespace(test=lambda cfg, model: acted.append(1) or {})
    _check_due_matches_actions(hook, _fake_runner(max_iters, None, False), acted)


def _runner(tmp_path, **kw):
    model = ToyRegressor()
    args = dict(
        work_dir=str(tmp_path),
        train_dataloader=toy_batches(4),
        max_epochs=3,
        optim_wrapper=torch.optim.SGD(model.parameters(), lr=0.01),
        default_hooks=NO_DEFAULTS,
    )
    args.update(kw)
    return Runner(model, **args)


def test_the_loop_skips_a_periodic_hook_between_its_due_iterations_and_keeps_priority_order(tmp_path):
    log = []

    class EveryThird(Hook):
        priority = "LOW"

        def next_due_iter(self, runner, stage, it, batch_idx):
            return it + (-(it + 1)) % 3  # iterations 2, 5, 8, ...

        def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
            log.append(("third", runner.iter))

    class Always(Hook):
        priority = "HIGH"

        def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
            log.append(("always", runner.iter))

    class AlwaysLast(Always):
        priority = "LOWEST"

        def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
            log.append(("last", runner.iter))

    runner = _runner(tmp_path)
    for h in (EveryThird(), AlwaysLast(), Always()):
        runner.register_hook(h)
    runner.train()  # 3 epochs x 4 batches = 12 iterations
    assert [it for name, it in log if name == "third"] == [2, 5, 8, 11]
    assert [it for name, it in log if name == "always"] == list(range(12))
    assert [it for name, it in log if name == "last"] == list(range(12))
    for _, group in itertools.groupby(log, key=lambda e: e[1]):  # per iteration: priority order
        names = [n for n, _ in group]
        assert names in (["always", "last"], ["always", "third", "last"])


def test_a_logger_subclass_overriding_after_train_iter_is_called_every_iteration(tmp_path):
    seen = []

    class MyLogger(LoggerHook):
        def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
            seen.append(runner.iter)

    runner = _runner(tmp_path, default_hooks={**NO_DEFAULTS, "logger": MyLogger(interval=50)})
    runner.train()
    assert seen == list(range(12))


def test_iteration_based_checkpoints_and_log_lines_land_where_configured(tmp_path):
    import json

    runner = _runner(
        tmp_path,
        max_epochs=None,
        max_iters=10,
        default_hooks={**NO_DEFAULTS, "logger": LoggerHook(interval=4),
                       "checkpoint": CheckpointHook(interval=3, max_keep_ckpts=-1)},
    )
    runner.train()
    saved = sorted(p.name for p in tmp_path.glob("iter_*.pth"))
    assert saved == ["iter_10.pth", "iter_3.pth", "iter_6.pth", "iter_9.pth"]
    lines = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["iteration"] for r in lines if "loss" in r] == [3, 7, 9]


@pytest.mark.parametrize(
    "schedules",
    [
        [dict(type="LinearLR", start_factor=0.1, by_epoch=False, end=5),
         dict(type="MultiStepLR", by_epoch=False, milestones=[9, 14])],
        [dict(type="MultiStepLR", by_epoch=True, milestones=[1, 2])],
        [dict(type="CosineAnnealingLR", by_epoch=False, T_max=20)],
    ],
)
def test_the_schedule_hook_sets_every_iterations_lr_while_skipping_constant_stretches(tmp_path, schedules):
    from kiln.engine.hooks import ParamSchedulerHook

    runner = _runner(tmp_path, max_epochs=5, param_scheduler=schedules,
                     default_hooks={**NO_DEFAULTS, "param_scheduler": ParamSchedulerHook()})
    seen, applied = [], []
    runner.register_callback(lambda r, *a: seen.append((r.iter, r.optimizer.param_groups[0]["lr"])),
                             "after_train_iter")
    apply = runner.schedule_set.apply
    runner.schedule_set.apply = lambda it: applied.append(it) or apply(it)
    runner.train()  # 5 epochs x 4 batches
    expected = [(it, runner.schedule_set.values_at(it)["lr"][0]) for it in range(20)]
    assert [it for it, _ in seen] == list(range(20))
    assert [lr for _, lr in seen] == pytest.approx([lr for _, lr in expected], rel=1e-12)
    changes = [it for it in range(20) if it == 0 or expected[it][1] != expected[it - 1][1]]
    assert set(changes) <= set(applied) and len(applied) <= len(changes) + 1
