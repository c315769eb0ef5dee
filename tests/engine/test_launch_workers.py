"""launch(): in-process for one worker, spawned gloo workers otherwise; comm collectives across them.

Spawning workers costs seconds (each imports torch), so one launch serves several tests: its workers
run every collective, record their environment, and then rank 1 raises.
"""

import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp

from kiln.engine import comm
from kiln.engine.launch import find_free_port, init_from_env, launch


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


def test_unpicklable_main_function_is_rejected_before_spawning():
    with pytest.raises(TypeError, match="must be picklable.*module-level function"):
        launch(lambda: None, num_gpus_per_machine=2)


def test_init_from_env_outside_torchrun_explains(monkeypatch):
    for k in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(k, raising=False)
    with pytest.raises(RuntimeError, match=re.escape("RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT not set")):
        init_from_env()


def _worker(out_dir):
    rank = comm.get_rank()
    np.random.seed(100 + rank)  # ranks draw different local numbers; the shared seed must still agree
    result = {
        "env": [os.environ[k] for k in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE")],
        "ids": [rank, comm.get_world_size(), comm.get_local_rank(), comm.get_local_size(),
                comm.is_main_process()],
        "all_gather": comm.all_gather({"rank": rank, "name": f"w{rank}"}),
        "gather": comm.gather(rank * 10, dst=0),
        "broadcast": comm.broadcast_object(f"from{rank}", src=1),
        "reduce_avg": {k: v.item() for k, v in comm.reduce_dict(
            {"a": torch.tensor(float(rank)), "b": torch.tensor(4.0)}).items()},
        "reduce_sum": {k: v.item() for k, v in comm.reduce_dict(
            {"a": torch.tensor(float(rank))}, average=False).items()},
        "mean": comm.all_reduce_mean(torch.tensor([float(rank)])).item(),
        "seed": comm.shared_random_seed(),
        # Object collectives on gloo use the default group without caching the group object (a cached
        # one outlives destroy_process_group and can abort the process at interpreter shutdown).
        "object_group_cached": comm._object_group() is not None,
    }
    comm.synchronize()
    with open(f"{out_dir}/rank{rank}.json", "w") as f:
        json.dump(result, f)
    if rank == 1:
        raise ValueError("boom on rank 1")


@pytest.fixture(scope="module")
def two_workers(tmp_path_factory):
    """Run ``_worker`` on 2 gloo processes; return (rank 0 result, rank 1 result, raised exception)."""
    out = tmp_path_factory.mktemp("launch")
    error = None
    try:
        launch(_worker, num_gpus_per_machine=2, dist_url="auto", args=(str(out),), backend="gloo")
    except mp.ProcessRaisedException as e:
        error = e
    r0, r1 = (json.loads((out / f"rank{r}.json").read_text()) for r in (0, 1))
    return r0, r1, error


def test_workers_get_global_and_local_ranks_and_torchrun_env(two_workers):
    r0, r1, _ = two_workers
    assert r0["ids"] == [0, 2, 0, 2, True] and r1["ids"] == [1, 2, 1, 2, False]
    assert r0["env"] == ["0", "0", "2", "2"] and r1["env"] == ["1", "1", "2", "2"]


def test_object_collectives_across_two_gloo_processes(two_workers):
    r0, r1, _ = two_workers
    assert r0["all_gather"] == r1["all_gather"] == [{"rank": 0, "name": "w0"}, {"rank": 1, "name": "w1"}]
    assert r0["gather"] == [0, 10] and r1["gather"] == []
    assert r0["broadcast"] == r1["broadcast"] == "from1"
    assert r0["seed"] == r1["seed"]
    assert not r0["object_group_cached"] and not r1["object_group_cached"]


def test_tensor_reductions_across_two_gloo_processes(two_workers):
    r0, r1, _ = two_workers
    assert r0["reduce_avg"] == r1["reduce_avg"] == {"a": 0.5, "b": 4.0}
    assert r0["reduce_sum"] == r1["reduce_sum"] == {"a": 1.0}
    assert r0["mean"] == r1["mean"] == 0.5


def test_a_worker_error_reaches_the_caller(two_workers):
    error = two_workers[2]
    assert error is not None and "boom on rank 1" in str(error)


def _record_ranks(out_dir):
    info = [comm.get_rank(), comm.get_world_size(), comm.get_local_rank(), comm.get_local_size()]
    with open(os.path.join(out_dir, f"machine_rank{comm.get_rank()}.json"), "w") as f:
        json.dump(info, f)


_MACHINE_1 = """
import sys
sys.path.insert(0, {test_dir!r})
from kiln.engine.launch import launch
from test_launch_workers import _record_ranks
launch(_record_ranks, num_gpus_per_machine=1, num_machines=2, machine_rank=1, dist_url={url!r},
       args=({out!r},), backend="gloo")
"""


def test_two_machines_get_global_ranks_by_machine_rank(tmp_path):
    """Two "machines" on this host (one worker each) meet at one tcp:// address."""
    url = f"tcp://127.0.0.1:{find_free_port()}"
    script = _MACHINE_1.format(test_dir=os.path.dirname(__file__), url=url, out=str(tmp_path))
    machine1 = subprocess.Popen([sys.executable, "-c", script], stderr=subprocess.PIPE, text=True)
    try:
        launch(_record_ranks, num_gpus_per_machine=1, num_machines=2, machine_rank=0, dist_url=url,
               args=(str(tmp_path),), backend="gloo")
    finally:
        _, err = machine1.communicate(timeout=300)
    assert machine1.returncode == 0, err[-3000:]
    got = [json.loads((tmp_path / f"machine_rank{r}.json").read_text()) for r in (0, 1)]
    assert got == [[0, 2, 0, 1], [1, 2, 0, 1]]  # [rank, world size, local rank, local size]



_LEAVE_SCRIPT = """
import atexit
import torch.distributed as dist
atexit.register(lambda: print("initialized at exit:", dist.is_initialized()))  # runs after kiln's hook
from kiln.engine.launch import init_from_env
print("joined:", init_from_env(backend="gloo"))
"""


def test_a_torchrun_worker_leaves_its_process_group_before_interpreter_shutdown():
    # A gloo group destroyed by interpreter shutdown can abort the process after training finished.
    env = dict(os.environ, RANK="0", WORLD_SIZE="1", LOCAL_RANK="0", LOCAL_WORLD_SIZE="1",
               MASTER_ADDR="127.0.0.1", MASTER_PORT=str(find_free_port()))
    proc = subprocess.run([sys.executable, "-c", _LEAVE_SCRIPT], env=env, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "joined: (0, 1)" in proc.stdout
    assert "initialized at exit: False" in proc.stdout
