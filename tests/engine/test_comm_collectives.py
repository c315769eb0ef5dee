"""comm helpers are safe without a process group (the 2-process collectives are in test_launch_workers.py)."""

import torch

from kiln.engine import comm


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
    assert comm.get_dist_info() == (0, 1)


def test_master_only_runs_on_the_main_process():
    calls = []

    @comm.master_only
    def write(x):
        calls.append(x)
        return x * 2

    assert write(3) == 6 and calls == [3]
