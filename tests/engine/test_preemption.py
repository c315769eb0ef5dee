"""SIGTERM/SIGINT finish the current step, checkpoint it and exit 128+signum; resuming is bit-identical."""

from __future__ import annotations

import json
import os
import random
import signal
import sys

import pytest
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from test_resume_exact import _assert_bit_identical, _reference_state, _run_to_end, _spawn  # noqa: E402


def _signal_after(proc, marker: str, sig: int) -> list[str]:
    seen = []
    for line in proc.stdout:
        seen.append(line.rstrip())
        if line.strip() == marker:
            os.kill(proc.pid, sig)
            break
    seen += [line.rstrip() for line in proc.stdout]
    proc.wait()
    return seen


@pytest.mark.parametrize("mode,sig", [("iter", signal.SIGTERM), ("epoch", signal.SIGINT)])
def test_a_signal_checkpoints_the_current_step_and_resume_is_bit_identical(tmp_path, mode, sig):
    k = random.Random().randint(3, 13)  # (epoch mode: 8 iterations per epoch, so mid-epoch or not)
    reference = _reference_state(tmp_path, mode)
    work = str(tmp_path / "preempted")
    seen = _signal_after(_spawn(work, mode, "--only-last"), f"ITER {k}", sig)
    proc_rc = 128 + sig
    done = max(int(s.split()[1]) for s in seen if s.startswith("ITER"))
    log = "\n".join(seen)
    assert f"training stopped by {signal.Signals(sig).name} after iteration {done}" in log, log[-2000:]
    assert done >= k and "DONE" not in log
    with open(os.path.join(work, "last_checkpoint")) as f:
        assert f.read().strip() == f"preempted_iter_{done}.pth"
    assert f"preempted_iter_{done}.pth" in log and "--resume" in log
    # the only checkpoint is the one written on the signal: resuming must continue from it
    assert sorted(n for n in os.listdir(work) if n.endswith(".pth")) == [f"preempted_iter_{done}.pth"]
    resumed = _run_to_end(_spawn(work, mode, "--only-last"))
    assert [int(s.split()[1]) for s in resumed if s.startswith("ITER")][0] == done + 1
    _assert_bit_identical(reference, torch.load(os.path.join(work, "final_state.pt"), weights_only=True),
                          f"{mode} run stopped by signal {sig} after iteration {done}")
    assert proc_rc in (143, 130)


def test_the_exit_status_says_preempted(tmp_path):
    proc = _spawn(str(tmp_path / "w"), "iter", "--only-last")
    _signal_after(proc, "ITER 2", signal.SIGTERM)
    assert proc.returncode == 128 + signal.SIGTERM


def test_a_second_sigint_exits_at_once_without_a_checkpoint(tmp_path):
    work = str(tmp_path / "w")
    proc = _spawn(work, "iter", "--only-last", "--slow")
    for line in proc.stdout:
        if line.strip() == "ITER 2":
            os.kill(proc.pid, signal.SIGINT)
        if line.startswith("Received SIGINT"):  # handled (two quick signals would coalesce into one)
            os.kill(proc.pid, signal.SIGINT)
            break
    rest = proc.stdout.read()
    proc.wait()
    assert proc.returncode not in (0, 130), rest[-2000:]
    assert "KeyboardInterrupt" in rest
    assert not [n for n in os.listdir(work) if n.startswith("preempted")]


# ------------------------------------------------------------------------------ distributed agreement
def _ddp_worker(out_dir: str) -> None:
    from test_distributed_training import _local_batches, _Regressor

    from kiln.engine import Runner, TrainingPreempted, comm

    rank = comm.get_rank()
    model = _Regressor()
    runner = Runner(model, work_dir=os.path.join(out_dir, "work"), max_epochs=1,
                    train_dataloader=_local_batches(rank, 2),
                    optim_wrapper=torch.optim.SGD(model.parameters(), lr=0.1))
    if rank == 1:  # only rank 1 is signalled, during its third iteration
        runner.register_callback(
            lambda r, *a: os.kill(os.getpid(), signal.SIGTERM) if r.iter == 2 else None, "before_train_iter")
    result = {}
    try:
        runner.train()
    except TrainingPreempted as e:
        result = {"iteration": e.iteration, "signum": e.signum, "checkpoint": e.checkpoint}
    with open(os.path.join(out_dir, f"rank{rank}.json"), "w") as f:
        json.dump(result, f)


def test_ranks_agree_on_the_iteration_to_stop_at(tmp_path):
    from kiln.engine.launch import launch

    launch(_ddp_worker, num_gpus_per_machine=2, dist_url="auto", args=(str(tmp_path),), backend="gloo")
    r0, r1 = (json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1))
    assert r0["iteration"] == r1["iteration"] == 3 and r0["signum"] == r1["signum"] == signal.SIGTERM
    assert r0["checkpoint"].endswith("preempted_iter_3.pth") and os.path.isfile(r0["checkpoint"])
    assert r1["checkpoint"] is None  # rank 0 writes
