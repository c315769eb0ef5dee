"""launch(): in-process for one worker, spawned gloo workers otherwise; init_from_env for torchrun."""

import os
import re

import pytest
import torch.multiprocessing as mp

from kiln.engine import comm
from kiln.engine.launch import init_from_env, launch


def _record(box):
    box.append((comm.get_rank(), comm.get_world_size()))


def test_world_size_one_runs_in_this_process():
    box = []
    launch(_record, num_gpus_per_machine=1, args=(box,))
    assert box == [(0, 1)]


def test_invalid_sizes_are_rejected():
    with pytest.raises(ValueError, match="num_gpus_per_machine=0"):
        launch(_record, num_gpus_per_machine=0)
    with pytest.raises(ValueError, match=r"machine_rank=2 must be in \[0, 2\)"):
        launch(_record, num_gpus_per_machine=1, num_machines=2, machine_rank=2)


def test_auto_dist_url_needs_a_single_machine():
    with pytest.raises(ValueError, match="dist_url='auto' only works on one machine"):
        launch(_record, num_gpus_per_machine=1, num_machines=2, dist_url="auto")


def test_init_from_env_outside_torchrun_explains(monkeypatch):
    for k in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(k, raising=False)
    with pytest.raises(RuntimeError, match=re.escape("RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT not set")):
        init_from_env()


def _fail_on_rank1(out_dir):
    rank = comm.get_rank()
    with open(os.path.join(out_dir, f"env{rank}"), "w") as f:
        f.write(" ".join(os.environ[k] for k in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE")))
    if rank == 1:
        raise ValueError("boom on rank 1")


def test_workers_get_torchrun_env_and_a_worker_error_reaches_the_caller(tmp_path):
    with pytest.raises(mp.ProcessRaisedException, match="boom on rank 1"):
        launch(_fail_on_rank1, num_gpus_per_machine=2, args=(str(tmp_path),), backend="gloo")
    assert (tmp_path / "env0").read_text() == "0 0 2 2"
    assert (tmp_path / "env1").read_text() == "1 1 2 2"
