"""Shared settings for the model tests."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True)
def _one_intra_op_thread():
    """Run each model test with one torch thread, then restore the previous setting.

    The suite runs as ``pytest -n 2`` on 2 cores: two workers with torch's default of one thread per
    core would oversubscribe the CPU, and OpenMP convolutions slow down sharply when threads wait for a
    core. One thread per worker keeps both cores busy without contention.
    """
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
