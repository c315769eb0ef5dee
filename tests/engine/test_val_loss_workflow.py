"""MMCV ``workflow`` ``('val', n)`` phases: ValLossHook logs validation losses during training.

Each test pins one behaviour: the logged values (computed independently here), the schedule
(epoch- and iteration-based, MMCV's final phase), BatchNorm statistics and RNG left untouched (so
training is bit-identical with and without val phases), the ``val_losses`` override, the averaging
over ranks, a real detector, and the ``Runner.from_cfg`` mapping and its errors.
"""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn

sys.path.insert(0, str(Path(__file__).parent))
from engine_toys import MSEEvaluator, ToyRegressor, toy_batches  # noqa: E402

from kiln.config import Config  # noqa: E402
from kiln.engine import Runner  # noqa: E402
from kiln.engine.hooks import EvalHook, ValLossHook  # noqa: E402
from kiln.engine.hooks.val_loss import loss_mode  # noqa: E402
from kiln.engine.runner_builder import workflow_val_phases  # noqa: E402
from kiln.registry import DATASETS, EVALUATORS, MODELS  # noqa: E402


def _rows(work_dir):
    return [json.loads(line) for line in open(Path(work_dir) / "metrics.jsonl")]


def _val_rows(work_dir):
    return {r["iteration"]: r for r in _rows(work_dir) if any(k.startswith("val/") for k in r)}


def _runner(tmp_path, model, hooks=(), max_epochs=None, max_iters=None, train=None, logger=True, **kw):
    return Runner(
        model,
        work_dir=str(tmp_path / "work"),
        train_dataloader=train if train is not None else toy_batches(4, seed=0),
        max_epochs=max_epochs,
        max_iters=max_iters,
        optim_wrapper=dict(optimizer=dict(type="SGD", lr=0.05, momentum=0.9)),
        default_hooks=dict(
            logger=dict(type="LoggerHook", interval=2) if logger else None, checkpoint=None
        ),
        custom_hooks=list(hooks),
        **kw,
    )


def _snapshot(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _expected_means(model, batches):
    """Sample-weighted means of ToyRegressor's loss terms, computed from eval-mode predictions."""
    model = model.eval()
    sums = {"loss_mse": 0.0, "loss_l1": 0.0, "acc_like": 0.0}
    n = 0
    with torch.no_grad():
        for batch in batches:
            pred = torch.stack([o["pred"] for o in model(batch)]).double()
            y = torch.stack([s["y"] for s in batch]).double()
            err = pred - y
            sums["loss_mse"] += float((err**2).mean()) * len(batch)
            sums["loss_l1"] += float(0.5 * err.abs().mean()) * len(batch)
            sums["acc_like"] += float(err.abs().lt(0.5).double().mean()) * len(batch)
            n += len(batch)
    out = {k: v / n for k, v in sums.items()}
    out["loss"] = out["loss_mse"] + out["loss_l1"]
    return out


# Val batches of unequal size (4, 4, 2): a mean over batches would differ from the mean over samples.
def _val_batches():
    b = toy_batches(3, batch_size=4, seed=7)
    return [b[0], b[1], b[2][:2]]


def test_val_losses_are_logged_after_the_workflow_epochs_with_sample_weighted_means(tmp_path):
    torch.manual_seed(0)
    model = ToyRegressor(dropout=0.5)  # dropout is off in the val pass: the means are deterministic
    val = _val_batches()
    states = {}
    runner = _runner(tmp_path, model, [ValLossHook(interval=2, dataloader=val)], max_epochs=5)
    # HIGH runs before ValLossHook (LOW) in after_train_epoch: the weights the pass sees.
    runner.register_callback(lambda r: states.__setitem__(r.epoch + 1, _snapshot(model)),
                             "after_train_epoch", priority="HIGH")
    runner.train()

    rows = _val_rows(tmp_path / "work")
    # Epochs 2 and 4, and 5: MMCV runs the val phase after the last (partial) train phase too.
    assert sorted(rows) == [2 * 4, 4 * 4, 5 * 4]
    for epoch in (2, 4, 5):
        ref = ToyRegressor(dropout=0.5)
        ref.load_state_dict(states[epoch])
        expected = _expected_means(ref, val)
        got = {k[len("val/"):]: v for k, v in rows[epoch * 4].items() if k.startswith("val/")}
        assert got.keys() == expected.keys()
        for k in expected:
            assert got[k] == pytest.approx(expected[k], rel=1e-6, abs=1e-7), (epoch, k)
    assert runner.last_metrics["val_loss"]["loss"] == pytest.approx(rows[20]["val/loss"])


def test_val_phase_console_line_follows_mmcv(tmp_path, caplog):
    model = ToyRegressor()
    runner = _runner(tmp_path, model, [ValLossHook(interval=1, dataloader=_val_batches())], max_epochs=2)
    with caplog.at_level("INFO"):
        runner.train()
    lines = [r.getMessage() for r in caplog.records]
    val = [m for m in lines if m.startswith("Epoch(val)")]
    assert [m.split("\t")[0] for m in val] == ["Epoch(val) [1][3]", "Epoch(val) [2][3]"]
    assert "loss_mse: " in val[0] and val[0].rstrip().split(", ")[-1].startswith("loss: ")
    # Training lines after a val phase (iterations 6 and 8) show training losses only.
    train_lines = [m for m in lines if "iter: " in m]
    assert len(train_lines) == 4 and "loss_mse: " in train_lines[-1]
    assert not any("val/" in m for m in train_lines)


def test_at_end_false_runs_only_at_multiples_of_interval(tmp_path):
    hook = ValLossHook(interval=2, at_end=False, dataloader=_val_batches())
    runner = _runner(tmp_path, ToyRegressor(), [hook], max_epochs=3)
    runner.train()
    assert sorted(_val_rows(tmp_path / "work")) == [2 * 4]


def test_training_stopped_inside_a_cycle_still_ends_with_the_val_phase(tmp_path):
    def stop_after_epoch_3(r):
        if r.epoch + 1 == 3:
            r.request_stop()

    hook = ValLossHook(interval=2, dataloader=_val_batches())
    runner = _runner(tmp_path, ToyRegressor(), [hook], max_epochs=10)
    runner.register_callback(stop_after_epoch_3, "after_train_epoch", priority="HIGH")
    runner.train()
    assert runner.epoch == 3
    assert sorted(_val_rows(tmp_path / "work")) == [2 * 4, 3 * 4]


def test_val_pass_leaves_batchnorm_statistics_and_module_modes_unchanged(tmp_path):
    model = ToyRegressor(dropout=0.5)
    val = _val_batches()
    seen = {}

    def before(r):
        seen["before"] = {k: v.clone() for k, v in model.bn.state_dict().items()}

    def after(r):
        seen["after"] = {k: v.clone() for k, v in model.bn.state_dict().items()}
        seen["modes"] = [m.training for m in model.modules()]

    runner = _runner(tmp_path, model, [ValLossHook(interval=1, dataloader=val)], max_epochs=1, logger=False)
    runner.register_callback(before, "after_train_epoch", priority="HIGH")
    runner.register_callback(after, "after_train_epoch", priority="LOWEST")
    runner.train()
    assert runner.last_metrics["val_loss"]  # the pass ran between the two callbacks
    for k, v in seen["before"].items():
        assert torch.equal(v, seen["after"][k]), k
    assert all(seen["modes"])  # every module back in training mode

    # Control: the same batches through the training-mode forward would have moved the statistics.
    with torch.no_grad():
        model.train()(val[0])
    assert not torch.equal(model.bn.running_mean, seen["after"]["running_mean"])


def test_loss_mode_restores_every_flag_including_modules_left_in_eval():
    model = ToyRegressor(dropout=0.5).train()
    model.fc.eval()  # a user's choice, kept
    with loss_mode(model):
        assert model.training and not model.bn.training and not model.drop.training and not model.fc.training
    assert model.training and model.bn.training and model.drop.training and not model.fc.training


class _RandomLossModel(nn.Module):
    """Its loss draws from the torch, python and numpy RNGs (like proposal sampling does)."""

    def __init__(self):
        super().__init__()
        self.bn = nn.BatchNorm1d(4)
        self.fc = nn.Linear(4, 1)
        self.drop = nn.Dropout(0.3)

    def forward(self, batch):
        x = torch.stack([s["x"] for s in batch])
        y = torch.stack([s["y"] for s in batch])
        keep = torch.randperm(len(batch))[: max(1, len(batch) - 1)]
        scale = 1.0 + 0.1 * random.random() + 0.1 * float(np.random.rand())
        pred = self.fc(self.drop(self.bn(x)))
        return {"loss_mse": scale * ((pred[keep] - y[keep]) ** 2).mean()}


def _leaky_val_pass(runner):
    """A val pass without the RNG fork or loss mode (the control of the bit-identity test)."""
    with torch.no_grad():
        runner.unwrapped_model(_val_batches()[0])


def _train_random_model(tmp_path, name, hooks=(), callbacks=()):
    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)
    model = _RandomLossModel()
    runner = _runner(tmp_path / name, model, hooks, max_epochs=4, logger=False)
    for fn in callbacks:
        runner.register_callback(fn, "after_train_epoch", priority="LOW")
    runner.train()
    return _snapshot(model)


def test_training_is_bit_identical_with_and_without_val_phases(tmp_path):
    plain = _train_random_model(tmp_path, "plain")
    with_val = _train_random_model(
        tmp_path, "val", hooks=[ValLossHook(interval=1, length=2, dataloader=_val_batches())]
    )
    assert plain.keys() == with_val.keys()
    for k in plain:
        assert torch.equal(plain[k], with_val[k]), k
    # Control: the same pass without forking the RNG (and with BatchNorm updating) changes training.
    leaky = _train_random_model(tmp_path, "leaky", callbacks=[_leaky_val_pass])
    assert not all(torch.equal(plain[k], leaky[k]) for k in plain)


def _id_batches(n, size=2):
    return [[{"x": torch.full((4,), float(i)), "y": torch.zeros(1), "id": i} for _ in range(size)]
            for i in range(n)]


class _IdModel(ToyRegressor):
    """Logs which val batch it saw (``batch_id``) next to its losses."""

    def forward(self, batch):
        out = super().forward(batch)
        if self.training:
            out["batch_id"] = torch.tensor(float(batch[0].get("id", -1)))
        return out


def test_iteration_based_workflow_runs_n_val_iterations_continuing_the_val_stream(tmp_path):
    model = _IdModel()
    hook = ValLossHook(interval=3, length=2, dataloader=_id_batches(3))
    calls = []
    runner = _runner(tmp_path, model, [hook], max_iters=7, train=toy_batches(4, seed=0))
    runner.register_callback(lambda r, *a: calls.append(r.iter), "after_train_iter", priority="LOWEST")
    runner.train()
    rows = _val_rows(tmp_path / "work")
    # After iterations 3 and 6, and after the last one (7): MMCV runs the val phase after the
    # train phase that reached max_iters. Iteration-based metrics sit at the iteration just run.
    assert sorted(rows) == [2, 5, 6]
    # Two val batches per phase, the loader cycled where the previous phase stopped: (0,1) (2,0) (1,2).
    assert [rows[i]["val/batch_id"] for i in (2, 5, 6)] == [0.5, 1.0, 1.5]
    assert calls == list(range(7))


def test_a_resumed_iteration_based_run_continues_the_val_stream_where_the_checkpoint_left_it(tmp_path):
    def run(work, resume=None):
        torch.manual_seed(0)
        model = _IdModel()
        hook = ValLossHook(interval=3, length=2, at_end=False, dataloader=_id_batches(3))
        runner = Runner(
            model, work_dir=str(work), train_dataloader=toy_batches(4, seed=0), max_iters=9,
            optim_wrapper=dict(optimizer=dict(type="SGD", lr=0.05, momentum=0.9)),
            default_hooks=dict(logger=dict(type="LoggerHook", interval=2),
                               checkpoint=dict(type="CheckpointHook", interval=4, by_epoch=False)),
            custom_hooks=[hook], resume=resume,
        )
        runner.train()
        return {i: r["val/batch_id"] for i, r in _val_rows(work).items()}

    # Phases after iterations 3, 6 and 9 take val batches (0,1) (2,0) (1,2).
    assert run(tmp_path / "full") == {2: 0.5, 5: 1.0, 8: 1.5}
    # Resumed from iteration 4, two batches into the pass: the next phases continue at batch 2.
    assert run(tmp_path / "resumed", resume=str(tmp_path / "full" / "iter_4.pth")) == {5: 1.0, 8: 1.5}


def test_scalars_the_model_puts_during_the_pass_stay_out_of_the_training_metrics(tmp_path):
    from kiln.engine import get_event_storage

    class PutsScalars(ToyRegressor):
        def forward(self, batch):
            get_event_storage().put_scalar("num_pos", float(len(batch)))
            return super().forward(batch)

    # Training batches hold 4 samples, val batches 4, 4 and 2.
    hook = ValLossHook(interval=1, dataloader=_val_batches())
    runner = _runner(tmp_path, PutsScalars(), [hook], max_epochs=2)
    runner.train()
    values = runner.storage.history("num_pos").values()
    assert [v for v, _ in values] == [4.0] * 8 and [int(i) for _, i in values] == list(range(8))


def test_val_losses_override_is_used_in_eval_mode(tmp_path):
    class WithValLosses(ToyRegressor):
        modes: list = []

        def val_losses(self, batch):
            self.modes.append((self.training, self.bn.training))
            return {"loss_val": torch.tensor(2.0) * len(batch), "loss_other": torch.tensor(1.0)}

    model = WithValLosses()
    runner = _runner(tmp_path, model, [ValLossHook(interval=1, dataloader=_val_batches())], max_epochs=1)
    runner.train()
    row = _val_rows(tmp_path / "work")[4]
    # Sample-weighted: batches of 4, 4, 2 samples -> loss_val (8*4 + 8*4 + 4*2) / 10.
    assert row["val/loss_val"] == pytest.approx(7.2)
    assert row["val/loss_other"] == pytest.approx(1.0)
    assert row["val/loss"] == pytest.approx(8.2)
    assert "val/acc_like" not in row  # the contract forward was not used
    assert model.modes == [(False, False)] * 3
    assert model.training  # restored


def test_means_are_merged_over_ranks_weighted_by_samples(monkeypatch, tmp_path):
    from kiln.engine.hooks import val_loss as mod

    model = ToyRegressor()
    val = _val_batches()
    hook = ValLossHook(interval=1, dataloader=val)
    runner = _runner(tmp_path, model, [hook], max_epochs=1, logger=False)
    hook.before_train(runner)
    local, _ = hook.compute(runner)
    other = {"loss_mse": (3.0 * 6, 6.0), "loss_l1": (1.0 * 6, 6.0), "loss": (4.0 * 6, 6.0)}  # 6 samples
    monkeypatch.setattr(mod.comm, "get_world_size", lambda: 2)
    monkeypatch.setattr(mod.comm, "all_gather", lambda data: [data, other])
    merged, _ = hook.compute(runner)
    assert merged["loss_mse"] == pytest.approx((local["loss_mse"] * 10 + 3.0 * 6) / 16)
    assert merged["loss"] == pytest.approx((local["loss"] * 10 + 4.0 * 6) / 16)
    assert merged["acc_like"] == pytest.approx(local["acc_like"])  # only this rank logged it
    assert list(merged)[-1] == "loss"


def test_a_kiln_detector_gives_training_loss_keys_and_keeps_its_bn_statistics():
    sys.path.insert(0, str(Path(__file__).parents[1] / "models"))
    from retina_configs import tiny

    from kiln.models import build_detector

    torch.manual_seed(0)
    model = build_detector(tiny())
    mean = torch.tensor([123.675, 116.28, 103.53]).view(3, 1, 1)
    std = torch.tensor([58.395, 57.12, 57.375]).view(3, 1, 1)

    def sample(seed):
        g = torch.Generator().manual_seed(seed)
        img = torch.randint(0, 256, (3, 64, 96), generator=g, dtype=torch.uint8)
        meta = dict(img_shape=(64, 96, 3), ori_shape=(64, 96, 3), scale_factor=1.0, flip=False, image_id=seed)
        return dict(img=(img.float() - mean) / std, img_metas=meta,
                    gt_bboxes=torch.tensor([[10.0, 8.0, 40.0, 50.0]]), gt_labels=torch.tensor([2]))

    hook = ValLossHook(interval=1, dataloader=[[sample(2), sample(3)]])
    runner = Runner(model)  # no training: one pass, computed directly
    stats = {k: v.clone() for k, v in model.state_dict().items() if "running" in k or "num_batches" in k}
    assert stats
    model.train()
    means, batches = hook.compute(runner)
    assert batches == 1
    assert set(means) == {"loss_cls", "loss_bbox", "loss"}
    assert all(np.isfinite(v) for v in means.values())
    assert means["loss"] == pytest.approx(means["loss_cls"] + means["loss_bbox"])
    for k, v in stats.items():
        assert torch.equal(v, model.state_dict()[k]), k
    assert all(m.training for m in model.modules())


# ------------------------------------------------------------------------------ Runner.from_cfg
@MODELS.register_module(force=True)
class WfToyModel(ToyRegressor):
    def __init__(self, train_cfg=None, test_cfg=None):
        super().__init__()


@DATASETS.register_module(force=True)
class WfToyDataset(torch.utils.data.Dataset):
    """Records how it was built (pipeline, test_mode)."""

    def __init__(self, n=8, seed=2, pipeline=None, test_mode=False):
        g = torch.Generator().manual_seed(seed)
        self.items = [{"x": torch.randn(4, generator=g), "y": torch.randn(1, generator=g)} for _ in range(n)]
        self.pipeline, self.test_mode = pipeline, test_mode

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        return self.items[i]


EVALUATORS.register_module(name="WfToyEvaluator", module=MSEEvaluator, force=True)

WF_CFG = """
model = dict(type='WfToyModel')
data = dict(
    samples_per_gpu=4,
    workers_per_gpu=0,
    train=dict(type='WfToyDataset', n=16, pipeline=['train_pipeline']),
    val=dict(type='WfToyDataset', n=6, seed=3, pipeline=['test_pipeline'], samples_per_gpu=1))
optimizer = dict(type='SGD', lr=0.01)
optimizer_config = dict(grad_clip=None)
lr_config = dict(policy='fixed')
checkpoint_config = dict(interval=10)
log_config = dict(interval=2, hooks=[dict(type='TextLoggerHook')])
total_epochs = 3
work_dir = '{work_dir}'
workflow = [('train', 2), ('val', 1)]
"""


def _cfg(tmp_path, text=WF_CFG):
    path = tmp_path / "cfg.py"
    path.write_text(text.format(work_dir=str(tmp_path / "work")))
    return Config.fromfile(str(path))


def test_from_cfg_workflow_val_builds_a_val_loss_hook_and_no_eval_hook(tmp_path):
    runner = Runner.from_cfg(_cfg(tmp_path))
    hook = runner.get_hook(ValLossHook)
    assert (hook.interval, hook.offset, hook.length) == (2, 2, 1)
    assert runner.get_hook(EvalHook) is None and runner.val_loop is None
    # MMDetection's tools/train.py: data.val with the training pipeline, not test mode, training batch size.
    ds = hook.dataloader.dataset
    assert ds.pipeline == ["train_pipeline"] and ds.test_mode is False and len(ds) == 6
    assert hook.dataloader.batch_size == 4
    runner.train()
    rows = _val_rows(tmp_path / "work")
    assert sorted(rows) == [2 * 4, 3 * 4]  # after epoch 2, and after the last (MMCV)
    assert {"val/loss", "val/loss_mse", "val/loss_l1"} <= set(rows[8])


def test_from_cfg_evaluation_and_workflow_val_are_independent(tmp_path):
    text = WF_CFG + "evaluation = dict(type='WfToyEvaluator', interval=3)\n"
    runner = Runner.from_cfg(_cfg(tmp_path, text))
    assert runner.get_hook(EvalHook).interval == 3
    assert runner.get_hook(ValLossHook).interval == 2
    assert runner.val_dataloader.dataset.test_mode is True  # the evaluator's loader: data.val as written
    assert runner.val_dataloader.dataset.pipeline == ["test_pipeline"]


def test_from_cfg_train_only_workflow_adds_no_val_hooks(tmp_path):
    text = WF_CFG.replace("workflow = [('train', 2), ('val', 1)]", "workflow = [('train', 1)]")
    runner = Runner.from_cfg(_cfg(tmp_path, text))
    assert runner.get_hook(ValLossHook) is None and runner.get_hook(EvalHook) is None


def test_from_cfg_iteration_based_workflow_counts_iterations(tmp_path):
    text = WF_CFG.replace("total_epochs = 3", "runner = dict(type='IterBasedRunner', max_iters=5)").replace(
        "workflow = [('train', 2), ('val', 1)]", "workflow = [('train', 2), ('val', 3)]"
    )
    runner = Runner.from_cfg(_cfg(tmp_path, text))
    hook = runner.get_hook(ValLossHook)
    assert (hook.interval, hook.length) == (2, 3)
    runner.train()
    assert sorted(_val_rows(tmp_path / "work")) == [1, 3, 4]  # after iterations 2, 4 and 5


def test_from_cfg_workflow_val_without_data_val_names_workflow_and_data_val(tmp_path):
    text = WF_CFG.replace(
        "    val=dict(type='WfToyDataset', n=6, seed=3, pipeline=['test_pipeline'], samples_per_gpu=1))", ")"
    )
    with pytest.raises(ValueError, match=r"workflow=.*\('val', n\).*data\.val"):
        Runner.from_cfg(_cfg(tmp_path, text))


@pytest.mark.parametrize(
    "workflow, bad",
    [
        ("[('train', 2), ('test', 1)]", r"workflow\[1\] = \('test', 1\)"),
        ("[('train', 0)]", r"workflow\[0\] = \('train', 0\)"),
        ("[('train', 1.5)]", r"workflow\[0\] = \('train', 1\.5\)"),
        ("[('train', 2), 'val']", r"workflow\[1\] = 'val'"),
        ("[('val', 1)]", r"no \('train', n\) phase"),
        ("[('val', 1), ('train', 1)]", r"workflow\[0\] = \('val', 1\) comes before"),
    ],
)
def test_from_cfg_rejects_a_malformed_workflow_entry(tmp_path, workflow, bad):
    text = WF_CFG.replace("workflow = [('train', 2), ('val', 1)]", f"workflow = {workflow}")
    with pytest.raises(ValueError, match=bad):
        Runner.from_cfg(_cfg(tmp_path, text))


def test_workflow_val_phases_of_a_multi_phase_workflow():
    wf = [("train", 2), ("val", 1), ("train", 1), ("val", 2)]
    assert workflow_val_phases(wf) == [(3, 2, 1), (3, 3, 2)]
    assert workflow_val_phases([("train", 1)]) == []
