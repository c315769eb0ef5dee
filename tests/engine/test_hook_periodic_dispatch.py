"""Hooks state their period once, as data (``Every``/``DueWhen``); the loop calls them only when due."""

from __future__ import annotations

import inspect
import itertools
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
from engine_toys import MSEEvaluator, ToyRegressor, toy_batches  # noqa: E402

from kiln.engine import Runner  # noqa: E402
from kiln.engine.hooks import CheckpointHook, Hook, LoggerHook  # noqa: E402
from kiln.engine.hooks.eval import EvalHook  # noqa: E402
from kiln.engine.hooks.period import DueWhen, Every  # noqa: E402

NO_DEFAULTS = {k: None for k in ("timer", "logger", "param_scheduler", "checkpoint", "sampler_seed")}


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


class EveryThird(Hook):
    period = Every(3)

    def __init__(self):
        self.calls = []

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        self.calls.append(runner.iter + 1)


def test_a_hook_declaring_every_3_is_called_exactly_after_iterations_3_6_9_and_has_no_period_test(tmp_path):
    hook = EveryThird()
    runner = _runner(tmp_path, max_epochs=None, max_iters=10, custom_hooks=[hook])
    runner.train()
    assert hook.calls == [3, 6, 9]
    source = inspect.getsource(EveryThird.after_train_iter)
    assert "%" not in source and "every_n" not in source  # the period is stated once, in `period`


class _SpyWriter:
    def __init__(self):
        self.iters = []

    def write(self):
        from kiln.engine import get_event_storage

        self.iters.append(get_event_storage().iter + 1)

    def close(self):
        pass


@pytest.mark.parametrize(
    "interval,max_iters,epoch_length,by_epoch,ignore_last",
    [(5, 23, None, False, False), (4, 28, 7, True, False), (4, 28, 7, True, True), (50, 12, 4, True, False),
     (1, 9, 3, True, False), (7, 7, None, False, True)],
)
def test_the_logger_writes_every_interval_at_epoch_ends_and_at_the_last_iteration(
    tmp_path, interval, max_iters, epoch_length, by_epoch, ignore_last
):
    writer = _SpyWriter()
    hook = LoggerHook(interval=interval, writers=[writer], ignore_last=ignore_last)
    n_batches = epoch_length or 5
    length = dict(max_epochs=max_iters // n_batches, max_iters=None)
    if not by_epoch:
        length = dict(max_epochs=None, max_iters=max_iters)
    runner = _runner(tmp_path, train_dataloader=toy_batches(n_batches), **length,
                     default_hooks={**NO_DEFAULTS, "logger": hook})
    runner.train()
    epoch_end = by_epoch and not ignore_last
    expected = [n for n in range(1, max_iters + 1)
                if n % interval == 0 or n == max_iters or (epoch_end and n % n_batches == 0)]
    assert writer.iters == expected + [max_iters + 1]  # (+ the final flush of file writers at after_run)


@pytest.mark.parametrize(
    "interval,save_last,max_iters", [(4, True, 18), (4, False, 18), (-1, True, 9), (1, True, 5)]
)
def test_iteration_checkpoints_are_saved_every_interval_and_at_the_last_iteration(
    tmp_path, interval, save_last, max_iters
):
    hook = CheckpointHook(interval=interval, save_last=save_last, by_epoch=False)
    runner = _runner(tmp_path, max_epochs=None, max_iters=max_iters,
                     default_hooks={**NO_DEFAULTS, "checkpoint": hook})
    runner.train()
    saved = sorted(int(p.stem.split("_")[1]) for p in tmp_path.glob("iter_*.pth"))
    expected = [n for n in range(1, max_iters + 1)
                if (interval > 0 and n % interval == 0) or (save_last and n == max_iters)]
    assert saved == expected


def test_epoch_checkpoints_are_saved_after_the_due_epochs_and_never_per_iteration(tmp_path):
    runner = _runner(tmp_path, max_epochs=5,
                     default_hooks={**NO_DEFAULTS, "checkpoint": CheckpointHook(interval=2)})
    runner.train()
    assert sorted(p.name for p in tmp_path.glob("*.pth")) == ["epoch_2.pth", "epoch_4.pth", "epoch_5.pth"]


@pytest.mark.parametrize("interval,start,max_iters", [(3, None, 20), (4, 2, 20), (5, 11, 30), (1, None, 4)])
def test_iteration_based_validation_runs_from_start_every_interval(tmp_path, interval, start, max_iters):
    evaluator = MSEEvaluator()
    hook = EvalHook(interval=interval, start=start, by_epoch=False)
    runner = _runner(tmp_path, max_epochs=None, max_iters=max_iters, val_dataloader=toy_batches(1),
                     val_evaluator=evaluator, default_hooks={**NO_DEFAULTS, "eval": hook})
    seen = []
    runner.register_callback(lambda r, metrics: seen.append(r.iter + 1), "after_val_epoch")
    runner.train()
    first = interval if start is None else start
    assert seen == [n for n in range(1, max_iters + 1) if n >= first and (n - first) % interval == 0]


@pytest.mark.parametrize("period,max_iters", [(4, 18), (5, 10), (50, 7)])
def test_a_detectron2_eval_function_runs_every_period_and_after_the_last_iteration(
    tmp_path, period, max_iters
):
    seen = []
    runner = _runner(tmp_path, max_epochs=None, max_iters=max_iters)
    # Detectron2's positional form: EvalHook(eval_period, eval_function)
    hook = EvalHook(period, lambda: seen.append(runner.iter + 1) or {"ds": {"AP": 1.0}})
    hook.eval_last = True
    runner.register_hook(hook)
    runner.train()
    assert seen == [n for n in range(1, max_iters + 1) if n % period == 0 or n == max_iters]
    assert runner.last_metrics["val"] == {"ds/AP": 1.0}


def test_an_epoch_period_gates_after_train_epoch_and_drops_after_train_iter(tmp_path):
    calls = []

    class EveryOtherEpoch(Hook):
        period = Every(2, by_epoch=True)

        def after_train_epoch(self, runner):
            calls.append(("epoch", runner.epoch + 1))

        def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
            calls.append(("iter", runner.iter))

    runner = _runner(tmp_path, max_epochs=5, custom_hooks=[EveryOtherEpoch()])
    runner.train()
    assert calls == [("epoch", 2), ("epoch", 4)]


def test_due_when_calls_a_hook_only_at_the_points_its_function_names(tmp_path):
    calls = []

    class AtSquares(Hook):
        period = DueWhen(lambda runner, it: next((s * s for s in range(10) if s * s >= it), float("inf")))

        def before_train_iter(self, runner, batch_idx, data_batch=None):
            calls.append(runner.iter)

    runner = _runner(tmp_path, custom_hooks=[AtSquares()])  # 12 iterations
    runner.train()
    assert calls == [0, 1, 4, 9]


def test_a_period_that_is_not_every_or_due_when_is_refused_naming_the_hook(tmp_path):
    class Bad(Hook):
        period = 3

        def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
            pass

    runner = _runner(tmp_path, custom_hooks=[Bad()])
    with pytest.raises(TypeError, match=r"Bad\.period must be an Every"):
        runner.train()


def test_every_refuses_a_non_positive_period():
    with pytest.raises(ValueError, match="n must be >= 1"):
        Every(0)


def test_the_loop_calls_periodic_hooks_only_when_due_and_keeps_priority_order(tmp_path):
    log = []

    class Third(Hook):
        priority = "LOW"
        period = Every(3, by_epoch=False)  # (by_epoch=None would follow this epoch-based run)

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
    for h in (Third(), AlwaysLast(), Always()):
        runner.register_hook(h)
    runner.train()  # 3 epochs x 4 batches = 12 iterations
    assert [it for name, it in log if name == "third"] == [2, 5, 8, 11]
    assert [it for name, it in log if name == "always"] == list(range(12))
    assert [it for name, it in log if name == "last"] == list(range(12))
    for _, group in itertools.groupby(log, key=lambda e: e[1]):  # per iteration: priority order
        names = [n for n, _ in group]
        assert names in (["always", "last"], ["always", "third", "last"])


def test_a_logger_subclass_inherits_the_period_and_can_ask_for_every_iteration(tmp_path):
    seen, every = [], []

    class MyLogger(LoggerHook):
        def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
            seen.append(runner.iter + 1)

    class EveryIterLogger(LoggerHook):
        period = None

        def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
            every.append(runner.iter)

    runner = _runner(tmp_path, default_hooks={**NO_DEFAULTS, "logger": MyLogger(interval=5)},
                     custom_hooks=[EveryIterLogger()])
    runner.train()
    assert seen == [4, 5, 8, 10, 12]  # every 5, each epoch's last (4 batches), the last one
    assert every == list(range(12))


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
