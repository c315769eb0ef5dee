"""Console and validation lines number epochs (iterations) as the checkpoint files do: 1-based."""

from __future__ import annotations

import glob
import json
import os
import re
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from engine_toys import MSEEvaluator, ToyRegressor, toy_batches  # noqa: E402

from kiln.engine import Runner  # noqa: E402


def _runner(work_dir, **kw):
    torch.manual_seed(0)
    model = ToyRegressor()
    args = dict(
        work_dir=str(work_dir),
        train_dataloader=toy_batches(4),
        val_dataloader=toy_batches(2, seed=9),
        val_evaluator=MSEEvaluator(),
        max_epochs=2,
        optim_wrapper=torch.optim.SGD(model.parameters(), lr=0.05),
        default_hooks=dict(logger=dict(type="LoggerHook", interval=2)),
    )
    args.update(kw)
    return Runner(model, **args)


def _saved(work_dir, unit):
    paths = glob.glob(f"{work_dir}/{unit}_*.pth")
    return sorted(int(re.search(rf"{unit}_(\d+)\.pth", p).group(1)) for p in paths)


def _train_lines(messages):
    """(epoch, iteration) of each console training line."""
    out = []
    for m in messages:
        it = re.search(r"iter: (\d+)/", m)
        if it and "loss_mse" in m:
            ep = re.search(r"epoch: (\d+)", m)
            out.append((int(ep.group(1)) if ep else None, int(it.group(1))))
    return out


def _val_epochs(messages, unit="Epoch"):
    return [int(m) for m in re.findall(rf"{unit}\(val\) \[(\d+)\]\[2/2\]  mse: ", "\n".join(messages))]


def test_epoch_numbers_in_console_and_validation_lines_match_the_checkpoint_files(tmp_path, caplog):
    r = _runner(tmp_path)
    with caplog.at_level("INFO", logger="kiln"):
        r.train()
    # Iterations 1-4 are the first epoch (saved as epoch_1.pth), 5-8 the second.
    assert _train_lines(caplog.messages) == [(1, 2), (1, 4), (2, 6), (2, 8)]
    assert _val_epochs(caplog.messages) == _saved(tmp_path, "epoch") == [1, 2]
    assert "Start training at epoch 1, iteration 1 of 8" in caplog.messages
    rows = [json.loads(line) for line in open(tmp_path / "metrics.jsonl")]
    epochs = [(row["iteration"], row["epoch"]) for row in rows if "epoch" in row]
    assert epochs == [(1, 1), (3, 1), (5, 2), (7, 2)]  # (0-based iteration index, 1-based epoch)


def test_a_resumed_run_continues_the_numbering(tmp_path, caplog):
    _runner(tmp_path, max_epochs=1).train()
    assert _saved(tmp_path, "epoch") == [1]
    r = _runner(tmp_path, max_epochs=2, resume=True)
    caplog.clear()  # only the resumed run's lines (the first run's are captured when kiln logs INFO)
    with caplog.at_level("INFO", logger="kiln"):
        r.train()
    assert "Start training at epoch 2, iteration 5 of 8" in caplog.messages
    assert _train_lines(caplog.messages) == [(2, 6), (2, 8)]
    assert _val_epochs(caplog.messages) == [2] and _saved(tmp_path, "epoch") == [1, 2]


def test_iteration_based_validation_lines_count_iterations_like_iter_checkpoints(tmp_path, caplog):
    r = _runner(
        tmp_path,
        max_epochs=None,
        max_iters=6,
        val_interval=3,
        default_hooks=dict(
            logger=dict(type="LoggerHook", interval=3), checkpoint=dict(type="CheckpointHook", interval=3)
        ),
    )
    with caplog.at_level("INFO", logger="kiln"):
        r.train()
    assert _val_epochs(caplog.messages, "Iter") == _saved(tmp_path, "iter") == [3, 6]
    assert _train_lines(caplog.messages) == [(None, 3), (None, 6)]
    assert not os.path.exists(tmp_path / "epoch_1.pth")
