"""comm helpers: safe defaults in one process, real collectives across 2 gloo processes."""

import json

import numpy as np
import torch

from kiln.engine import comm
from kiln.engine.launch import launch


def test_single_process_defaults_need_no_process_group():
    assert not comm.is_dist_avail_and_initialized()
    sizes = (comm.get_rank(), comm.get_world_size(), comm.get_local_rank(), comm.get_local_size())
    assert sizes == (0, 1, 0, 1)
    assert comm.is_main_process()
    comm.synchronize()  # no-op, must not raise
    assert comm.all_gather({"a": 1}) == [{"a": 1}]
    assert comm.gather(5) == [5]
    assert comm.broadcast_object("x") == "x"
    d = {"loss": torch.tensor(2.0)}
    assert comm.reduce_dict(d) == d
    t = torch.tensor([3.0])
    assert comm.all_reduce_mean(t) is t
    seed = comm.shared_random_seed()
    assert isinstance(seed, int) and 0 <= seed < 2**31


def _collectives_worker(out_dir):
    rank = comm.get_rank()
    np.random.seed(100 + rank)  # ranks draw different local numbers; the shared seed must still agree
    result = {
        "rank": rank,
        "world_size": comm.get_world_size(),
        "local_rank": comm.get_local_rank(),
        "local_size": comm.get_local_size(),
        "is_main": comm.is_main_process(),
        "all_gather": comm.all_gather({"rank": rank, "name": f"w{rank}"}),
        "gather": comm.gather(rank * 10, dst=0),
        "broadcast": comm.broadcast_object(f"from{rank}", src=1),
        "reduce_avg": {k: v.item() for k, v in comm.reduce_dict(
            {"a": torch.tensor(float(rank)), "b": torch.tensor(4.0)}).items()},
        "reduce_sum": {k: v.item() for k, v in comm.reduce_dict(
            {"a": torch.tensor(float(rank))}, average=False).items()},
        "mean": comm.all_reduce_mean(torch.tensor([float(rank)])).item(),
        "seed": comm.shared_random_seed(),
    }
    comm.synchronize()
    with open(f"{out_dir}/rank{rank}.json", "w") as f:
        json.dump(result, f)


def test_collectives_across_two_gloo_processes(tmp_path):
    launch(_collectives_worker, num_gpus_per_machine=2, dist_url="auto", args=(str(tmp_path),),
           backend="gloo")
    r0, r1 = (json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1))
    ids = [(r["rank"], r["world_size"], r["local_rank"], r["local_size"], r["is_main"]) for r in (r0, r1)]
    assert ids == [(0, 2, 0, 2, True), (1, 2, 1, 2, False)]
    expected_gather = [{"rank": 0, "name": "w0"}, {"rank": 1, "name": "w1"}]
    assert r0["all_gather"] == r1["all_gather"] == expected_gather
    assert r0["gather"] == [0, 10] and r1["gather"] == []
    assert r0["broadcast"] == r1["broadcast"] == "from1"
    assert r0["reduce_avg"] == r1["reduce_avg"] == {"a": 0.5, "b": 4.0}
    assert r0["reduce_sum"] == r1["reduce_sum"] == {"a": 1.0}
    assert r0["mean"] == r1["mean"] == 0.5
    assert r0["seed"] == r1["seed"]
