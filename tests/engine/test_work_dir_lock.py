"""One training per work_dir; temp files of interrupted saves are removed when the next run starts."""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys

import pytest
import torch

sys.path.insert(0, os.path.dirname(__file__))
from engine_toys import ToyRegressor, toy_batches  # noqa: E402

from kiln.engine import Runner  # noqa: E402
from kiln.engine.work_dir_lock import LOCK_NAME, WorkDirBusyError  # noqa: E402


def _runner(work_dir, **kw):
    model = ToyRegressor()
    return Runner(model, work_dir=str(work_dir), train_dataloader=toy_batches(2),
                  optim_wrapper=torch.optim.SGD(model.parameters(), lr=0.01), max_epochs=1, **kw)


def _write_lock(work_dir, pid, host=None):
    os.makedirs(work_dir, exist_ok=True)
    (work_dir / LOCK_NAME).write_text(json.dumps(
        {"pid": pid, "host": host or socket.gethostname(), "started": "2026-12-07 06:00:00",
         "command": "kiln train other.py"}))


@pytest.fixture
def live_process():
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    yield proc
    proc.kill()
    proc.wait()


def test_a_second_run_into_a_busy_work_dir_fails_at_once_naming_the_running_process(tmp_path, live_process):
    work = tmp_path / "w"
    _write_lock(work, live_process.pid)
    runner = _runner(work)
    with pytest.raises(WorkDirBusyError) as e:
        runner.train()
    msg = str(e.value)
    assert f"process {live_process.pid}" in msg and "kiln train other.py" in msg and "--work-dir" in msg
    assert runner.iter == 0 and not [n for n in os.listdir(work) if n.endswith(".pth")]
    assert json.loads((work / LOCK_NAME).read_text())["pid"] == live_process.pid  # still theirs


def test_a_lock_from_another_machine_says_how_to_remove_it(tmp_path):
    work = tmp_path / "w"
    _write_lock(work, 12345, host="some-other-node")
    with pytest.raises(WorkDirBusyError, match=f"delete {work / LOCK_NAME}"):
        _runner(work).train()


def test_the_lock_of_a_dead_process_is_taken_over_and_released_after_training(tmp_path, caplog):
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()  # gone (and reaped): its pid no longer runs
    work = tmp_path / "w"
    _write_lock(work, proc.pid)
    with caplog.at_level(logging.WARNING, logger="kiln.engine.runner"):
        _runner(work).train()
    assert f"taking over the lock of process {proc.pid}" in caplog.text
    assert (work / "epoch_1.pth").is_file() and not (work / LOCK_NAME).exists()


def test_the_lock_is_released_when_training_fails(tmp_path):
    work = tmp_path / "w"
    runner = _runner(work)
    runner.register_callback(lambda r, *a: 1 / 0, "after_train_iter")
    with pytest.raises(Exception, match="division by zero"):
        runner.train()
    assert not (work / LOCK_NAME).exists()
    _runner(work).train()  # the next run is not blocked


def test_temp_files_of_interrupted_saves_are_removed_at_the_next_start(tmp_path):
    work = tmp_path / "w"
    work.mkdir()
    stale = [".iter_3.pth.k2j4h_9x.tmp", ".last_checkpoint.a8Bc_d12.tmp"]
    for name in stale:
        (work / name).write_bytes(b"\0" * 4096)
    keep = [".gitignore", "notes.tmp", "iter_2.pth.bak"]
    for name in keep:
        (work / name).write_text("mine")
    _runner(work).train()
    names = set(os.listdir(work))
    assert not names & set(stale) and set(keep) <= names


def test_kiln_train_into_a_busy_work_dir_exits_1_and_writes_nothing(tmp_path, live_process, capsys):
    from kiln.cli.main import main

    work = tmp_path / "w"
    _write_lock(work, live_process.pid)
    (work / "log.txt").write_text("the running run's log\n")
    before = sorted(os.listdir(work))
    assert main(["train", "kiln::shapes/retinanet_r18_fpn_shapes.py", "--work-dir", str(work)]) == 1
    err = capsys.readouterr().err
    assert f"process {live_process.pid}" in err and "Traceback" not in err
    assert sorted(os.listdir(work)) == before
    assert (work / "log.txt").read_text() == "the running run's log\n"
