"""The MMCV 1.x runner API (kiln.engine.build_runner / EpochBasedRunner / IterBasedRunner) on toy models."""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
from mmcv_toys import KilnToy, MMCVToy, PairDataset, loader, weights  # noqa: E402

from kiln.config import Config  # noqa: E402
from kiln.engine import BaseRunner, EpochBasedRunner, Hook, IterBasedRunner, build_runner  # noqa: E402
from kiln.registry import RUNNERS  # noqa: E402


def make(tmp_path, model=None, max_epochs=2, cls=EpochBasedRunner, lr=0.05, **kw):
    torch.manual_seed(0)
    model = model if model is not None else MMCVToy()
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    length = {"max_epochs": max_epochs} if cls is EpochBasedRunner else {"max_iters": max_epochs}
    return cls(model, optimizer=opt, work_dir=str(tmp_path), **length, **kw), model


class Recorder(Hook):
    """MMCV signatures only: after_train_iter(self, runner), before_iter/after_iter fanned out."""

    def __init__(self):
        self.lrs, self.momenta, self.modes, self.losses = [], [], [], []

    def before_train_iter(self, runner):
        self.lrs.append(runner.current_lr()[0])
        self.momenta.append(runner.current_momentum()[0])

    def after_train_iter(self, runner):
        self.losses.append(runner.log_buffer.output["loss"])


class Generic(Hook):
    """Only MMCV's generic methods: called at the train and the val stages."""

    def __init__(self):
        self.modes, self.epochs = [], []

    def after_iter(self, runner):
        self.modes.append((runner.mode, runner.inner_iter))

    def before_epoch(self, runner):
        self.epochs.append(runner.mode)


# ---------------------------------------------------------------- the step
def test_model_train_step_is_called_and_the_optimizer_hook_steps(tmp_path):
    runner, model = make(tmp_path)
    runner.register_training_hooks(None, optimizer_config=dict(grad_clip=None))
    before = weights(model)
    runner.run([loader()], [("train", 1)])
    assert model.train_step_calls == 12 and runner.iter == 12 and runner.epoch == 2
    assert not torch.equal(before["fc.weight"], model.fc.weight)
    assert set(runner.outputs) == {"loss", "log_vars", "num_samples"} and runner.outputs["num_samples"] == 4


def test_without_an_optimizer_hook_a_model_train_step_is_not_stepped_as_in_mmcv(tmp_path, caplog):
    runner, model = make(tmp_path)
    before = weights(model)
    with caplog.at_level(logging.WARNING, logger="kiln"):
        runner.run([loader()], [("train", 1)])
    assert torch.equal(before["fc.weight"], model.fc.weight)
    assert "No optimizer hook is registered" in caplog.text


def test_a_kiln_contract_model_is_stepped_by_the_runner_and_fills_outputs(tmp_path):
    runner, model = make(tmp_path, model=KilnToy())
    rec = runner.register_hook(Recorder())
    before = weights(model)
    runner.run([loader()], [("train", 1)])
    assert not torch.equal(before["fc.weight"], model.fc.weight)
    assert runner.outputs["num_samples"] == 4 and "loss_mse" in runner.outputs["log_vars"]
    assert len(rec.losses) == 12 and all(isinstance(v, float) for v in rec.losses)
    # what a hook reads from log_buffer.output is each iteration's own loss (as logged in the storage)
    assert rec.losses == pytest.approx([v for v, _ in runner.storage.history("loss").values()])
    assert len(set(rec.losses)) == 12


def test_run_kwargs_reach_model_train_step(tmp_path):
    runner, model = make(tmp_path, max_epochs=1)
    runner.register_training_hooks(None, optimizer_config=dict())
    runner.run([loader()], [("train", 1)], scale=3)
    assert model.last_kwargs == {"scale": 3}


def test_batch_processor_is_supported_with_mmcvs_deprecation_warning(tmp_path):
    calls = []

    def batch_processor(model, data, train_mode):
        calls.append(train_mode)
        x, y = (torch.stack([s[k] for s in data]) for k in ("x", "y"))
        loss = ((model.fc(x) - y) ** 2).mean()
        return dict(loss=loss, log_vars={"loss": loss.item()}, num_samples=len(data))

    model = KilnToy()
    with pytest.warns(DeprecationWarning, match="batch_processor is deprecated"):
        runner = EpochBasedRunner(
            model,
            batch_processor=batch_processor,
            optimizer=torch.optim.SGD(model.parameters(), lr=0.1),
            max_epochs=1,
        )
    runner.register_training_hooks(None, optimizer_config=dict())
    runner.run([loader(), loader(8, seed=2, shuffle=False)], [("train", 1), ("val", 1)])
    assert calls.count(True) == 6 and calls.count(False) == 2


# ---------------------------------------------------------------- register_training_hooks
def test_lr_config_step_policy_with_warmup_sets_the_lr(tmp_path):
    runner, _ = make(tmp_path, lr=0.1)
    rec = runner.register_hook(Recorder())
    runner.register_training_hooks(
        dict(policy="step", step=[1], gamma=0.1, warmup="linear", warmup_iters=3, warmup_ratio=0.5),
        optimizer_config=dict(),
    )
    runner.run([loader()], [("train", 1)])
    assert rec.lrs[0] == pytest.approx(0.05)  # warmup starts at ratio * lr
    assert rec.lrs[3] == pytest.approx(0.1) and rec.lrs[5] == pytest.approx(0.1)
    assert rec.lrs[6] == pytest.approx(0.01) and rec.lrs[11] == pytest.approx(0.01)


def test_momentum_config_schedules_the_momentum(tmp_path):
    runner, _ = make(tmp_path)
    rec = runner.register_hook(Recorder())
    runner.register_training_hooks(
        None, optimizer_config=dict(), momentum_config=dict(policy="step", step=[1], gamma=0.5)
    )
    runner.run([loader()], [("train", 1)])
    assert rec.momenta[0] == pytest.approx(0.9) and rec.momenta[6] == pytest.approx(0.45)


def test_grad_clip_bounds_the_update_and_logs_grad_norm(tmp_path):
    runner, model = make(tmp_path, max_epochs=1, lr=1.0)
    runner.optimizer.param_groups[0]["momentum"] = 0.0
    runner.register_training_hooks(None, optimizer_config=dict(grad_clip=dict(max_norm=1e-3, norm_type=2)))
    before = weights(model)
    runner.run([loader(4)], [("train", 1)])  # one iteration
    step = torch.cat([(model.state_dict()[k] - v).flatten() for k, v in before.items()])
    assert float(step.norm()) <= 1e-3 + 1e-6
    assert runner.log_buffer.val_history["grad_norm"][0] > 1e-3  # the pre-clip norm


class WeightWatcher(Hook):
    def __init__(self, model):
        self.model, self.changed, self.last = model, [], model.fc.weight.detach().clone()

    def after_train_iter(self, runner):
        now = self.model.fc.weight.detach().clone()
        self.changed.append(not torch.equal(now, self.last))
        self.last = now


def test_gradient_cumulative_optimizer_hook_steps_every_n_iterations(tmp_path):
    runner, model = make(tmp_path, max_epochs=1)
    runner.register_training_hooks(
        None, optimizer_config=dict(type="GradientCumulativeOptimizerHook", cumulative_iters=2)
    )
    watcher = runner.register_hook(WeightWatcher(model), priority="LOW")
    runner.run([loader()], [("train", 1)])
    assert watcher.changed == [False, True] * 3


def test_fp16_optimizer_hook_uses_a_loss_scaler_saved_in_checkpoints(tmp_path):
    runner, model = make(tmp_path, model=KilnToy(), max_epochs=1)
    runner.register_training_hooks(
        None, dict(type="Fp16OptimizerHook", loss_scale=512.0), checkpoint_config=dict(interval=1)
    )
    before = weights(model)
    runner.run([loader()], [("train", 1)])
    assert type(runner.optim_wrapper).__name__ == "AmpOptimWrapper"
    assert runner.optim_wrapper.scaler.get_scale() == 512.0
    assert not torch.equal(before["fc.weight"], model.fc.weight)
    assert "loss_scaler" in torch.load(tmp_path / "epoch_1.pth", weights_only=True)["optimizer"]


def test_checkpoint_log_and_timer_configs_act(tmp_path):
    runner, _ = make(tmp_path)
    runner.register_training_hooks(
        None,
        optimizer_config=dict(),
        checkpoint_config=dict(interval=1),
        log_config=dict(interval=3, hooks=[dict(type="TextLoggerHook")]),
    )
    runner.run([loader()], [("train", 1)])
    assert sorted(p for p in os.listdir(tmp_path) if p.endswith(".pth")) == [
        "epoch_1.pth",
        "epoch_2.pth",
        "latest.pth",
    ]
    assert os.path.realpath(tmp_path / "latest.pth") == os.path.realpath(tmp_path / "epoch_2.pth")
    records = [json.loads(x) for x in open(tmp_path / "metrics.jsonl")]
    logged = [r["iteration"] for r in records if "loss" in r]
    assert logged == [2, 5, 8, 11] and all("time" in r for r in records if "loss" in r)


def test_without_timer_config_no_iteration_times_are_logged(tmp_path):
    runner, _ = make(tmp_path, max_epochs=1)
    runner.register_training_hooks(
        None,
        optimizer_config=dict(),
        timer_config=None,
        log_config=dict(interval=3, hooks=[dict(type="TextLoggerHook")]),
    )
    runner.run([loader()], [("train", 1)])
    records = [json.loads(x) for x in open(tmp_path / "metrics.jsonl")]
    assert records and not any("time" in r for r in records)


def test_training_hooks_get_mmcvs_priorities(tmp_path):
    runner, _ = make(tmp_path)
    runner.register_training_hooks(
        dict(policy="fixed"),
        dict(),
        dict(interval=1),
        dict(interval=5, hooks=[dict(type="TextLoggerHook")]),
        custom_hooks_config=[dict(type="EmptyCacheHook", priority="LOWEST")],
    )
    prios = {type(h).__name__: h.priority for h in runner.hooks}
    assert prios == {
        "ParamSchedulerHook": 10,
        "MMCVOptimizerHook": 40,
        "CheckpointHook": 50,
        "IterTimerHook": 70,
        "TextLoggerHook": 90,
        "EmptyCacheHook": 100,
    }
    runner.register_hook(Generic())
    assert runner.register_callback(lambda r, *a: None, priority="HIGH").priority == 30
    assert runner.register_hook(Generic(), priority=None).priority == 50  # None: the hook's own
    info = runner.get_hook_info()
    assert "after_val_iter:\n  (50 ) Generic" in info and "(90 ) TextLoggerHook" in info


# ---------------------------------------------------------------- resume
def _train(tmp_path, max_epochs, ckpt_cfg, resume=None, model_seed=0):
    torch.manual_seed(model_seed)
    model = MMCVToy(dropout=0.3)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    runner = EpochBasedRunner(model, optimizer=opt, work_dir=str(tmp_path), max_epochs=max_epochs)
    runner.register_training_hooks(dict(policy="step", step=[2]), dict(grad_clip=dict(max_norm=5)), ckpt_cfg)
    if resume:
        runner.resume(str(resume))
    torch.manual_seed(123)  # what happens between building and running must not matter after a resume
    runner.run([loader(), loader(8, seed=2, shuffle=False)], [("train", 2), ("val", 1)])
    return runner, model


def test_resume_from_an_epoch_checkpoint_gives_the_same_weights(tmp_path):
    _, full = _train(tmp_path / "full", 3, dict(interval=1))
    _train(tmp_path / "part", 1, dict(interval=1))
    runner, resumed = _train(
        tmp_path / "part", 3, dict(interval=1), resume=tmp_path / "part" / "latest.pth", model_seed=5
    )
    assert runner.epoch == 3 and runner.iter == 18
    for k, v in weights(full).items():
        assert torch.equal(v, resumed.state_dict()[k]), k


def test_resume_from_a_mid_epoch_iteration_checkpoint_gives_the_same_weights(tmp_path):
    ck = dict(interval=4, by_epoch=False, filename_tmpl="iter_{}.pth")
    _, full = _train(tmp_path / "full", 2, ck)
    runner, _ = _train(tmp_path / "part", 2, ck)
    assert (tmp_path / "part" / "iter_4.pth").is_file()
    runner, resumed = _train(tmp_path / "part2", 2, ck, resume=tmp_path / "part" / "iter_4.pth", model_seed=5)
    assert runner.iter == 12
    for k, v in weights(full).items():
        assert torch.equal(v, resumed.state_dict()[k]), k


def test_resume_before_run_loads_weights_and_counters_at_once(tmp_path):
    trained, model = _train(tmp_path, 1, dict(interval=1))
    runner, fresh = make(tmp_path / "other", model=MMCVToy(dropout=0.3))
    runner.resume(str(tmp_path / "epoch_1.pth"), resume_optimizer=False)
    assert (runner.epoch, runner.iter) == (1, 6)
    assert torch.equal(fresh.fc.weight, model.fc.weight)
    assert runner.optimizer.state_dict()["state"] == {}  # resume_optimizer=False


def test_resume_from_a_plain_mmcv_checkpoint_continues_at_its_epoch(tmp_path):
    src, model = make(tmp_path / "src")
    opt_state = src.optimizer.state_dict()
    meta = dict(epoch=1, iter=6, exp_name="mmcv")
    torch.save(dict(state_dict=weights(model), optimizer=opt_state, meta=meta), tmp_path / "mmcv.pth")
    runner, resumed = make(tmp_path / "dst")
    runner.register_training_hooks(None, dict())
    runner.resume(str(tmp_path / "mmcv.pth"))
    assert runner.meta["exp_name"] == "mmcv" and torch.equal(resumed.fc.weight, model.fc.weight)
    runner.run([loader()], [("train", 1)])
    assert resumed.train_step_calls == 6 and (runner.epoch, runner.iter) == (2, 12)


def test_val_with_a_loader_runs_one_mmcv_val_epoch(tmp_path):
    runner, model = make(tmp_path)
    gen = runner.register_hook(Generic())
    means = runner.val(loader(8, seed=2, shuffle=False))
    assert model.val_step_calls == 2 and gen.modes == [("val", 0), ("val", 1)]
    assert set(means) == {"loss"} and runner.mode is None


# ---------------------------------------------------------------- workflow val phases
def test_val_phases_run_val_step_with_val_hooks_and_do_not_change_training(tmp_path):
    _, without = _train_val(tmp_path / "a", [("train", 1)])
    runner, with_val = _train_val(tmp_path / "b", [("train", 1), ("val", 1)])
    gen = runner.gen
    assert with_val.val_step_calls == 2 * 2  # 2 val epochs x 2 batches
    assert gen.modes == ([("train", i) for i in range(6)] + [("val", 0), ("val", 1)]) * 2
    assert gen.epochs == ["train", "val"] * 2
    assert set(runner.last_metrics["val_loss"]) == {"loss"}
    for k, v in weights(without).items():
        assert torch.equal(v, with_val.state_dict()[k]), k


def _train_val(path, workflow):
    torch.manual_seed(0)
    model = MMCVToy(dropout=0.3)
    runner = EpochBasedRunner(
        model, optimizer=torch.optim.SGD(model.parameters(), lr=0.05), work_dir=str(path), max_epochs=2
    )
    runner.register_training_hooks(None, dict())
    runner.gen = runner.register_hook(Generic())
    val = torch.utils.data.DataLoader(PairDataset(8, seed=2), batch_size=4, collate_fn=list)  # a torch loader
    loaders = [loader(), val][: len(workflow)]
    runner.run(loaders, workflow)
    return runner, model


# ---------------------------------------------------------------- IterBasedRunner
def _iter_run(path, resume=None):
    torch.manual_seed(0)
    model = MMCVToy(dropout=0.3)
    runner = IterBasedRunner(
        model, optimizer=torch.optim.SGD(model.parameters(), lr=0.05), work_dir=str(path), max_iters=10
    )
    runner.register_training_hooks(dict(policy="step", step=[6], by_epoch=False), dict(), dict(interval=5))
    runner.rec = runner.register_hook(Recorder())
    if resume:
        runner.resume(str(resume))
    runner.run([PairDataset(), loader(8, seed=2, shuffle=False)], [("train", 4), ("val", 2)])
    return runner, model


def test_iter_based_runner_alternates_train_and_val_iterations_and_resumes_exactly(tmp_path):
    runner, full = _iter_run(tmp_path / "full")
    assert runner.iter == 10 and full.train_step_calls == 10
    assert full.val_step_calls == 6  # after iterations 4 and 8, and after the last one (10), 2 each
    assert runner.rec.lrs[5] == pytest.approx(0.05) and runner.rec.lrs[6] == pytest.approx(0.005)
    assert sorted(p for p in os.listdir(tmp_path / "full") if p.endswith(".pth")) == [
        "iter_10.pth",
        "iter_5.pth",
        "latest.pth",
    ]
    _, resumed = _iter_run(tmp_path / "part", resume=tmp_path / "full" / "iter_5.pth")
    for k, v in weights(full).items():
        assert torch.equal(v, resumed.state_dict()[k]), k


# ---------------------------------------------------------------- datasets given to run()
def test_datasets_get_loaders_from_the_configs_data_settings(tmp_path):
    cfg = Config(dict(data=dict(samples_per_gpu=3, workers_per_gpu=0)))
    model = MMCVToy()
    runner = EpochBasedRunner(
        model, optimizer=torch.optim.SGD(model.parameters(), lr=0.1), max_epochs=1, cfg=cfg
    )
    runner.register_training_hooks(None, dict())
    runner.run([PairDataset(12)], [("train", 1)])
    assert runner.outputs["num_samples"] == 3 and runner.iter == 4


def test_datasets_without_a_config_get_mmdetections_default_loader_settings(tmp_path, caplog):
    model = MMCVToy()
    runner = EpochBasedRunner(model, optimizer=torch.optim.SGD(model.parameters(), lr=0.1), max_epochs=1)
    with caplog.at_level(logging.INFO, logger="kiln"):
        runner.run([PairDataset(8)], [("train", 1)])
    assert runner.outputs["num_samples"] == 2 and runner.iter == 4
    assert "samples_per_gpu=2, workers_per_gpu=2" in caplog.text


# ---------------------------------------------------------------- checkpoints (MMCV signatures)
def test_save_checkpoint_mmcv_signature_and_load_checkpoint_with_revise_keys(tmp_path):
    runner, model = make(tmp_path, meta=dict(exp_name="demo", seed=0))
    out = tmp_path / "elsewhere"
    path = runner.save_checkpoint(str(out), filename_tmpl="ep_{}.pth")
    assert path == str(out / "ep_1.pth") and os.path.islink(out / "latest.pth")
    ckpt = torch.load(path, weights_only=True)
    assert ckpt["meta"]["exp_name"] == "demo" and ckpt["meta"]["epoch"] == 0
    torch.save({"state_dict": {"net." + k: v * 0 for k, v in model.state_dict().items()}}, tmp_path / "m.pth")
    other, m2 = make(tmp_path / "o")
    loaded = other.load_checkpoint(str(tmp_path / "m.pth"), revise_keys=[(r"^net\.", "")])
    assert "meta" not in loaded and float(m2.fc.weight.abs().sum()) == 0.0
    with pytest.raises(RuntimeError, match="strict=True"):
        other.load_checkpoint(str(tmp_path / "m.pth"), strict=True)


# ---------------------------------------------------------------- build_runner / RUNNERS
def test_build_runner_from_a_runner_config_with_default_args(tmp_path):
    model = MMCVToy()
    runner = build_runner(
        dict(type="IterBasedRunner", max_iters=7),
        default_args=dict(
            model=model,
            optimizer=torch.optim.SGD(model.parameters(), lr=0.1),
            work_dir=str(tmp_path),
            logger=None,
        ),
    )
    assert isinstance(runner, IterBasedRunner) and runner.max_iters == 7 and runner.max_epochs is None
    assert runner.logger.name == "kiln" and runner.work_dir == str(tmp_path) and runner.rank == 0
    assert RUNNERS.get("EpochBasedRunner") is EpochBasedRunner
    with pytest.raises(ValueError, match="constructor"):
        build_runner(dict(type="EpochBasedRunner", constructor="MyConstructor"), dict(model=model))


# ---------------------------------------------------------------- errors
@pytest.mark.parametrize(
    "loaders, workflow, match",
    [
        (1, [("train", 1)], "expects a list of data loaders"),
        ([0], [("train", 1), ("val", 1)], r"len\(data_loaders\) == len\(workflow\)"),
        ([0, 1], [("train", 1)], r"len\(data_loaders\) == len\(workflow\)"),
        ([0], [("test", 1)], r"workflow\[0\] = \('test', 1\) is not a valid phase"),
        ([0], [("train", 0)], "positive int"),
        ([0], [("val", 1)], r"has no \('train', n\) phase"),
        ([1, 0], [("val", 1), ("train", 1)], r"starts with a \('val', n\) phase"),
        ([0, 1], [("train", 1), ("train", 1)], "different data loaders"),
        ([0], [], "non-empty list"),
    ],
)
def test_bad_run_arguments_are_refused_clearly(tmp_path, loaders, workflow, match):
    runner, _ = make(tmp_path)
    pool = [loader(), loader(8, seed=2)]
    args = [pool[i] for i in loaders] if isinstance(loaders, list) else pool[0]
    with pytest.raises((ValueError, TypeError), match=match):
        runner.run(args, workflow)


def test_constructor_errors_are_mmcvs():
    model = MMCVToy()
    with pytest.raises(ValueError, match="Only one of `max_epochs` or `max_iters`"):
        EpochBasedRunner(model, max_epochs=1, max_iters=1)
    with pytest.raises(TypeError, match="logger must be a logging.Logger"):
        EpochBasedRunner(model, logger="log")
    with pytest.raises(TypeError, match="meta must be a dict"):
        EpochBasedRunner(model, meta=[1])
    with pytest.raises(TypeError, match=r"optimizer\['g'\] is a str"):
        EpochBasedRunner(model, optimizer={"g": "sgd"})
    with pytest.raises(RuntimeError, match="cannot both be given"), pytest.warns(DeprecationWarning):
        EpochBasedRunner(model, batch_processor=lambda m, d, train_mode: {})
    with pytest.raises(TypeError, match="abstract"):
        BaseRunner(model)


def test_missing_length_extra_kwargs_and_mmcv_train_are_refused(tmp_path):
    model = KilnToy()
    runner = EpochBasedRunner(model, optimizer=torch.optim.SGD(model.parameters(), lr=0.1))
    with pytest.raises(ValueError, match="max_epochs is not set"):
        runner.run([loader()], [("train", 1)])
    with pytest.raises(TypeError, match="passes to model.train_step"):
        runner.run([loader()], [("train", 1)], max_epochs=1, scale=2)
    with pytest.raises(TypeError, match=r"runner.run\(\[data_loader\], \[\('train', 1\)\]\)"):
        runner.train(loader())


def test_bad_hook_configs_are_refused_naming_the_key(tmp_path):
    runner, _ = make(tmp_path)
    with pytest.raises(KeyError, match="lr_config=.*has no 'policy'"):
        runner.register_training_hooks(dict(step=[1]))
    with pytest.raises(ValueError, match="optimizer_config type 'MyOptimizerHook'"):
        runner.register_optimizer_hook(dict(type="MyOptimizerHook"))
    with pytest.raises(TypeError, match="coalesce"):
        runner.register_optimizer_hook(dict(coalesce=True))
    with pytest.raises(KeyError, match="log_config=.*needs 'interval' and 'hooks'"):
        runner.register_logger_hooks(dict(interval=5))
