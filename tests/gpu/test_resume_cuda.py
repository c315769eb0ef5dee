"""Exact resume on the GPU: stop, resume on the same GPU, end bit-identical to an uninterrupted run."""

from __future__ import annotations

import pytest
import torch
from gpu_workloads import run_resume_script, states_equal

pytestmark = pytest.mark.cuda


def test_stop_and_resume_on_the_same_gpu_is_bit_identical_with_deterministic_algorithms(tmp_path):
    full, split = tmp_path / "full", tmp_path / "split"
    for work, mode in ((full, "full"), (split, "stop"), (split, "resume")):
        proc = run_resume_script(str(work), mode, "cuda")
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
        if mode == "stop":  # stopped half-way: checkpointed, not finished
            assert (split / "last_checkpoint").is_file() and not (split / "final_state.pt").exists()
    a = torch.load(full / "final_state.pt", weights_only=True)
    b = torch.load(split / "final_state.pt", weights_only=True)
    assert a["device"] == b["device"] == "cuda:0"
    assert states_equal(a["model"], b["model"])
    assert states_equal(a["optimizer"], b["optimizer"])
