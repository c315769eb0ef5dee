"""The MMCV runner API (EpochBasedRunner.run) is preemption-safe like kiln's Runner: SIGTERM finishes the
step, writes preempted_iter_N.pth, exits 143, and resuming from it gives the uninterrupted run's weights."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
SCRIPT = textwrap.dedent("""
    import sys, time, torch
    sys.path.insert(0, sys.argv[1])
    from mmcv_toys import MMCVToy, loader, weights
    from kiln.engine import EpochBasedRunner, Hook

    class Say(Hook):
        def after_train_iter(self, runner):
            print("ITER", runner.iter, flush=True)
            time.sleep(0.05)  # (room for the signal to land mid-run)

    work, resume = sys.argv[2], sys.argv[3] if len(sys.argv) > 3 else None
    torch.manual_seed(0)
    model = MMCVToy(dropout=0.3)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    runner = EpochBasedRunner(model, optimizer=opt, work_dir=work, max_epochs=3)
    runner.register_training_hooks(dict(policy="step", step=[2]), dict(grad_clip=dict(max_norm=5)),
                                   dict(interval=100))
    runner.register_hook(Say())
    if resume:
        runner.resume(resume)
    torch.manual_seed(123)
    runner.run([loader()], [("train", 1)])
    torch.save(weights(model), work + "/final.pt")
    print("DONE", flush=True)
""")


def _spawn(work: Path, *extra: str) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    return subprocess.Popen([sys.executable, "-c", SCRIPT, str(HERE), str(work), *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)


def test_sigterm_during_mmcv_runner_run_checkpoints_and_resumes_exactly(tmp_path):
    full = _spawn(tmp_path / "full")
    out, _ = full.communicate(timeout=300)
    assert full.returncode == 0 and "DONE" in out, out[-2000:]

    work = tmp_path / "cut"
    proc = _spawn(work)
    seen = []
    for line in proc.stdout:
        seen.append(line)
        if line.strip() == "ITER 5":  # mid-epoch 1 (3 iterations per epoch)
            proc.send_signal(signal.SIGTERM)
            break
    seen += proc.stdout.readlines()
    proc.wait(timeout=300)
    log = "".join(seen)
    assert proc.returncode == 128 + signal.SIGTERM, log[-2000:]
    # (MMCV's runner.iter in after_train_iter hooks counts the steps before this one)
    done = max(int(s.split()[1]) for s in seen if s.startswith("ITER")) + 1
    ckpt = work / f"preempted_iter_{done}.pth"
    assert ckpt.is_file() and "DONE" not in log, log
    assert f"training stopped by SIGTERM after iteration {done}" in log

    resumed = _spawn(work, str(ckpt))
    out, _ = resumed.communicate(timeout=300)
    assert resumed.returncode == 0 and "DONE" in out, out[-2000:]
    assert [int(s.split()[1]) for s in out.splitlines() if s.startswith("ITER")][0] == done
    a = torch.load(tmp_path / "full" / "final.pt", weights_only=True)
    b = torch.load(work / "final.pt", weights_only=True)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
