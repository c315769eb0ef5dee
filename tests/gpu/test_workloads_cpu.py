"""The GPU suite's workloads run on the CPU too, so they are known to work before a GPU is lent.

Same functions as tests/gpu/test_*_cuda.py, on the CPU (DDP with gloo): what is checked here is
the workload code itself (placement of every piece, rank synchronisation, exact resume, the demo
overrides); what only a GPU can show is checked there.
"""

from __future__ import annotations

from pathlib import Path

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

REPO = Path(__file__).resolve().parents[2]


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


def test_console_lines_of_a_cpu_run_carry_no_cuda_memory_figure():
    """In a fresh process, as a CPU run is (in this test process CUDA may be in use by GPU tests)."""
    import subprocess
    import sys

    code = ("import logging, sys;"
            "logging.basicConfig(level=logging.INFO, stream=sys.stdout, format='%(message)s');"
            "from gpu_workloads import train_toy;"
            "train_toy('cpu', iters=4, default_hooks={'logger': dict(type='LoggerHook', interval=2)})")
    here = str(REPO / "tests" / "gpu")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=here,
                          env=dict(__import__("os").environ, PYTHONPATH=f"{here}:{REPO}"), timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = [line for line in proc.stdout.splitlines() if "iter:" in line]
    assert len(lines) == 2 and not any("max_mem" in line for line in lines)


# ------------------------------------------------------------------------------------ gpu_check.sh


def test_gpu_check_script_parses_and_refuses_unknown_arguments():
    import subprocess

    script = str(REPO / "benchmarks" / "gpu_check.sh")
    assert subprocess.run(["bash", "-n", script]).returncode == 0
    proc = subprocess.run(["bash", script, "--no-such-flag"], capture_output=True, text=True)
    assert proc.returncode == 2 and "--no-such-flag" in proc.stderr


def _fake_check(work, steps, cases):
    import json

    work.mkdir(parents=True)
    (work / "steps.tsv").write_text("".join(f"{n}\t{s}\t{t}\t{c}\n" for n, s, t, c in steps))
    xml = "".join(f'<testcase classname="tests.gpu.m" name="{n}">{body}</testcase>' for n, body in cases)
    (work / "gpu_junit.xml").write_text(f"<testsuites><testsuite>{xml}</testsuite></testsuites>")
    (work / "demo").mkdir()
    recs = [dict(iteration=24, loss=1.0, time=1.0, data_time=0.2),
            dict(iteration=49, loss=0.9, time=0.5, data_time=0.1),
            dict(iteration=74, loss=0.8, time=0.25, data_time=0.1),
            {"iteration": 75, "bbox/AP": 12.5, "bbox/AP50": 30.0},
            dict(iteration=99, loss=0.7, time=0.5, data_time=0.3)]
    (work / "demo" / "metrics.jsonl").write_text("\n".join(json.dumps(r) for r in recs))
    (work / "demo" / "log.txt").write_text("iter: 25  max_mem: 812M\niter: 50  max_mem: 1024M\n")


def _summarize(work, out):
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / "gpu_summary.py"), str(work), str(out)],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    return out.read_text()


def test_gpu_summary_reports_figures_and_counts_from_the_step_outputs(tmp_path):
    _fake_check(tmp_path / "w", [("suite", "ok", 100, 0), ("demo", "ok", 60, 0)],
                [("a", ""), ("b", '<skipped message="needs CUDA"/>'), ("c", "")])
    text = _summarize(tmp_path / "w", tmp_path / "s.md")
    assert "**ALL OK**" in text
    assert "passed 2, failed 0, errors 0, skipped 1 (of 3)" in text
    # Steady-state time: the first logged window (start-up) is left out: median(0.5, 0.25, 0.5).
    assert "- s_per_iter: 0.5\n" in text and "- it_per_s: 2\n" in text
    assert "- iterations: 100\n" in text and "- bbox_AP: 12.5\n" in text and "- max_mem_MB: 1024\n" in text


def test_gpu_summary_is_not_ok_when_a_test_fails_or_a_step_times_out(tmp_path):
    _fake_check(tmp_path / "a", [("suite", "ok", 100, 1)],
                [("test_x", '<failure message="AssertionError: boom">tb</failure>')])
    text = _summarize(tmp_path / "a", tmp_path / "a.md")
    assert "**NOT OK: tests**" in text and "test_x (failure) AssertionError: boom" in text
    _fake_check(tmp_path / "b", [("suite", "ok", 100, 0), ("demo", "timed out", 150, 124)], [("a", "")])
    assert "**NOT OK: demo**" in _summarize(tmp_path / "b", tmp_path / "b.md")
