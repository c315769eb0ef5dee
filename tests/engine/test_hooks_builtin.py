"""Built-in hooks with real files: logger/TensorBoard/JSON, checkpoints, eval + best, EMA, early stop, NaN."""

from __future__ import annotations

import glob
import json
import os
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
from engine_toys import MSEEvaluator, ToyRegressor, toy_batches  # noqa: E402

from kiln.engine import Runner  # noqa: E402
from kiln.engine.hooks import HookError  # noqa: E402


def _runner(tmp_path, model=None, **kw):
    model = model or ToyRegressor()
    args = dict(
        work_dir=str(tmp_path),
        train_dataloader=toy_batches(4),
        max_epochs=3,
        optim_wrapper=torch.optim.SGD(model.parameters(), lr=0.05),
    )
    args.update(kw)
    return Runner(model, **args)


def _jsonl(path):
    with open(path) as f:
        return [json.loads(line) for line in f]


def test_logger_writes_metrics_jsonl_every_interval_with_losses_times_and_lr(tmp_path):
    r = _runner(
        tmp_path,
        default_hooks=dict(logger=dict(type="LoggerHook", interval=3)),
        param_scheduler=dict(type="MultiStepLR", milestones=[1], gamma=0.1),
    )
    r.train()
    rows = _jsonl(tmp_path / "metrics.jsonl")
    assert [row["iteration"] for row in rows] == [2, 3, 5, 7, 8, 11]  # every 3 + each epoch's end
    assert {"loss", "loss_mse", "loss_l1", "acc_like", "time", "data_time", "lr", "epoch"} <= set(rows[0])
    assert rows[0]["lr"] == pytest.approx(0.05) and rows[-1]["lr"] == pytest.approx(0.005)


class _SlowLoader:
    """Yields the toy batches, sleeping ``delay`` seconds before each (a slow data pipeline)."""

    def __init__(self, batches, delay):
        self.batches, self.delay = batches, delay

    def __len__(self):
        return len(self.batches)

    def __iter__(self):
        import time

        for b in self.batches:
            time.sleep(self.delay)
            yield b


def test_timer_data_time_is_the_wait_for_the_loader_not_the_hooks_before_the_step(tmp_path):
    import time

    from kiln.engine.hooks import Hook

    class SlowHook(Hook):
        priority = "HIGHEST"  # runs before the timer's stage methods

        def before_train_iter(self, runner, batch_idx, data_batch=None):
            time.sleep(0.2)

    r = _runner(tmp_path, train_dataloader=_SlowLoader(toy_batches(3), 0.01), max_epochs=1,
                default_hooks=dict(logger=dict(type="LoggerHook", interval=1), checkpoint=None))
    r.register_hook(SlowHook())
    r.train()
    data = [v for v, _ in r.storage.history("data_time").values()]
    total = [v for v, _ in r.storage.history("time").values()]
    assert len(data) == len(total) == 3
    assert all(0.01 <= d < 0.15 for d in data), data  # the loader's 10 ms, not the hook's 200 ms
    assert all(t - d >= 0.2 for d, t in zip(data, total)), (data, total)


def test_timer_time_adds_up_to_the_wall_time_and_data_time_is_only_the_loader(tmp_path):
    import time

    from kiln.engine.hooks import Hook

    class SlowWriter(Hook):
        priority = "LOWEST"  # like writing logs or saving a checkpoint after the step

        def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
            time.sleep(0.1)

        def after_train_epoch(self, runner):
            time.sleep(0.2)  # like validating at the end of an epoch

    r = _runner(tmp_path / "a", train_dataloader=_SlowLoader(toy_batches(3), 0.01), max_epochs=2,
                default_hooks=dict(logger=dict(type="LoggerHook", interval=1), checkpoint=None))
    r.register_hook(SlowWriter())
    start = time.perf_counter()
    r.train()
    wall = time.perf_counter() - start
    data = [v for v, _ in r.storage.history("data_time").values()]
    total = [v for v, _ in r.storage.history("time").values()]
    assert len(data) == len(total) == 6
    assert all(0.01 <= d < 0.09 for d in data), data  # never the hooks
    assert total[0] < 0.09  # the first iteration has no previous hooks
    assert all(t >= 0.11 for t in total[1:]), total  # the previous iteration's hooks count
    assert total[3] >= 0.31, total  # ... and the epoch-end ones
    # Outside every iteration's time: only the hooks after the last step (0.1 + 0.2 s) and setup.
    assert 0.3 <= wall - sum(total) < 0.45, (wall, sum(total))

    r = _runner(tmp_path / "b", max_epochs=1, default_hooks=dict(timer=None, checkpoint=None))
    r.train()
    assert "loss" in r.storage.histories()
    assert "time" not in r.storage.histories() and "data_time" not in r.storage.histories()


def test_tensorboard_logger_hook_writes_readable_event_files(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    r = _runner(
        tmp_path,
        default_hooks=dict(logger=None),
        custom_hooks=[dict(type="TensorboardLoggerHook", interval=2)],
    )
    r.train()
    acc = EventAccumulator(str(tmp_path / "tf_logs"))
    acc.Reload()
    steps = [e.step for e in acc.Scalars("loss_mse")]
    assert steps == [1, 3, 5, 7, 9, 11]


def test_seed_log_config_text_and_tensorboard_hooks_both_write(tmp_path, caplog):
    r = _runner(
        tmp_path,
        default_hooks=dict(logger=None),
        custom_hooks=[
            dict(type="TextLoggerHook", interval=4),
            dict(type="TensorboardLoggerHook", interval=4),
        ],
    )
    with caplog.at_level("INFO", logger="kiln.engine.writers"):
        r.train()
    assert "iter: 4/12" in caplog.text and "loss_mse" in caplog.text
    assert glob.glob(str(tmp_path / "tf_logs" / "events.out.tfevents.*"))


def test_validation_metrics_are_logged_once_with_text_and_tensorboard_logger_hooks(tmp_path, caplog):
    r = _runner(
        tmp_path,
        val_dataloader=toy_batches(2, seed=9),
        val_evaluator=MSEEvaluator(),
        default_hooks=dict(logger=None, eval=dict(type="EvalHook", interval=1)),
        custom_hooks=[
            dict(type="TextLoggerHook", interval=4),
            dict(type="TensorboardLoggerHook", interval=4),
        ],
    )
    with caplog.at_level("INFO", logger="kiln.engine"):
        r.train()
    lines = [m for m in caplog.messages if m.startswith("Epoch(val) [")]
    assert len(lines) == 3 and len(set(lines)) == 3  # one line per validation (3 epochs)


def test_checkpoint_hook_keeps_only_the_newest_and_publishes_weights_only(tmp_path):
    r = _runner(
        tmp_path,
        max_epochs=4,
        default_hooks=dict(
            logger=None, checkpoint=dict(type="CheckpointHook", interval=1, max_keep_ckpts=2, publish=True)
        ),
    )
    r.train()
    assert sorted(os.path.basename(p) for p in glob.glob(str(tmp_path / "epoch_[0-9].pth"))) == [
        "epoch_3.pth",
        "epoch_4.pth",
    ]
    published = glob.glob(str(tmp_path / "epoch_4-*.pth"))
    assert len(published) == 1
    ckpt = torch.load(published[0], weights_only=True)
    assert set(ckpt) == {"model", "meta"} and "config" not in ckpt["meta"]


def test_checkpoint_contents_cover_everything_needed_to_resume(tmp_path):
    r = _runner(
        tmp_path,
        default_hooks=dict(logger=None),
        seed=5,
        param_scheduler=dict(type="MultiStepLR", milestones=[1]),
    )
    r.train()
    ckpt = torch.load(tmp_path / "epoch_2.pth", weights_only=True)
    assert {"model", "optimizer", "scheduler", "meta", "storage", "hooks", "rng_state_rank0"} <= set(ckpt)
    assert ckpt["meta"]["epoch"] == 2 and ckpt["meta"]["iter"] == 8 and ckpt["meta"]["inner_iter"] == 0
    assert ckpt["meta"]["seed"] == 5 and ckpt["meta"]["torch_version"] == str(torch.__version__)


def test_eval_hook_validates_every_interval_and_keeps_the_best_checkpoint(tmp_path):
    ev = MSEEvaluator(values=[0.3, 0.5, 0.4])
    r = _runner(
        tmp_path,
        val_dataloader=toy_batches(2, seed=9),
        val_evaluator=ev,
        default_hooks=dict(logger=None, eval=dict(type="EvalHook", interval=1, save_best="bbox/AP")),
    )
    r.train()
    assert ev.calls == 3
    best = glob.glob(str(tmp_path / "best_*.pth"))
    assert [os.path.basename(p) for p in best] == ["best_bbox_AP_epoch_2.pth"]
    assert torch.load(best[0], weights_only=True)["meta"]["best_score"] == 0.5


def test_save_best_with_an_unknown_metric_lists_the_available_ones(tmp_path):
    r = _runner(
        tmp_path,
        val_dataloader=toy_batches(2),
        val_evaluator=MSEEvaluator(),
        default_hooks=dict(logger=None, checkpoint=dict(type="CheckpointHook", save_best="bbox/mAP")),
    )
    with pytest.raises(
        HookError, match=r"save_best='bbox/mAP' is not among the evaluation metrics \['mse'\]"
    ):
        r.train()


def test_early_stopping_stops_after_patience_validations_without_improvement(tmp_path):
    ev = MSEEvaluator(values=[0.5, 0.4, 0.45, 0.3, 0.9])
    r = _runner(
        tmp_path,
        max_epochs=10,
        val_dataloader=toy_batches(2),
        val_evaluator=ev,
        default_hooks=dict(logger=None),
        custom_hooks=[dict(type="EarlyStoppingHook", monitor="bbox/AP", patience=2)],
    )
    r.train()
    assert ev.calls == 3 and r.epoch == 3  # 0.5 best, then 0.4, 0.45: two without improvement


def test_nan_loss_is_reported_with_iteration_and_terms(tmp_path):
    class Exploding(ToyRegressor):
        def forward(self, batch):
            out = super().forward(batch)
            if self.training and len(self.seen) == 2:
                out["loss_l1"] = out["loss_l1"] * float("nan")
            self.seen.append(1)
            return out

    model = Exploding()
    model.seen = []
    r = _runner(
        tmp_path,
        model=model,
        default_hooks=dict(logger=None),
        custom_hooks=[dict(type="CheckInvalidLossHook")],
    )
    # At the very iteration (the third, 1-based), not at the next flush; unwrapped (not a HookError).
    with pytest.raises(
        FloatingPointError, match=r"non-finite at iteration 3 \(epoch 1\): .*\(non-finite: loss_l1, loss\)"
    ):
        r.train()


def test_ema_weights_are_used_for_validation_restored_after_and_resumed(tmp_path):
    r = _runner(
        tmp_path,
        val_dataloader=toy_batches(2),
        val_evaluator=MSEEvaluator(),
        max_epochs=2,
        default_hooks=dict(logger=None),
        custom_hooks=[dict(type="EMAHook", momentum=0.5)],
    )
    seen = {}

    def at_val(runner, *a):
        seen["val"] = runner.unwrapped_model.fc.weight.detach().clone()

    r.register_callback(at_val, "before_val_iter")
    r.train()
    ema = r.get_hook("EMAHook")
    assert torch.equal(seen["val"], ema._ema["fc.weight"])  # validation ran on the averaged weights
    assert not torch.equal(r.unwrapped_model.fc.weight, seen["val"])  # training weights restored after val
    ckpt = torch.load(tmp_path / "epoch_2.pth", weights_only=True)
    assert torch.equal(ckpt["hooks"]["EMAHook.0"]["ema"]["fc.weight"], ema._ema["fc.weight"])


def test_best_checkpoint_rule_is_inferred_for_mmdetection_metric_names():
    from kiln.engine.hooks.checkpoint import infer_rule

    for key in ("coco/bbox_mAP", "pascal_voc/mAP", "coco/AR@100", "AR@1000", "recall@100@0.5", "bbox/AP50"):
        assert infer_rule(key) == "greater", key
    assert infer_rule("val/loss") == "less"
    with pytest.raises(ValueError, match="rule='greater'"):
        infer_rule("coco/bbox_count")
