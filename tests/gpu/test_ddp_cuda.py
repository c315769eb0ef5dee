"""DDP with NCCL on the GPUs present: 2 ranks with 2+ GPUs, else a 1-rank NCCL group."""

from __future__ import annotations

import pytest
import torch
from gpu_workloads import run_ddp

pytestmark = pytest.mark.cuda


def test_ddp_with_nccl_trains_each_rank_on_its_gpu_with_sync_bn_and_identical_weights(tmp_path):
    """2 ranks where there are 2+ GPUs; with one GPU a 1-process NCCL group."""
    world = min(2, torch.cuda.device_count())
    reports = run_ddp(world, "nccl", str(tmp_path))
    assert [r["rank"] for r in reports] == list(range(world))
    for r in reports:
        assert r["backend"] == "nccl" and r["world"] == world
        assert r["device"] == f"cuda:{r['rank']}" and r["param_devices"] == [f"cuda:{r['rank']}"]
        # One rank is a real NCCL group (the all_gather ran), but nothing to synchronise: no DDP wrapper,
        # no SyncBN conversion (a single process normalizes over its whole batch).
        assert r["wrapped"] == ("DistributedDataParallel" if world > 1 else "ConvToy")
        assert r["sync_bn"] is (world > 1)
        assert r["max_rank_diff"] == 0.0
        assert r["iters"] == 6
