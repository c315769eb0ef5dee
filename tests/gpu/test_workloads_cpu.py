"""The GPU suite's workloads run on the CPU too, so they are known to work before a GPU is lent.

Same functions as tests/gpu/test_*_cuda.py, on the CPU (DDP with gloo): what is checked here is
the workload code itself (placement of every piece, rank synchronisation, exact resume, the demo
overrides); what only a GPU can show is checked there.
"""

from __future__ import annotations

import torch
from gpu_workloads import (
    SHAPES_CFG,
    run_ddp,
    run_resume_script,
    shapes_options,
    states_equal,
    tensor_devices,
    train_toy,
)

from kiln.engine import EMAHook


def test_toy_training_with_ema_and_bf16_keeps_everything_on_the_cpu():
    ema = EMAHook(momentum=0.1)
    runner = train_toy("cpu", iters=4, amp="bfloat16", hooks=[ema])
    assert runner.device == torch.device("cpu") and runner.iter == 4
    assert tensor_devices(runner.optim_wrapper.optimizer.state_dict()["state"]) == {"cpu"}
    assert tensor_devices(ema.state_dict()) == {"cpu"}
    assert runner.unwrapped_model.last_input == (torch.device("cpu"), torch.bfloat16)


def test_two_rank_ddp_workload_reports_synchronised_weights(tmp_path):
    reports = run_ddp(2, "gloo", str(tmp_path))
    for rank, r in enumerate(reports):
        assert (r["rank"], r["world"], r["backend"], r["device"]) == (rank, 2, "gloo", "cpu")
        assert r["wrapped"] == "DistributedDataParallel" and r["sync_bn"] is False
        assert r["max_rank_diff"] == 0.0 and r["iters"] == 6


def test_resume_workload_is_bit_identical_on_the_cpu(tmp_path):
    full, split = tmp_path / "full", tmp_path / "split"
    for work, mode in ((full, "full"), (split, "stop"), (split, "resume")):
        proc = run_resume_script(str(work), mode, "cpu")
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    a = torch.load(full / "final_state.pt", weights_only=True)
    b = torch.load(split / "final_state.pt", weights_only=True)
    assert a["device"] == b["device"] == "cpu"
    assert states_equal(a, b)


def test_states_equal_sees_a_one_bit_difference():
    a = {"w": torch.tensor([1.0, 2.0]), "n": [torch.tensor(3)], "step": 4}
    b = {"w": torch.tensor([1.0, 2.0]).nextafter(torch.tensor(3.0)), "n": [torch.tensor(3)], "step": 4}
    assert states_equal(a, {"w": a["w"].clone(), "n": [torch.tensor(3)], "step": 4})
    assert not states_equal(a, b)
    assert not states_equal(a, dict(a, step=5))


def test_the_demo_overrides_make_a_valid_short_config():
    from kiln.cli.common import load_config

    cfg = load_config(SHAPES_CFG, shapes_options(train_images=40, epochs=3))
    assert cfg.data.train.num_images == 40 and cfg.total_epochs == 3
    assert cfg.lr_config.warmup_iters == 10 and cfg.data.workers_per_gpu == 4


def test_console_lines_of_a_cpu_run_carry_no_cuda_memory_figure(caplog):
    import logging

    with caplog.at_level(logging.INFO):
        train_toy("cpu", iters=4, default_hooks={"logger": dict(type="LoggerHook", interval=2)})
    lines = [r.getMessage() for r in caplog.records if "iter:" in r.getMessage()]
    assert len(lines) == 2 and not any("max_mem" in line for line in lines)
