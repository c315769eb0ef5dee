"""Detectron2's output layout: model_XXXXXXX.pth (zero-based), model_final.pth, metrics.json."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
from engine_toys import ToyRegressor, toy_batches  # noqa: E402

from kiln.engine import Runner  # noqa: E402
from kiln.engine.hooks import CheckpointHook, LoggerHook  # noqa: E402

D2_CKPT = dict(type="CheckpointHook", interval=4, by_epoch=False, filename_tmpl="model_{:07d}.pth",
               final_filename="model_final.pth")


def _runner(tmp_path, max_iters, checkpoint, logger=None):
    model = ToyRegressor()
    return Runner(model, work_dir=str(tmp_path), train_dataloader=toy_batches(3),
                  optim_wrapper=torch.optim.SGD(model.parameters(), lr=0.01), max_iters=max_iters,
                  default_hooks={"logger": logger, "checkpoint": checkpoint})


def _pths(d):
    return sorted(f for f in os.listdir(d) if f.endswith(".pth"))


def test_d2_names_are_zero_based_iteration_indices_and_the_end_is_model_final(tmp_path):
    _runner(tmp_path, 10, D2_CKPT).train()
    # Detectron2 after 10 iterations with period 4: iterations 3 and 7 (zero-based), then model_final.
    assert _pths(tmp_path) == ["model_0000003.pth", "model_0000007.pth", "model_final.pth"]
    assert (tmp_path / "last_checkpoint").read_text().strip() == "model_final.pth"


def test_a_last_iteration_on_the_period_writes_both_names(tmp_path):
    _runner(tmp_path, 8, D2_CKPT).train()
    assert _pths(tmp_path) == ["model_0000003.pth", "model_0000007.pth", "model_final.pth"]


def test_resume_continues_from_model_final_named_by_last_checkpoint(tmp_path):
    _runner(tmp_path, 4, D2_CKPT).train()
    second = _runner(tmp_path, 6, dict(D2_CKPT, interval=100))
    second.resume(os.path.join(tmp_path, (tmp_path / "last_checkpoint").read_text().strip()))
    assert second.iter == 4
    second.train()
    assert second.iter == 6


def test_without_final_filename_names_count_iterations_run(tmp_path):
    _runner(tmp_path, 8, dict(type="CheckpointHook", interval=4, by_epoch=False)).train()
    assert _pths(tmp_path) == ["iter_4.pth", "iter_8.pth"]


def test_zero_based_can_be_chosen_explicitly(tmp_path):
    ckpt = dict(type="CheckpointHook", interval=4, by_epoch=False, filename_tmpl="ckpt_{}.pth",
                zero_based=True)
    _runner(tmp_path, 8, ckpt).train()
    assert _pths(tmp_path) == ["ckpt_3.pth", "ckpt_7.pth"]


def test_bad_names_are_refused():
    with pytest.raises(ValueError, match="filename_tmpl='model_{name}.pth'.*positional field"):
        CheckpointHook(interval=2, filename_tmpl="model_{name}.pth")
    with pytest.raises(ValueError, match="final_filename='out/model_final.pth'"):
        CheckpointHook(interval=2, final_filename="out/model_final.pth")


def test_logger_json_file_names_the_json_lines_file(tmp_path):
    _runner(tmp_path, 4, None, logger=dict(type="LoggerHook", interval=2, json_file="metrics.json")).train()
    rows = [json.loads(line) for line in (tmp_path / "metrics.json").read_text().splitlines()]
    assert [r["iteration"] for r in rows if "loss" in r] == [1, 3]
    assert not (tmp_path / "metrics.jsonl").exists()
    with pytest.raises(ValueError, match="json_file must name a file"):
        LoggerHook(json_file="")
