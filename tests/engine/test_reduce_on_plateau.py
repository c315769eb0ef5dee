"""Lowering the lr from a monitored metric: MMEngine's ReduceOnPlateauLR and torch's ReduceLROnPlateau."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
import torch.nn as nn

sys.path.insert(0, str(Path(__file__).parent))
from engine_toys import ToyRegressor, toy_batches  # noqa: E402

from kiln.engine import Runner  # noqa: E402
from kiln.engine.hooks import HookError  # noqa: E402
from kiln.engine.plateau import MonitoredScheduler, ReduceOnPlateauLR  # noqa: E402
from kiln.engine.schedulers import ScheduleSet  # noqa: E402


class ConstEvaluator:
    """Reports the same AP at every validation (deterministic across a resume): a plateau from the start."""

    def reset(self):
        pass

    def process(self, inputs, outputs):
        pass

    def evaluate(self):
        return {"bbox/AP": 0.5, "mse": 1.0}


class ConstLoss(nn.Module):
    """A training loss of exactly 1.0 at every step (zero gradients): a plateau of the training metric."""

    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.zeros(1))

    def forward(self, batch):
        if self.training:
            return {"loss_c": self.w.sum() * 0 + 1.0}
        return [{"pred": torch.zeros(1)} for _ in batch]


def _runner(work_dir, param_scheduler, model=None, val=True, **kw):
    torch.manual_seed(0)
    model = model or ToyRegressor()
    args = dict(
        work_dir=str(work_dir),
        train_dataloader=toy_batches(4),
        max_epochs=7,
        optim_wrapper=dict(optimizer=dict(type="SGD", lr=0.05, momentum=0.9)),
        param_scheduler=param_scheduler,
        default_hooks=dict(logger=None),
    )
    if val:
        args.update(val_dataloader=toy_batches(1, seed=5), val_evaluator=ConstEvaluator())
    args.update(kw)
    r = Runner(model, **args)
    lrs = []
    r.register_callback(
        lambda runner, *a: lrs.append(runner.optimizer.param_groups[0]["lr"]), "after_train_iter"
    )
    return r, lrs


PLATEAU = dict(
    type="ReduceOnPlateauLR", monitor="bbox/AP", rule="greater", factor=0.5, patience=1, cooldown=1
)


def test_matches_torch_reduce_lr_on_plateau_step_by_step():
    metrics = [1.0, 0.9, 0.95, 0.95, 0.8, 1.2, 1.2, 1.19, 1.2, 1.2, 1.2, 1.2, 0.5, 0.5, 0.5]
    for kwargs in (
        dict(
            mode="min", factor=0.5, patience=1, cooldown=1, threshold=0.01, threshold_mode="rel", min_lr=0.004
        ),
        dict(
            mode="max", factor=0.3, patience=0, cooldown=0, threshold=0.05, threshold_mode="abs", min_lr=0.0
        ),
    ):
        p_torch = nn.Parameter(torch.zeros(1))
        p_kiln = nn.Parameter(torch.zeros(1))
        opt_torch = torch.optim.SGD([p_torch], lr=0.1)
        opt_kiln = torch.optim.SGD([p_kiln], lr=0.1)
        ref = torch.optim.lr_scheduler.ReduceLROnPlateau(opt_torch, **kwargs)
        ours = ReduceOnPlateauLR(monitor="m", **kwargs)
        sset = ScheduleSet(opt_kiln, [ours])
        sset.apply(0)
        for m in metrics:
            ref.step(m)
            if ours.observe(m, opt_kiln.param_groups):
                sset.reapply()
            assert opt_kiln.param_groups[0]["lr"] == pytest.approx(opt_torch.param_groups[0]["lr"], rel=1e-12)
        assert opt_kiln.param_groups[0]["lr"] < 0.1  # the sequence did trigger reductions


def test_reduces_after_validation_and_composes_with_closed_form_schedules(tmp_path):
    # AP never improves after the first validation: patience 1 -> reduce after the 3rd validation,
    # cooldown 1 + patience 1 -> again after the 6th. MultiStepLR adds x0.1 from the 6th epoch on.
    r, lrs = _runner(tmp_path, [PLATEAU, dict(type="MultiStepLR", milestones=[5], gamma=0.1)])
    r.train()
    per_epoch = [lrs[i * 4] for i in range(7)]
    assert all(len(set(lrs[i * 4 : (i + 1) * 4])) == 1 for i in range(7))  # changes at epoch boundaries only
    assert per_epoch == pytest.approx([0.05, 0.05, 0.05, 0.025, 0.025, 0.0025, 0.00125], rel=1e-12)


def test_resume_across_a_reduction_is_exact(tmp_path):
    full, full_lrs = _runner(tmp_path / "full", [PLATEAU])
    full.train()
    part, _ = _runner(tmp_path / "part", [PLATEAU], max_epochs=4)  # stops after the 1st reduction
    part.train()
    resumed, resumed_lrs = _runner(tmp_path / "part", [PLATEAU], resume=True)
    resumed.train()
    assert resumed_lrs == full_lrs[16:]
    assert full_lrs[-1] == pytest.approx(0.0125)
    for a, b in zip(
        full.unwrapped_model.state_dict().values(), resumed.unwrapped_model.state_dict().values()
    ):
        assert torch.equal(a, b)


def test_without_validation_it_watches_the_epoch_mean_of_a_logged_training_loss(tmp_path):
    sched = dict(type="ReduceOnPlateauLR", monitor="loss", factor=0.5, patience=1)  # rule 'less'
    r, lrs = _runner(tmp_path, sched, model=ConstLoss(), val=False, max_epochs=5)
    r.train()
    # Epoch means 1.0, 1.0, 1.0: the 3rd is the 2nd without improvement -> reduced from epoch 4.
    assert [lrs[i * 4] for i in range(5)] == pytest.approx([0.05, 0.05, 0.05, 0.025, 0.025])


def test_iteration_based_runs_reduce_right_after_the_validation(tmp_path):
    sched = dict(
        type="ReduceOnPlateauLR", monitor="bbox/AP", rule="greater", factor=0.1, patience=0, by_epoch=False
    )
    r, lrs = _runner(tmp_path, sched, max_epochs=None, max_iters=7, val_interval=2)
    r.train()
    # Validations after iterations 2, 4, 6: the 2nd and 3rd do not improve -> x0.1 from iterations 5 and 7.
    assert lrs == pytest.approx([0.05] * 4 + [0.005] * 2 + [0.0005])


def test_a_torch_reduce_lr_on_plateau_object_is_stepped_with_the_metric_and_resumed(tmp_path):
    def make(work_dir, **kw):
        torch.manual_seed(0)
        model = ToyRegressor()
        opt = torch.optim.SGD(model.parameters(), lr=0.05)
        plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(
            opt, mode="max", factor=0.5, patience=1, cooldown=1
        )
        return _runner(
            work_dir, [MonitoredScheduler(plateau, monitor="bbox/AP")], model=model, optim_wrapper=opt, **kw
        )

    full, full_lrs = make(tmp_path / "full")
    full.train()
    assert [full_lrs[i * 4] for i in range(7)] == pytest.approx([0.05] * 3 + [0.025] * 3 + [0.0125])
    make(tmp_path / "part", max_epochs=4)[0].train()
    resumed, resumed_lrs = make(tmp_path / "part", resume=True)
    resumed.train()
    assert resumed_lrs == full_lrs[16:]


def test_a_bare_torch_plateau_watches_the_training_loss(tmp_path):
    torch.manual_seed(0)
    model = ConstLoss()
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, factor=0.5, patience=1)
    r, lrs = _runner(tmp_path, [plateau], model=model, optim_wrapper=opt, val=False, max_epochs=5)
    r.train()
    assert [lrs[i * 4] for i in range(5)] == pytest.approx([0.05, 0.05, 0.05, 0.025, 0.025])


def test_clear_errors(tmp_path):
    r, _ = _runner(tmp_path, dict(PLATEAU, monitor="coco/bbox_mAP"))
    with pytest.raises(
        HookError, match=r"monitor 'coco/bbox_mAP' is not among the validation metrics \['bbox/AP', 'mse'\]"
    ):
        r.train()
    r, _ = _runner(
        tmp_path,
        dict(type="ReduceOnPlateauLR", monitor="loss", source="train", by_epoch=False),
        max_epochs=None,
        max_iters=4,
    )
    with pytest.raises(ValueError, match="iteration-based"):
        r.train()
    with pytest.raises(ValueError, match=r"factor must be in \(0, 1\)"):
        ReduceOnPlateauLR(monitor="loss", factor=2.0)
    with pytest.raises(ValueError, match="rule must be 'less' or 'greater'"):
        ReduceOnPlateauLR(monitor="loss", rule="max")
    torch.manual_seed(0)
    model = ToyRegressor()
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(opt)
    r, _ = _runner(
        tmp_path,
        [dict(type="LinearLR", start_factor=0.1, by_epoch=False, end=3), plateau],
        model=model,
        optim_wrapper=opt,
    )
    with pytest.raises(ValueError, match="mixes a torch ReduceLROnPlateau with kiln lr schedules"):
        r.train()
    r, _ = _runner(tmp_path, dict(PLATEAU, begin=2), max_epochs=None, max_iters=4, val_interval=2)
    with pytest.raises(
        ValueError, match=r"begin/end count epochs \(by_epoch=True\) but this run counts iterations"
    ):
        r.train()


def test_observations_count_only_inside_the_begin_end_window(tmp_path):
    # begin=3: the validations after epochs 1 and 2 are ignored; 3 is the first (best), 4 and 5 bad.
    r, lrs = _runner(tmp_path, [dict(PLATEAU, begin=3)])
    r.train()
    assert [lrs[i * 4] for i in range(7)] == pytest.approx([0.05] * 5 + [0.025] * 2)
