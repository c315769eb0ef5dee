"""Runner: epoch/iteration training, loss parsing, load_from vs resume, loader positioning."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
from engine_toys import CountingDataset, ToyRegressor, toy_batches  # noqa: E402

from kiln.data import build_train_loader  # noqa: E402
from kiln.engine import Runner, parse_losses  # noqa: E402

QUIET = {"logger": None}


def _sgd(model, lr=0.05):
    return torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)


def test_parse_losses_sums_only_loss_keys_and_logs_the_rest():
    a, b, c = torch.tensor(1.0), torch.tensor(2.0), torch.tensor(5.0)
    total, log_vars = parse_losses({"loss_cls": a, "loss_box": [b, b], "accuracy": c})
    assert float(total) == 5.0
    assert set(log_vars) == {"loss_cls", "loss_box", "accuracy", "loss"} and float(log_vars["loss"]) == 5.0


def test_parse_losses_without_a_loss_key_explains_the_contract():
    with pytest.raises(KeyError, match="no key containing 'loss'.*'acc'"):
        parse_losses({"acc": torch.tensor(1.0)})


def test_epoch_based_training_runs_every_batch_of_every_epoch_and_checkpoints_each_epoch(tmp_path):
    model = ToyRegressor()
    runner = Runner(
        model,
        work_dir=str(tmp_path),
        train_dataloader=toy_batches(5),
        optim_wrapper=_sgd(model),
        max_epochs=3,
        default_hooks=QUIET,
    )
    seen = []
    runner.register_callback(lambda r, i, b, o: seen.append((r.epoch, i, r.iter)), "after_train_iter")
    runner.train()
    assert seen == [(e, i, e * 5 + i) for e in range(3) for i in range(5)]
    assert (runner.epoch, runner.iter) == (3, 15)
    assert sorted(p for p in os.listdir(tmp_path) if p.endswith(".pth")) == [
        "epoch_1.pth",
        "epoch_2.pth",
        "epoch_3.pth",
    ]


def test_iteration_based_training_cycles_a_finite_loader(tmp_path):
    model = ToyRegressor()
    runner = Runner(
        model,
        work_dir=str(tmp_path),
        train_dataloader=toy_batches(4),
        optim_wrapper=_sgd(model),
        max_iters=10,
        default_hooks=QUIET,
    )
    runner.train()
    assert runner.iter == 10 and runner.epoch == 2 and runner.inner_iter == 2
    assert os.listdir(tmp_path).count("iter_10.pth") == 1  # iteration-based default: the last one only


def test_training_needs_exactly_one_length():
    model = ToyRegressor()
    with pytest.raises(ValueError, match="exactly one of max_epochs / max_iters"):
        Runner(model, train_dataloader=toy_batches(2), optim_wrapper=_sgd(model))


def test_model_train_step_takes_over_the_step(tmp_path):
    class OwnStep(ToyRegressor):
        calls = 0

        def train_step(self, batch, optim_wrapper):
            OwnStep.calls += 1
            losses = self(batch)
            optim_wrapper.update_params(losses["loss_mse"])
            return {"loss": losses["loss_mse"]}

    model = OwnStep()
    Runner(
        model,
        work_dir=str(tmp_path),
        train_dataloader=toy_batches(3),
        optim_wrapper=_sgd(model),
        max_epochs=1,
        default_hooks=QUIET,
    ).train()
    assert OwnStep.calls == 3


def test_load_from_loads_weights_but_starts_the_schedule_from_scratch(tmp_path):
    model = ToyRegressor()
    first = Runner(
        model,
        work_dir=str(tmp_path / "a"),
        train_dataloader=toy_batches(3),
        optim_wrapper=_sgd(model),
        max_epochs=1,
        default_hooks=QUIET,
    )
    first.train()
    trained = {k: v.clone() for k, v in model.state_dict().items()}
    model2 = ToyRegressor()
    second = Runner(
        model2,
        work_dir=str(tmp_path / "b"),
        train_dataloader=toy_batches(3),
        optim_wrapper=_sgd(model2),
        max_epochs=1,
        load_from=str(tmp_path / "a" / "epoch_1.pth"),
        default_hooks={**QUIET, "checkpoint": None},
    )
    starts = []
    second.register_callback(lambda r: starts.append((r.epoch, r.iter)), "before_train")
    second.register_callback(
        lambda r: starts.append(
            {k: torch.equal(v, trained[k]) for k, v in r.unwrapped_model.state_dict().items()}
        ),
        "before_train",
    )
    second.train()
    assert starts[0] == (0, 0) and all(starts[1].values())
    assert second.optim_wrapper.optimizer.state_dict()["state"] != {} and second.iter == 3


def test_resume_true_continues_from_the_latest_checkpoint_in_work_dir(tmp_path):
    model = ToyRegressor()
    Runner(
        model,
        work_dir=str(tmp_path),
        train_dataloader=toy_batches(3),
        optim_wrapper=_sgd(model),
        max_epochs=2,
        default_hooks=QUIET,
    ).train()
    model2 = ToyRegressor()
    r = Runner(
        model2,
        work_dir=str(tmp_path),
        train_dataloader=toy_batches(3),
        optim_wrapper=_sgd(model2),
        max_epochs=3,
        resume=True,
        default_hooks=QUIET,
    )
    iters = []
    r.register_callback(lambda r_, i, b, o: iters.append(r_.iter), "after_train_iter")
    r.train()
    assert iters == [6, 7, 8]
    assert r.storage.history("loss").latest_iter() == 8  # the storage history continues too


def test_iteration_resume_mid_epoch_does_not_replay_the_loader(tmp_path):
    """Resume cost is independent of the position: no sample before the checkpoint is produced again."""

    def make(max_iters, resume):
        ds = CountingDataset(40)
        loader = build_train_loader(ds, total_batch_size=4, num_workers=0, seed=3, infinite=True)
        model = ToyRegressor()
        r = Runner(
            model,
            work_dir=str(tmp_path),
            train_dataloader=loader,
            optim_wrapper=_sgd(model),
            max_iters=max_iters,
            resume=resume,
            seed=3,
            default_hooks={**QUIET, "checkpoint": dict(type="CheckpointHook", interval=7)},
        )
        return r, ds

    r, ds = make(30, False)
    r.register_callback(lambda r_, *a: r_.iter + 1 == 21 and r_.request_stop(), "after_train_iter")
    r.train()
    assert r.iter == 21 and ds.fetched == 21 * 4
    r2, ds2 = make(30, True)
    r2.train()
    assert r2.iter == 30
    assert ds2.fetched == (30 - 21) * 4  # resumed at iteration 21 (checkpoint iter_21): nothing replayed


def test_plain_dataloader_resume_replays_with_a_warning(tmp_path, caplog):
    batches = toy_batches(6)
    model = ToyRegressor()
    r = Runner(
        model,
        work_dir=str(tmp_path),
        train_dataloader=batches,
        optim_wrapper=_sgd(model),
        max_epochs=2,
        default_hooks={**QUIET, "checkpoint": dict(type="CheckpointHook", interval=4, by_epoch=False)},
    )
    r.register_callback(lambda r_, *a: r_.iter + 1 == 4 and r_.request_stop(), "after_train_iter")
    r.train()
    model2 = ToyRegressor()
    r2 = Runner(
        model2,
        work_dir=str(tmp_path),
        train_dataloader=batches,
        optim_wrapper=_sgd(model2),
        max_epochs=2,
        resume=True,
        default_hooks=QUIET,
    )
    seen = []
    r2.register_callback(lambda r_, i, b, o: seen.append(b is batches[i]), "after_train_iter")
    with caplog.at_level(logging.WARNING, logger="kiln.engine.loops"):
        r2.train()
    assert "replays and skips 4 batches" in caplog.text
    assert seen == [True] * 8  # batches 4, 5 of epoch 0, then all of epoch 1


def test_early_stop_request_ends_training_after_the_current_iteration(tmp_path):
    model = ToyRegressor()
    r = Runner(
        model,
        work_dir=str(tmp_path),
        train_dataloader=toy_batches(5),
        optim_wrapper=_sgd(model),
        max_epochs=4,
        default_hooks={**QUIET, "checkpoint": None},
    )
    r.register_callback(lambda r_, *a: r_.iter == 6 and r_.request_stop(), "after_train_iter")
    r.train()
    assert r.iter == 7 and r.epoch == 1 and r.stop_training and r.state.stop_requested


def test_mmengine_style_stop_training_assignment_still_requests_a_stop(tmp_path):
    model = ToyRegressor()
    r = Runner(
        model,
        work_dir=str(tmp_path),
        train_dataloader=toy_batches(5),
        optim_wrapper=_sgd(model),
        max_epochs=4,
        default_hooks={**QUIET, "checkpoint": None},
    )

    def stop(r_, *a):
        if r_.iter == 2:
            r_.stop_training = True  # MMCV hooks
        if r_.iter == 1:
            r_.stop_training = False  # (a False assignment does not cancel anything)

    r.register_callback(stop, "after_train_iter")
    r.train()
    assert r.iter == 3 and r.epoch == 0
    m2 = ToyRegressor()
    r2 = Runner(m2, train_dataloader=toy_batches(5), optim_wrapper=_sgd(m2), max_epochs=4,
                default_hooks={**QUIET, "checkpoint": None})
    stop_loop = lambda r_, *a: setattr(r_.train_loop, "stop_training", r_.iter == 3)  # noqa: E731
    r2.register_callback(stop_loop, "after_train_iter")
    r2.train()  # MMEngine hooks: runner.train_loop.stop_training = True
    assert r2.iter == 4


def test_a_runner_without_work_dir_trains_without_default_checkpoints(tmp_path):
    model = ToyRegressor()
    r = Runner(model, train_dataloader=toy_batches(2), optim_wrapper=_sgd(model), max_epochs=1)
    r.train()
    assert r.iter == 2 and r.get_hook("checkpoint") is None


def test_an_explicit_checkpoint_hook_without_work_dir_says_what_to_set():
    model = ToyRegressor()
    r = Runner(
        model,
        train_dataloader=toy_batches(2),
        optim_wrapper=_sgd(model),
        max_epochs=1,
        default_hooks=dict(checkpoint=dict(type="CheckpointHook", interval=1)),
    )
    with pytest.raises(Exception, match="CheckpointHook needs the runner's work_dir"):
        r.train()


def test_test_uses_an_explicitly_loaded_checkpoint_rather_than_load_from(tmp_path):
    model = ToyRegressor()
    Runner(
        model,
        work_dir=str(tmp_path / "a"),
        train_dataloader=toy_batches(3),
        optim_wrapper=_sgd(model),
        max_epochs=1,
        default_hooks=QUIET,
    ).train()
    fresh = ToyRegressor()
    torch.save({"model": fresh.state_dict()}, tmp_path / "init.pth")
    r = Runner(
        ToyRegressor(),
        work_dir=str(tmp_path / "b"),
        test_dataloader=toy_batches(1),
        load_from=str(tmp_path / "init.pth"),
    )
    r.load_checkpoint(str(tmp_path / "a" / "epoch_1.pth"))
    r.test()
    assert torch.equal(r.unwrapped_model.fc.weight, model.fc.weight)
